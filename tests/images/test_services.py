"""The guest's runner service definitions: SMF manifest, its start method, systemd unit."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from lxml import etree

from images.bundle import SERVICES

DTD = Path(__file__).parent / "data" / "service_bundle.dtd"
PREFIX = "/opt/solstice/runner"


def manifest(text: str | None = None) -> etree._Element:
    text = text or (SERVICES / "solstice-runner.xml").read_text().replace("@PREFIX@", PREFIX)
    parser = etree.XMLParser(load_dtd=False, no_network=True, resolve_entities=False)
    return etree.fromstring(text.encode(), parser)


def test_the_smf_manifest_is_valid_against_the_service_bundle_dtd():
    dtd = etree.DTD(str(DTD))
    root = manifest()
    assert dtd.validate(root), dtd.error_log.filter_from_errors()
    service = root.find("service")
    assert service.get("name") == "site/solstice/runner"
    start = service.find("exec_method[@name='start']")
    assert start.get("exec") == f"{PREFIX}/bin/solstice-runner-smf" and start.get("timeout_seconds") == "60"
    # "child": the runner is the service, and its exit ends (and restarts) it.
    assert service.find("property_group[@name='startd']/propval[@name='duration']").get("value") == "child"
    bootstrap = service.find("dependency[@name='bootstrap']")
    assert (bootstrap.get("type"), bootstrap.find("service_fmri").get("value")) == (
        "path", "file://localhost/etc/solstice/runner.env")


def test_the_dtd_catches_a_malformed_manifest():
    text = (SERVICES / "solstice-runner.xml").read_text()
    # exec_method before the dependencies is out of order for service_bundle(5).
    moved = text.replace('    <exec_method type="method" name="stop" exec=":kill" timeout_seconds="60"/>\n', "")
    moved = moved.replace("    <create_default_instance", '    <exec_method type="method" name="stop" '
                          'exec=":kill" timeout_seconds="60"/>\n    <create_default_instance')
    bad_grouping = text.replace('grouping="optional_all"', 'grouping="optional"')
    dtd = etree.DTD(str(DTD))
    assert not dtd.validate(manifest(moved))
    assert not dtd.validate(manifest(bad_grouping))


def fake_prefix(tmp_path: Path, exit_code: int) -> Path:
    prefix = tmp_path / "prefix"
    (prefix / "bin").mkdir(parents=True)
    runner = prefix / "bin" / "solstice-runner"
    runner.write_text(f"#!/bin/sh\necho \"runner says: $*\"\nexit {exit_code}\n")
    runner.chmod(0o755)
    return prefix


@pytest.mark.parametrize("code, powers_off", [(0, True), (3, True), (4, True), (1, False), (5, False)])
def test_the_smf_start_method_logs_to_the_console_and_powers_off_when_the_job_is_over(
        tmp_path: Path, code: int, powers_off: bool):
    prefix = fake_prefix(tmp_path, code)
    script = tmp_path / "solstice-runner-smf"
    script.write_text((SERVICES / "solstice-runner-smf").read_text().replace("@PREFIX@", str(prefix)))
    poweroff = tmp_path / "poweroff"
    poweroff.write_text(f"#!/bin/sh\ntouch {tmp_path / 'powered-off'}\n")
    poweroff.chmod(0o755)
    console = tmp_path / "console"
    env = {"PATH": os.environ["PATH"], "SOLSTICE_CONSOLE": str(console), "SOLSTICE_POWEROFF": str(poweroff),
           "SOLSTICE_STATUS_FILE": str(tmp_path / "status")}
    result = subprocess.run(["sh", str(script)], env=env, capture_output=True, text=True, timeout=30)
    assert "runner says: run --env-file /etc/solstice/runner.env" in console.read_text()
    assert (tmp_path / "powered-off").exists() is powers_off
    assert result.returncode == (0 if powers_off else 1)
    assert f"exit {code}" in console.read_text()


def test_the_systemd_unit_verifies(tmp_path: Path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here (Debian: package systemd)")
    prefix = fake_prefix(tmp_path, 0)
    unit = tmp_path / "solstice-runner.service"
    unit.write_text((SERVICES / "solstice-runner.service").read_text().replace("@PREFIX@", str(prefix)))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    # verify exits 0 on unknown keys too: any complaint about our file is a failure.
    complaints = [line for line in (result.stdout + result.stderr).splitlines() if unit.name in line]
    assert result.returncode == 0 and complaints == [], result.stdout + result.stderr
    text = unit.read_text()
    for line in ("Restart=on-failure", "RestartPreventExitStatus=3 4", "StandardOutput=journal+console",
                 "ConditionPathExists=/etc/solstice/runner.env", "After=cloud-init.service network.target"):
        assert line in text


def test_systemd_verify_would_catch_a_misplaced_key(tmp_path: Path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here (Debian: package systemd)")
    prefix = fake_prefix(tmp_path, 0)
    unit = tmp_path / "bad.service"
    unit.write_text((SERVICES / "solstice-runner.service").read_text().replace("@PREFIX@", str(prefix))
                    .replace("Type=exec", "Type=exec\nSuccessAction=poweroff"))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert "Unknown key 'SuccessAction' in section [Service]" in result.stdout + result.stderr
