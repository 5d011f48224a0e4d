#!/usr/bin/env bash
# What the image and VM tests need from Debian: QEMU (x86_64 system emulator,
# qemu-img, OVMF firmware), mmdebstrap (the Debian guest's base system), and
# the tools that assemble a disk without mounting it (sfdisk, mkfs.ext4 -d,
# mkfs.vfat + mtools) and build the NoCloud CIDATA ISO (genisoimage).
# Installs whatever is missing with apt-get (as root); if that is impossible
# it says so loudly and the VM tests skip with the reason, nothing else does.
set -uo pipefail

need=()
check() { command -v "$1" >/dev/null 2>&1 || need+=("$2"); }
check qemu-system-x86_64 qemu-system-x86
check qemu-img qemu-utils
check mmdebstrap mmdebstrap
check genisoimage genisoimage
check isoinfo genisoimage
check mkfs.vfat dosfstools
check mcopy mtools
check sfdisk fdisk
check mkfs.ext4 e2fsprogs
[ -f /usr/share/ovmf/OVMF.fd ] || need+=(ovmf)
[ ${#need[@]} -eq 0 ] && exit 0

packages=$(printf '%s\n' "${need[@]}" | sort -u | tr '\n' ' ')
echo "ensure-vm-tools: installing ${packages}" >&2
if [ "$(id -u)" -eq 0 ] \
    && apt-get update -qq \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ${packages} >/dev/null; then
    exit 0
fi
echo "###########################################################################" >&2
echo "ensure-vm-tools: WARNING: could not install ${packages}" >&2
echo "ensure-vm-tools: the tests that boot real VMs will be SKIPPED" >&2
echo "###########################################################################" >&2
exit 0
