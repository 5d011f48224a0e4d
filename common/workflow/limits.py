"""How big a workflow may be: every limit has a default, a setting and an error that names it.

A fork author controls the workflow file of their pull request, so its size
and shape are bounded before and while it is read: the file's bytes first
(before KDL parsing starts), then jobs, steps, scripts, names, env and
timeouts as the checker meets them. Operators change them in the
``workflow_limits`` section of the integration's (or ``solstice serve``'s)
settings; each error message ends with the setting to change, e.g.
``(workflow_limits.max_steps)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.config import Seconds
from common.errors import ConfigError

SECTION = "workflow_limits"
# GetJob carries a whole job: with the file capped below this, it always fits
# the 16 MiB gRPC message limit (common/grpc_options.py).
FILE_CEILING = 8 * 1024 * 1024
# Hard ceilings of the settings below: what any job request may hold, whoever
# sends it (common/validation.py checks every request, from a webhook or Submit,
# against them), so a limit raised here never makes a request the node refuses.
SCRIPT_CEILING = 4 * 1024 * 1024
NAME_CEILING = 256
ENV_VALUE_CEILING = 64 * 1024
TIMEOUT_CEILING = 7 * 24 * 3600.0


@dataclass(frozen=True)
class WorkflowLimits:
    """What one ``.solstice/workflow.kdl`` may hold."""

    max_file_bytes: int = 256 * 1024
    max_jobs: int = 256
    max_steps: int = 256  # per job
    max_script_bytes: int = 1024 * 1024  # one step's run script
    max_name_chars: int = 256  # the workflow's and each step's name
    max_env_vars: int = 256  # per env level (workflow, job, step)
    max_env_value_bytes: int = 32 * 1024
    max_timeout: Seconds = Seconds(24 * 3600)  # a job's or a step's timeout
    parse_seconds: Seconds = Seconds(5)  # reading a file that takes longer makes it invalid

    def __post_init__(self) -> None:
        for name in ("max_file_bytes", "max_jobs", "max_steps", "max_script_bytes", "max_name_chars",
                     "max_env_vars", "max_env_value_bytes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{SECTION}.{name} must be at least 1")
        if self.max_file_bytes > FILE_CEILING:
            raise ConfigError(f"{SECTION}.max_file_bytes must be at most {FILE_CEILING} "
                              "(a job must fit one 16 MiB gRPC message)")
        for name, ceiling in (("max_script_bytes", SCRIPT_CEILING), ("max_name_chars", NAME_CEILING),
                              ("max_env_value_bytes", ENV_VALUE_CEILING), ("max_timeout", TIMEOUT_CEILING)):
            if getattr(self, name) > ceiling:
                raise ConfigError(f"{SECTION}.{name} must be at most {ceiling:g} (what any job request may hold)")
        if self.max_timeout <= 0 or self.parse_seconds <= 0:
            raise ConfigError(f"{SECTION}.max_timeout and parse_seconds must be positive")

    @staticmethod
    def setting(name: str) -> str:
        """How an error names the limit it hit: ``(workflow_limits.max_steps)``."""
        return f"({SECTION}.{name})"


DEFAULT_LIMITS = WorkflowLimits()


def show_bytes(count: int) -> str:
    """``262144`` -> ``256 KiB``: sizes in messages as people write them."""
    for unit, size in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if count >= size:
            value = count / size
            return f"{value:.1f} {unit}" if value % 1 else f"{int(value)} {unit}"
    return f"{count} bytes"
