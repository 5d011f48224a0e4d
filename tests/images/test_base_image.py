"""An ``image`` base: fetched or found, verified, made raw; and what its provisioning boot is told."""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.server
import lzma
import subprocess
import threading
from pathlib import Path

import pytest
import yaml

from images.fetch import FetchError, fetch_base, published_sha256, to_raw
from images.provision import PAYLOAD, PROVISIONED, install_script, user_data
from images.recipe import BaseImage, parse_recipe

MIB = 1 << 20


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture
def served(tmp_path: Path):
    """A local HTTP server over ``tmp_path/www`` (the publisher)."""
    www = tmp_path / "www"
    www.mkdir()
    handler = lambda *a, **kw: http.server.SimpleHTTPRequestHandler(*a, directory=str(www), **kw)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield www, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        thread.join()


async def test_a_local_base_is_verified_before_use(tmp_path: Path):
    (tmp_path / "base.raw").write_bytes(b"disk" * 1000)
    good = BaseImage(sha(b"disk" * 1000), path="base.raw")
    assert await fetch_base(good, tmp_path, tmp_path / "dl") == tmp_path / "base.raw"
    with pytest.raises(FetchError) as info:
        await fetch_base(BaseImage("0" * 64, path="base.raw"), tmp_path, tmp_path / "dl")
    assert f"the recipe says sha256 {'0' * 64}, the file is {sha(b'disk' * 1000)}" in str(info.value)
    with pytest.raises(FetchError, match="does not exist"):
        await fetch_base(BaseImage("0" * 64, path="missing.raw"), tmp_path, tmp_path / "dl")


async def test_a_download_is_verified_and_kept_under_its_checksum(tmp_path: Path, served):
    www, url = served
    data = b"image" * 5000
    (www / "omnios.raw").write_bytes(data)
    (www / "omnios.raw.sha256").write_text(f"{sha(data)}  omnios.raw\n")
    assert await published_sha256(f"{url}/omnios.raw.sha256") == sha(data)
    base = BaseImage("", url=f"{url}/omnios.raw", sha256_url=f"{url}/omnios.raw.sha256")
    got = await fetch_base(base, tmp_path, tmp_path / "dl")
    assert got == tmp_path / "dl" / sha(data) and got.read_bytes() == data
    (www / "omnios.raw").write_bytes(b"tampered")  # the cached copy is used (and re-verified)
    assert (await fetch_base(base, tmp_path, tmp_path / "dl")).read_bytes() == data
    with pytest.raises(FetchError, match="checksum mismatch"):
        await fetch_base(BaseImage("1" * 64, url=f"{url}/omnios.raw"), tmp_path, tmp_path / "dl2")
    assert list((tmp_path / "dl2").iterdir()) == []  # nothing half-fetched is kept
    with pytest.raises(FetchError, match="cannot download"):
        await fetch_base(BaseImage("1" * 64, url=f"{url}/nothing.raw"), tmp_path, tmp_path / "dl3")


@pytest.mark.parametrize("compression", ["none", "xz", "gzip"])
async def test_compressed_bases_become_raw_disks_of_the_recipes_size(tmp_path: Path, compression: str):
    data = b"\x55" * MIB
    packed = {"none": data, "xz": lzma.compress(data), "gzip": gzip.compress(data)}[compression]
    (tmp_path / "base").write_bytes(packed)
    raw = tmp_path / "out.raw"
    await to_raw(tmp_path / "base", BaseImage(sha(packed), path="base", compression=compression), raw, 8 * MIB,
                 tmp_path)
    assert raw.stat().st_size == 8 * MIB and raw.read_bytes()[:MIB] == data


async def test_a_qcow2_base_is_converted_and_a_too_large_one_refused(tmp_path: Path):
    src = tmp_path / "src.raw"
    src.write_bytes(b"\x66" * MIB)
    subprocess.run(["qemu-img", "convert", "-q", "-O", "qcow2", str(src), str(tmp_path / "b.qcow2")], check=True)
    raw = tmp_path / "out.raw"
    await to_raw(tmp_path / "b.qcow2", BaseImage("a" * 64, path="b.qcow2", format="qcow2"), raw, 4 * MIB, tmp_path)
    assert raw.read_bytes()[:MIB] == b"\x66" * MIB and raw.stat().st_size == 4 * MIB
    with pytest.raises(FetchError, match="larger than the recipe's disk_size"):
        await to_raw(src, BaseImage("a" * 64, path="src.raw"), tmp_path / "small.raw", MIB // 2, tmp_path)


RECIPE = """\
name: omnios-test
os: {os}
base:
  image: {{path: base.raw, sha256: {sha}}}
packages: [developer/versioning/git]
files:
  - {{path: /etc/motd, content: "hello\\n", mode: "0600"}}
runner: {{python: "3.11", platform: native, prefix: /opt/solstice/runner}}
cloud_init: {{datasource_list: [NoCloud, None]}}
disk_size: 8G
"""


@pytest.mark.parametrize("os_name", ["illumos", "linux"])
def test_the_provisioning_seed_carries_the_runner_and_an_install_script(tmp_path: Path, os_name: str):
    recipe = parse_recipe(RECIPE.format(os=os_name, sha="a" * 64), tmp_path / "r.yaml")
    bundle = tmp_path / "runner.tar.gz"
    bundle.write_bytes(b"\x1f\x8b fake bundle")
    text = user_data(recipe, bundle, "omnios-test@1")
    assert text.startswith("#cloud-config\n")
    doc = yaml.safe_load(text)
    files = {f["path"]: f for f in doc["write_files"]}
    assert base64.b64decode(files[PAYLOAD]["content"]) == bundle.read_bytes()
    assert files["/etc/motd"] == {"path": "/etc/motd", "content": "hello\n", "permissions": "0600"}
    assert "datasource_list" in files["/etc/cloud/cloud.cfg.d/90_solstice.cfg"]["content"]
    service = "/var/svc/manifest/site/solstice-runner.xml" if os_name == "illumos" else \
        "/etc/systemd/system/solstice-runner.service"
    assert "/opt/solstice/runner/bin/solstice-runner" in files[service]["content"]
    assert doc["runcmd"] == [["/bin/sh", "/var/tmp/solstice-install.sh"]]
    script = files["/var/tmp/solstice-install.sh"]["content"]
    assert subprocess.run(["sh", "-n"], input=script, text=True).returncode == 0
    assert "echo omnios-test@1 > /etc/solstice/image" in script and PROVISIONED in script
    if os_name == "illumos":
        assert "pkg install developer/versioning/git" in script and "svccfg import" in script
        assert script.rstrip().endswith("/usr/sbin/poweroff")
    else:
        assert "apt-get install -y -q developer/versioning/git" in script
        assert "systemctl enable solstice-runner.service" in script


def test_the_install_script_quotes_what_it_is_given(tmp_path: Path):
    recipe = parse_recipe(RECIPE.format(os="linux", sha="a" * 64), tmp_path / "r.yaml")
    script = install_script(recipe, "name@version; rm -rf /")
    assert "echo 'name@version; rm -rf /' > /etc/solstice/image" in script


