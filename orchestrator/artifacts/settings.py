"""``ArtifactsConfig``: how large a job's artifacts may be (the ``artifacts`` section).

YAML (or ``SOLSTICE_ARTIFACTS_*``)::

    artifacts:
      max_file_bytes: 1G     # one file of an artifact (N[KMGT]; 0 = no limit)
      max_job_bytes: 4G      # all artifacts of one job attempt together
"""

from __future__ import annotations

from dataclasses import dataclass

from common.artifacts import ArtifactLimits
from common.errors import ConfigError
from orchestrator.catalog import size_bytes


@dataclass(frozen=True)
class ArtifactsConfig:
    """Per-file and per-job bounds of uploaded artifacts."""

    max_file_bytes: str = "1G"
    max_job_bytes: str = "4G"

    def __post_init__(self) -> None:
        for name in ("max_file_bytes", "max_job_bytes"):
            value = str(getattr(self, name))
            if value != "0":
                try:
                    size_bytes(value)
                except ConfigError as err:
                    raise ConfigError(f"artifacts.{name}: {err}") from None

    def limits(self) -> ArtifactLimits:
        def _bytes(text: str) -> int:
            return 0 if str(text) == "0" else size_bytes(str(text))
        return ArtifactLimits(_bytes(self.max_file_bytes), _bytes(self.max_job_bytes))
