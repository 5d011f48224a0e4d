"""Names of the things a VM is made of, generated here and validated before use.

A job attempt's VM is called ``solstice-<8 hex>-<attempt>``; the hex is the
first 8 hex digits of SHA-256 of the job id, so nothing from a webhook or a
workflow ever reaches a command line. From that one name follow:

* the zone name (illumos.md §2.8: 1-63 chars, ``[A-Za-z0-9][A-Za-z0-9_.-]*``),
* the VNIC name ``solstice<8 hex>_<attempt>`` (illumos-gate libdladm
  ``dladm_valid_linkname``: at most 31 chars of ``[A-Za-z0-9_.]``, not
  starting with a digit, ending with one - and no ``-``, unlike zone names),
* dataset names ``<parent>/<vm name>`` (§4: ``[A-Za-z0-9_.:-]`` components;
  we refuse the space ZFS would accept).

Everything the driver owns carries the ``solstice`` prefix; reconciliation
never touches a name without it.
"""

from __future__ import annotations

import hashlib
import re

from orchestrator.drivers.errors import NameInvalid

PREFIX = "solstice"
MAX_ATTEMPT = 99999

_VM = re.compile(rf"^{PREFIX}-([0-9a-f]{{8}})-(0|[1-9][0-9]{{0,4}})$")
_VNIC = re.compile(rf"^{PREFIX}([0-9a-f]{{8}})_(0|[1-9][0-9]{{0,4}})$")
_ZONE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_LINK = re.compile(r"^[A-Za-z_.][A-Za-z0-9_.]{0,29}[0-9]$", re.ASCII)
_DS_COMPONENT = re.compile(r"^[A-Za-z0-9_.:-]+$")
_POOL = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]*$")
_SNAPSHOT_NAME = _DS_COMPONENT
MAX_DATASET_NAME = 255  # ZFS_MAX_DATASET_NAME_LEN (256) minus the NUL


def vm_name(job_id: str, attempt: int) -> str:
    """The VM name of one attempt of one job: ``solstice-<8 hex>-<attempt>``."""
    if not isinstance(attempt, int) or isinstance(attempt, bool) or not 0 <= attempt <= MAX_ATTEMPT:
        raise NameInvalid(f"attempt {attempt!r} is not a number from 0 to {MAX_ATTEMPT}")
    digest = hashlib.sha256(job_id.encode()).hexdigest()[:8]
    return f"{PREFIX}-{digest}-{attempt}"


def validate_vm_name(name: str) -> str:
    """Return ``name`` if it is a Solstice VM name; raise NameInvalid otherwise."""
    if not isinstance(name, str) or not _VM.fullmatch(name):
        raise NameInvalid(f"{name!r} is not a Solstice VM name (solstice-<8 hex>-<attempt>)")
    return name


def is_vm_name(name: str) -> bool:
    """True for names this driver generates (and so may destroy)."""
    return isinstance(name, str) and bool(_VM.fullmatch(name))


def vnic_name(vm: str) -> str:
    """The VNIC of VM ``vm``: ``solstice<8 hex>_<attempt>`` (VNICs may not contain ``-``)."""
    m = _VM.fullmatch(validate_vm_name(vm))
    assert m is not None
    return validate_link_name(f"{PREFIX}{m.group(1)}_{m.group(2)}")


def vm_of_vnic(vnic: str) -> str | None:
    """The VM a Solstice VNIC belongs to, or None for a VNIC that is not ours."""
    m = _VNIC.fullmatch(vnic)
    return f"{PREFIX}-{m.group(1)}-{m.group(2)}" if m else None


def validate_zone_name(name: str) -> str:
    """illumos.md §2.8: 1-63 chars, first alphanumeric; not ``global`` nor ``SUNW*``."""
    if not isinstance(name, str) or not _ZONE.fullmatch(name):
        raise NameInvalid(f"{name!r} is not a valid zone name")
    if name == "global" or name.startswith("SUNW"):
        raise NameInvalid(f"zone name {name!r} is reserved")
    return name


def validate_link_name(name: str) -> str:
    """libdladm ``dladm_valid_linkname``: <= 31 chars of [A-Za-z0-9_.], no leading digit, a trailing digit."""
    if not isinstance(name, str) or not _LINK.fullmatch(name):
        raise NameInvalid(f"{name!r} is not a valid datalink name (up to 31 of A-Z a-z 0-9 _ ., "
                          "not starting with a digit, ending with one)")
    return name


def validate_dataset_name(name: str, *, snapshot: bool = False) -> str:
    """illumos.md §4, minus the space: ``pool/a/b`` (or ``pool/a@snap`` when ``snapshot``)."""
    if not isinstance(name, str) or not name or len(name) > MAX_DATASET_NAME:
        raise NameInvalid(f"{name!r} is not a valid dataset name")
    base, at, snap = name.partition("@")
    if snapshot != bool(at) or (at and not _SNAPSHOT_NAME.fullmatch(snap)):
        kind = "snapshot (dataset@name)" if snapshot else "dataset (no @)"
        raise NameInvalid(f"{name!r} is not a valid {kind} name")
    parts = base.split("/")
    if not _POOL.fullmatch(parts[0]) or not all(_DS_COMPONENT.fullmatch(p) for p in parts):
        raise NameInvalid(f"{name!r} is not a valid dataset name")
    if any(p in (".", "..") for p in parts) or name.startswith("-"):
        raise NameInvalid(f"{name!r} is not a valid dataset name")
    return name
