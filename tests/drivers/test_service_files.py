"""The SMF manifests, their method scripts and the systemd units are valid and say what the docs say.

``svccfg validate`` does not exist here: the manifests are validated against
the service_bundle DTD from illumos-gate (tests/drivers/data/smf/README.md).
The units go through ``systemd-analyze verify``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from lxml import etree

from orchestrator.node.settings import TimerConfig

REPO = Path(__file__).resolve().parents[2]
DTD = Path(__file__).resolve().parent / "data" / "smf" / "service_bundle.dtd.1"
MANIFESTS = {"orchestrator": REPO / "orchestrator/smf/solstice-orchestrator.xml",
             "integration": REPO / "integration/smf/solstice-integration.xml"}
METHODS = {"orchestrator": REPO / "orchestrator/smf/solstice-orchestrator.method",
           "integration": REPO / "integration/smf/solstice-integration.method"}
UNITS = {"orchestrator": REPO / "orchestrator/systemd/solstice-orchestrator.service",
         "integration": REPO / "integration/systemd/solstice-integration.service"}


def dtd() -> etree.DTD:
    with open(DTD, "rb") as f:
        return etree.DTD(f)


def parse(path: Path) -> etree._Element:
    return etree.parse(str(path), etree.XMLParser(load_dtd=False, no_network=True)).getroot()


@pytest.mark.parametrize("part", sorted(MANIFESTS))
def test_the_manifests_validate_against_the_service_bundle_dtd(part: str):
    root = parse(MANIFESTS[part])
    schema = dtd()
    assert schema.validate(root), schema.error_log.filter_from_errors()
    assert root.getroottree().docinfo.system_url == "/usr/share/lib/xml/dtd/service_bundle.dtd.1"


def test_the_dtd_check_would_catch_a_broken_manifest():
    root = parse(MANIFESTS["orchestrator"])
    start = root.find(".//exec_method[@name='start']")
    del start.attrib["timeout_seconds"]  # required by the DTD
    root.find("service").insert(0, etree.Element("instance_of_nothing"))
    schema = dtd()
    assert not schema.validate(root)
    messages = " ".join(str(e.message) for e in schema.error_log)
    assert "timeout_seconds" in messages and "instance_of_nothing" in messages


def test_the_orchestrator_service_runs_as_root_after_network_and_zones_and_drains_on_disable():
    service = parse(MANIFESTS["orchestrator"]).find("service")
    assert service.get("name") == "solstice/orchestrator"
    deps = {d.get("name"): d.find("service_fmri").get("value") for d in service.findall("dependency")}
    assert deps == {"network": "svc:/milestone/network:default", "filesystem": "svc:/system/filesystem/local:default",
                    "zones": "svc:/system/zones:default"}
    assert service.find("method_context/method_credential").get("user") == "root"
    props = {(pg.get("name"), p.get("name")): p.get("value") for pg in service.findall("property_group")
             for p in pg.findall("propval")}
    assert props[("config", "file")] == "/etc/solstice/orchestrator.yaml"
    assert props[("startd", "duration")] == "child"  # the foreground process is the service; restarted on exit
    stop = service.find("exec_method[@name='stop']")
    # :kill is SIGTERM, on which the node drains; it may take timers.shutdown_grace to finish.
    assert stop.get("exec") == ":kill"
    assert int(stop.get("timeout_seconds")) > TimerConfig().shutdown_grace
    start = service.find("exec_method[@name='start']").get("exec")
    assert start == "/opt/solstice/lib/svc/method/solstice-orchestrator start"


def test_the_integration_service_needs_no_privileges():
    service = parse(MANIFESTS["integration"]).find("service")
    assert service.get("name") == "solstice/integration"
    assert service.find("method_context/method_credential").get("user") == "solstice"
    assert "zones" not in {d.get("name") for d in service.findall("dependency")}


def fake_svc_tools(tmp_path: Path, config: Path, exe: Path) -> dict[str, str]:
    """A ``svcprop`` answering the two properties, and the service's program recording its argv."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    svcprop = bin_dir / "svcprop"
    svcprop.write_text(f'#!/bin/sh\ncase "$2" in config/file) echo "{config}";; config/exec) echo "{exe}";; '
                       '*) exit 1;; esac\n')
    svcprop.chmod(0o755)
    return dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", SMF_FMRI="svc:/solstice/x:default")


@pytest.mark.parametrize("part", sorted(METHODS))
def test_the_method_script_execs_serve_with_the_configured_file(part: str, tmp_path: Path):
    method = METHODS[part]
    assert subprocess.run(["sh", "-n", str(method)], check=False).returncode == 0
    config = tmp_path / "node.yaml"
    config.write_text("{}\n")
    exe = tmp_path / "program"
    exe.write_text(f'#!/bin/sh\necho "$0 $*" > {tmp_path / "argv"}\n')
    exe.chmod(0o755)
    env = fake_svc_tools(tmp_path, config, exe)
    r = subprocess.run(["sh", str(method), "start"], env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "argv").read_text() == f"{exe} serve --config {config}\n"
    config.unlink()
    r = subprocess.run(["sh", str(method), "start"], env=env, capture_output=True, text=True, timeout=30)
    assert r.returncode == 96  # SMF_EXIT_ERR_CONFIG: maintenance with the reason in svcs -xv
    assert f"cannot read {config}" in r.stderr and "setprop config/file" in r.stderr


@pytest.mark.parametrize("part", sorted(UNITS))
def test_the_systemd_units_verify(part: str, tmp_path: Path):
    text = UNITS[part].read_text()
    assert "Restart=on-failure" in text and "KillSignal=SIGTERM" in text
    # verify wants ExecStart to exist: point it at this checkout's entry point.
    unit = tmp_path / UNITS[part].name
    unit.write_text(text.replace("/opt/solstice/bin/", f"{Path(sys.executable).parent}/"))
    analyze = shutil.which("systemd-analyze")
    if analyze is None:  # not a systemd host: at least the sections and keys systemd needs
        assert all(s in text for s in ("[Unit]", "[Service]", "[Install]", "ExecStart=", "WantedBy="))
        return
    r = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr
