"""How a VM's runner learns where its orchestrator is and which job it runs.

The contract between VM drivers (which write it) and the runner (which reads
it). On bhyve and qemu it travels as NoCloud cloud-init user-data
(illumos.md §6.1, §6.2 option A): a ``#cloud-config`` document whose
``write_files`` puts ``/etc/solstice/runner.env`` in the guest, where the
golden image's runner service starts the runner with that file. The local driver passes the same two values through
argv/environment instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from common.errors import SolsticeError

RUNNER_ENV_PATH = "/etc/solstice/runner.env"
ENV_ORCHESTRATOR = "SOLSTICE_RUNNER_ORCHESTRATOR"
ENV_TOKEN = "SOLSTICE_RUNNER_TOKEN"

# HOST:PORT, or a Unix socket (the local driver's network-isolated runners).
_ADDRESS = re.compile(r"^(?:(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:]+\]):\d{1,5}|unix:/[A-Za-z0-9._/-]+)$")
_TOKEN = re.compile(r"^[A-Za-z0-9._~+/=-]+$")


class BootstrapError(SolsticeError):
    """The runner's bootstrap data is missing or malformed."""


@dataclass(frozen=True)
class RunnerBootstrap:
    """Everything a runner needs to call home: ``host:port`` and its job token."""

    orchestrator: str
    token: str

    def __post_init__(self) -> None:
        if not _ADDRESS.match(self.orchestrator):
            raise BootstrapError(
                f"orchestrator address {self.orchestrator!r} is not HOST:PORT or unix:/PATH"
            )
        if not _TOKEN.match(self.token):
            raise BootstrapError("job token contains characters a token never has")

    def __repr__(self) -> str:  # the token is a credential: never print it
        return f"RunnerBootstrap(orchestrator={self.orchestrator!r}, token=***)"

    def env_file(self) -> str:
        return f"{ENV_ORCHESTRATOR}={self.orchestrator}\n{ENV_TOKEN}={self.token}\n"


def render_user_data(boot: RunnerBootstrap, runner_command: str | None = None) -> str:
    """The NoCloud user-data that hands this job's bootstrap to a golden image.

    Golden images start the runner themselves once ``write_files`` has put
    ``/etc/solstice/runner.env`` in place (the image's systemd unit or SMF
    service, images/services/). ``runner_command`` adds a ``runcmd`` that
    starts it instead, for a hand-made image without that service; never use
    both, or the job runs twice.
    """
    doc: dict[str, object] = {
        "write_files": [
            {
                "path": RUNNER_ENV_PATH,
                "permissions": "0600",
                "owner": "root:root",
                "content": boot.env_file(),
            }
        ],
    }
    if runner_command is not None:
        doc["runcmd"] = [[runner_command, "run", "--env-file", RUNNER_ENV_PATH]]
    return "#cloud-config\n" + yaml.safe_dump(doc, sort_keys=True)


def parse_env_file(text: str) -> RunnerBootstrap:
    values: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise BootstrapError(f"runner env line {number} is not KEY=VALUE")
        values[key.strip()] = value.strip()
    missing = [k for k in (ENV_ORCHESTRATOR, ENV_TOKEN) if not values.get(k)]
    if missing:
        raise BootstrapError(f"runner env lacks {' and '.join(missing)}")
    return RunnerBootstrap(values[ENV_ORCHESTRATOR], values[ENV_TOKEN])


def read_user_data(text: str) -> RunnerBootstrap:
    """Extract the bootstrap from user-data written by ``render_user_data``."""
    if not text.startswith("#cloud-config"):
        raise BootstrapError("user-data is not a #cloud-config document")
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise BootstrapError(f"user-data is not valid YAML: {err}") from err
    for entry in (doc or {}).get("write_files") or []:
        if isinstance(entry, dict) and entry.get("path") == RUNNER_ENV_PATH:
            return parse_env_file(str(entry.get("content", "")))
    raise BootstrapError(f"user-data writes no {RUNNER_ENV_PATH}")


def read_nocloud_dir(path: Path) -> RunnerBootstrap:
    """Read the bootstrap from a NoCloud seed directory (``meta-data``, ``user-data``)."""
    try:
        text = (path / "user-data").read_text()
    except OSError as err:
        raise BootstrapError(f"cannot read {path / 'user-data'}: {err.strerror}") from err
    return read_user_data(text)
