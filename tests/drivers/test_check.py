"""``solstice-orchestrator check`` against the fake host: read-only, reports what is missing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from tests.drivers.support import IMAGE, SNAPSHOT
from tests.fakes.illumos.host import FakeHost

EXE = Path(sys.executable).parent / "solstice-orchestrator"
READ_ONLY = {("zoneadm", "list"), ("zfs", "list"), ("zfs", "get"), ("dladm", "show-link")}


def write_config(host: FakeHost, path: Path, images: dict) -> Path:
    doc = {
        "store_url": "postgresql://ignored",  # the rest of the node file is not the check's business
        "drivers": {
            "driver": "bhyve",
            "bhyve": {
                "images": images,
                "vm_dataset": "rpool/solstice/vms",
                "zones_dataset": "rpool/solstice/zones",
                "zones_path": "/solstice/zones",
                "state_dir": str(path.parent / "state"),
                "fs_root": str(host.root / "fs"),
                **{t: host.tool(t) for t in ("zonecfg", "zoneadm", "zfs", "dladm", "bhyvectl")},
            },
        },
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def check(config: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(EXE), "check", "--config", str(config), "--log-level", "warning"],
                          capture_output=True, text=True, timeout=60, env=dict(os.environ), check=False)


def test_ready_host(fake_host: FakeHost, tmp_path: Path):
    (fake_host.fs("/usr/lib/brand/bhyve")).mkdir(parents=True)
    cfg = write_config(fake_host, tmp_path / "node.yaml", {
        "illumos-stable": {"dataset": IMAGE, "snapshot": SNAPSHOT, "link": "igb0"},
    })
    r = check(cfg)
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines()[-1] == "host is ready"
    assert f"ok      image illumos-stable: snapshot {IMAGE}@{SNAPSHOT}" in r.stdout
    assert {tuple(c[:2]) for c in fake_host.calls()} <= READ_ONLY


def test_missing_things_are_listed(fake_host: FakeHost, tmp_path: Path):
    cfg = write_config(fake_host, tmp_path / "node.yaml", {
        "illumos-stable": {"dataset": IMAGE, "snapshot": "2099-01-01", "link": "ixgbe0"},
        "omnios": {"dataset": "rpool/solstice/images/omnios", "snapshot": "v1", "link": "igb0"},
    })
    before = fake_host.state()
    r = check(cfg)
    assert r.returncode == 1
    out = r.stdout
    assert "MISSING bhyve zone brand" in out
    assert f"MISSING image illumos-stable: snapshot {IMAGE}@2099-01-01: cannot open" in out
    assert "MISSING image omnios: rpool/solstice/images/omnios is a volume" in out
    assert "MISSING link ixgbe0" in out and "ok      link igb0" in out
    assert out.splitlines()[-1] == "5 problem(s) found"
    after = fake_host.state()
    assert {k: after[k] for k in ("zones", "datasets", "links")} == {k: before[k] for k in ("zones", "datasets", "links")}
    assert {tuple(c[:2]) for c in fake_host.calls()} <= READ_ONLY


def test_bad_config_is_one_error_line(tmp_path: Path):
    cfg = tmp_path / "node.yaml"
    cfg.write_text(yaml.safe_dump({"drivers": {"driver": "bhyve", "bhyve": {"images": {"x": {"dataset": "rpool/a b"}}}}}))
    r = check(cfg)
    assert r.returncode == 1 and r.stderr.startswith("ERROR: image dataset")
    assert "Traceback" not in r.stderr


def test_local_driver_with_network_isolation(tmp_path: Path):
    env = dict(os.environ, PATH=str(EXE.parent) + os.pathsep + os.environ.get("PATH", ""),
               SOLSTICE_DRIVERS_DRIVER="local", SOLSTICE_DRIVERS_LOCAL_STATE_DIR=str(tmp_path / "vms"),
               SOLSTICE_DRIVERS_LOCAL_ISOLATE_NETWORK="true",
               SOLSTICE_DRIVERS_LOCAL_CONTAIN="false")  # containment: the next test
    argv = [str(EXE), "check", "--log-level", "warning"]
    good = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, check=False)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "ok      network isolation (unshare --net --map-root-user)" in good.stdout
    env["SOLSTICE_DRIVERS_LOCAL_UNSHARE"] = str(tmp_path / "no-unshare")
    bad = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, check=False)
    assert bad.returncode == 1
    (line,) = [ln for ln in bad.stdout.splitlines() if ln.startswith("MISSING")]
    assert line.startswith("MISSING network isolation (unshare --net --map-root-user): ")
    assert line.endswith(f"cannot run {tmp_path / 'no-unshare'}: No such file or directory")
    assert bad.stdout.splitlines()[-1] == "1 problem(s) found"
    assert not (tmp_path / "vms").exists()


def test_local_driver_containment_names_a_missing_job_user(tmp_path: Path):
    env = dict(os.environ, PATH=str(EXE.parent) + os.pathsep + os.environ.get("PATH", ""),
               SOLSTICE_DRIVERS_DRIVER="local", SOLSTICE_DRIVERS_LOCAL_STATE_DIR=str(tmp_path / "vms"),
               SOLSTICE_DRIVERS_LOCAL_JOB_USER="solstice-nobody")
    done = subprocess.run([str(EXE), "check", "--log-level", "warning"], capture_output=True, text=True,
                          timeout=60, env=env, check=False)
    missing = [ln for ln in done.stdout.splitlines() if ln.startswith("MISSING")]
    assert ("MISSING job user solstice-nobody: the job user solstice-nobody does not exist (create it: "
            "useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "
            "solstice-nobody)") in missing
    assert ("MISSING untrusted jobs (fork pull requests) isolated: this node cannot isolate untrusted jobs; "
            "see docs/security.md") in missing
    assert done.returncode == 1
    assert not (tmp_path / "vms").exists()
