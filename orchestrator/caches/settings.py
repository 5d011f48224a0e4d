"""``CachesConfig``: how much cache a repository may keep (the ``caches`` section).

YAML (or ``SOLSTICE_CACHES_*``)::

    caches:
      max_repo_bytes: 10G    # all caches of one repository; the least recently used go first
      max_cache_bytes: 2G    # one saved cache
      volume_size: 8G        # bhyve: size of a new (empty) cache disk
"""

from __future__ import annotations

from dataclasses import dataclass

from common.errors import ConfigError
from orchestrator.catalog import size_bytes


@dataclass(frozen=True)
class CachesConfig:
    """Bounds of the caches a node keeps."""

    max_repo_bytes: str = "10G"
    max_cache_bytes: str = "2G"
    volume_size: str = "8G"

    def __post_init__(self) -> None:
        for name in ("max_repo_bytes", "max_cache_bytes", "volume_size"):
            try:
                size_bytes(str(getattr(self, name)))
            except ConfigError as err:
                raise ConfigError(f"caches.{name}: {err}") from None

    def bytes(self, name: str) -> int:
        return size_bytes(str(getattr(self, name)))
