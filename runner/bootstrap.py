"""Where the runner learns its orchestrator address and job token.

Each of the two values is taken from the first source that has it:

1. ``--orchestrator`` / ``--token`` flags,
2. ``SOLSTICE_RUNNER_ORCHESTRATOR`` / ``SOLSTICE_RUNNER_TOKEN`` in the environment,
3. an env file (``--env-file``, default ``/etc/solstice/runner.env``, which
   cloud-init's ``write_files`` creates on bhyve),
4. a NoCloud seed directory (``--nocloud``, default the usual seed paths),
   read directly when cloud-init did not run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from common.bootstrap import (
    ENV_ORCHESTRATOR,
    ENV_TOKEN,
    RUNNER_ENV_PATH,
    BootstrapError,
    RunnerBootstrap,
    parse_env_file,
    read_nocloud_dir,
)

NOCLOUD_SEEDS = (
    "/var/lib/cloud/seed/nocloud",
    "/var/lib/cloud/seed/nocloud-net",
    "/var/lib/cloud/instance",
)


def resolve(
    *,
    orchestrator: str | None,
    token: str | None,
    env: Mapping[str, str],
    env_files: Sequence[Path] = (Path(RUNNER_ENV_PATH),),
    nocloud_dirs: Sequence[Path] = tuple(map(Path, NOCLOUD_SEEDS)),
) -> RunnerBootstrap:
    """The bootstrap from the highest-precedence source of each value.

    Files that do not exist are skipped; a file that exists but is malformed
    is an error (it was meant for us). Raises BootstrapError naming every
    place looked at when a value is found nowhere.
    """
    values = {ENV_ORCHESTRATOR: orchestrator or "", ENV_TOKEN: token or ""}
    for key in values:
        if not values[key]:
            values[key] = env.get(key, "").strip()
    looked = ["--orchestrator/--token", f"${ENV_ORCHESTRATOR}/${ENV_TOKEN}"]
    for path in env_files:
        if all(values.values()):
            break
        looked.append(str(path))
        if path.is_file():
            try:
                text = path.read_text()
            except OSError as err:
                raise BootstrapError(f"cannot read {path}: {err.strerror}") from err
            _fill(values, parse_env_file(text))
    for path in nocloud_dirs:
        if all(values.values()):
            break
        looked.append(f"{path}/user-data")
        if (path / "user-data").is_file():
            _fill(values, read_nocloud_dir(path))
    missing = [k for k, v in values.items() if not v]
    if missing:
        raise BootstrapError(
            f"no {' or '.join(missing)} found; looked at: {', '.join(looked)}"
        )
    return RunnerBootstrap(values[ENV_ORCHESTRATOR], values[ENV_TOKEN])


def _fill(values: dict[str, str], found: RunnerBootstrap) -> None:
    values[ENV_ORCHESTRATOR] = values[ENV_ORCHESTRATOR] or found.orchestrator
    values[ENV_TOKEN] = values[ENV_TOKEN] or found.token
