"""Customize a published base image by booting it once (an ``image`` base).

A base image (an OmniOS or Debian cloud image) cannot be changed from the
outside without mounting its file systems - ZFS on illumos - so the guest
changes itself: it boots under QEMU with a NoCloud seed (nocloud.py, as the
bhyve brand builds it) whose user-data carries the runner artefact, the
service definition and the recipe's files (``write_files``) and runs an
install script (``runcmd``), which ends by powering the VM off. The install
script prints ``PROVISIONED`` on the console; without it the build fails
with the console's last lines. Packages are installed with the guest's own
tool (apt-get / pkg), so that needs the guest to reach its repositories.
"""

from __future__ import annotations

import base64
import shlex
from pathlib import Path

import yaml

from common.errors import SolsticeError
from common.version import IMAGE_FILE
from images.bundle import SERVICES
from images.recipe import Recipe
from images.rootfs import CLOUD_CFG, SMF_MANIFEST, UNIT
from orchestrator.commands import run_command
from orchestrator.drivers.bhyve_console import tail_file
from orchestrator.drivers.nocloud import build_seed_iso
from orchestrator.drivers.qemu_command import QemuVm, choose_accel, qemu_argv, user_mode_seed

PROVISIONED = "solstice-image: PROVISIONED"
TIMEOUT = 1800.0
VM_NAME = "solstice-image-build"
PAYLOAD = "/var/tmp/solstice-runner.tar.gz"


class ProvisionFailed(SolsticeError):
    """The provisioning boot did not finish its work."""


def install_script(recipe: Recipe, image_id: str) -> str:
    prefix = shlex.quote(recipe.runner.prefix)
    lines = ["#!/bin/sh", "set -eu", f"PREFIX={prefix}", 'rm -rf "$PREFIX"', 'mkdir -p "$PREFIX"',
             f'gzip -dc {PAYLOAD} | (cd "$PREFIX" && tar -xf -)',
             "mkdir -p /usr/local/bin /etc/solstice",
             'ln -sf "$PREFIX/bin/solstice-runner" /usr/local/bin/solstice-runner',
             f"echo {shlex.quote(image_id)} > {IMAGE_FILE}"]
    packages = " ".join(shlex.quote(p) for p in recipe.packages)
    if recipe.os == "linux":
        if packages:
            lines.append(f"apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q {packages}")
        lines += ["systemctl enable solstice-runner.service", "cloud-init clean --logs || true"]
        poweroff = "systemctl poweroff"
    else:
        if packages:
            lines.append(f"pkg install {packages} || [ $? -eq 4 ]")  # 4: nothing to do
        lines += [f"svccfg import /{SMF_MANIFEST}",
                  "if command -v cloud-init >/dev/null; then cloud-init clean --logs || true; fi"]
        poweroff = "/usr/sbin/poweroff"
    lines += [f"rm -f {PAYLOAD} /var/tmp/solstice-install.sh", f"echo '{PROVISIONED}' > /dev/console", poweroff]
    return "\n".join(lines) + "\n"


def user_data(recipe: Recipe, bundle: Path, image_id: str) -> str:
    files: list[dict[str, str]] = [
        {"path": PAYLOAD, "encoding": "b64", "permissions": "0600",
         "content": base64.b64encode(bundle.read_bytes()).decode()},
        {"path": "/var/tmp/solstice-install.sh", "permissions": "0700", "content": install_script(recipe, image_id)},
    ]
    if recipe.os == "linux":
        unit = (SERVICES / "solstice-runner.service").read_text().replace("@PREFIX@", recipe.runner.prefix)
        files.append({"path": f"/{UNIT}", "permissions": "0644", "content": unit})
    else:
        manifest = (SERVICES / "solstice-runner.xml").read_text().replace("@PREFIX@", recipe.runner.prefix)
        files.append({"path": f"/{SMF_MANIFEST}", "permissions": "0444", "content": manifest})
    if recipe.cloud_init:
        files.append({"path": f"/{CLOUD_CFG}", "permissions": "0644",
                      "content": yaml.safe_dump(recipe.cloud_init, sort_keys=True)})
    for entry in recipe.files:
        content = entry.content if entry.content is not None else recipe.source_path(entry).read_text()
        files.append({"path": entry.path, "permissions": f"0{entry.mode:o}", "content": content})
    doc = {"write_files": files, "runcmd": [["/bin/sh", "/var/tmp/solstice-install.sh"]]}
    return "#cloud-config\n" + yaml.safe_dump(doc, sort_keys=True)


async def provision(recipe: Recipe, raw: Path, bundle: Path, image_id: str, work: Path,
                    qemu: str = "qemu-system-x86_64", firmware: Path = Path("/usr/share/ovmf/OVMF.fd"),
                    timeout: float = TIMEOUT) -> None:
    """Boot ``raw`` once so it installs the runner; raise ProvisionFailed with the console tail if not.

    A boot that runs past ``timeout`` is killed (CommandTimeout, a DriverError)."""
    work.mkdir(parents=True, exist_ok=True)
    seed = user_mode_seed(VM_NAME, user_data(recipe, bundle, image_id))
    iso = work / "cidata.iso"
    await build_seed_iso(seed, work / "seed", iso)
    console = work / "console.log"
    vm = QemuVm(VM_NAME, raw, iso, console, seed.smbios_serial, 2, "2G", recipe.bootrom, firmware,
                await choose_accel("auto", qemu, firmware), disk_format="raw")
    result = await run_command(qemu_argv(qemu, vm), timeout=timeout, check=False)
    text = console.read_text(errors="replace") if console.exists() else ""
    if result.exit_code != 0 or PROVISIONED not in text:
        detail = result.stderr.strip() or f"qemu exit {result.exit_code}"
        raise ProvisionFailed(f"the provisioning boot failed ({detail}); console:\n" + tail_file(console, 20))
