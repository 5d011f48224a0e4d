"""The fake ``zfs rename`` and user properties at create/list, as the caches use them (illumos.md §4)."""

from __future__ import annotations

from tests.drivers.test_fake_tools import SRC, ok, run


def test_zfs_rename_moves_a_volume_its_snapshots_and_keeps_clones_attached(fake_host) -> None:
    ok(fake_host, "zfs", "create", "-p", "rpool/solstice/caches/vms")
    ok(fake_host, "zfs", "create", "rpool/solstice/caches/r1")
    ok(fake_host, "zfs", "clone", SRC, "rpool/solstice/caches/vms/v1")
    ok(fake_host, "zfs", "snapshot", "rpool/solstice/caches/vms/v1@saved")
    ok(fake_host, "zfs", "clone", "rpool/solstice/caches/vms/v1@saved", "rpool/solstice/caches/vms/v2")
    ok(fake_host, "zfs", "rename", "rpool/solstice/caches/vms/v1", "rpool/solstice/caches/r1/k1")
    state = fake_host.state()["datasets"]
    assert "rpool/solstice/caches/vms/v1" not in state and "rpool/solstice/caches/r1/k1@saved" in state
    assert state["rpool/solstice/caches/vms/v2"]["origin"] == "rpool/solstice/caches/r1/k1@saved"
    assert fake_host.fs("/dev/zvol/rdsk/rpool/solstice/caches/r1/k1").exists()
    assert not fake_host.fs("/dev/zvol/rdsk/rpool/solstice/caches/vms/v1").exists()
    r = run(fake_host, "zfs", "rename", "rpool/solstice/caches/vms/v2", "rpool/solstice/caches/r1/k1")
    assert (r.returncode, r.stderr) == (1, "cannot rename to 'rpool/solstice/caches/r1/k1': dataset already exists\n")
    r = run(fake_host, "zfs", "rename", "rpool/solstice/caches/vms/v2", "rpool/nope/k2")
    assert (r.returncode, r.stderr) == (1, "cannot rename to 'rpool/nope/k2': parent does not exist\n")
    r = run(fake_host, "zfs", "rename", "rpool/solstice/caches/vms/nope", "rpool/solstice/caches/r1/k2")
    assert (r.returncode, r.stderr) == (1, "cannot open 'rpool/solstice/caches/vms/nope': dataset does not exist\n")
    r = run(fake_host, "zfs", "rename", "rpool/solstice/caches/vms/v2", "tank/k2")
    assert r.stderr == "cannot rename to 'tank/k2': datasets must be within same pool\n"


def test_user_properties_at_create_and_in_list(fake_host) -> None:
    ok(fake_host, "zfs", "create", "-p", "-o", "solstice:cache-key=deps-1", "-V", "1G", "rpool/solstice/c/v")
    out = ok(fake_host, "zfs", "list", "-H", "-o", "name,solstice:cache-key,solstice:other", "-t", "volume",
             "-r", "rpool/solstice/c")
    assert out.splitlines()[-1] == "rpool/solstice/c/v\tdeps-1\t-"
