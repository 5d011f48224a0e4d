"""A node's caches from its settings: what ``RunnerGateway`` is given."""

from __future__ import annotations

from typing import Any

from orchestrator.caches.dirstore import DirectoryCaches


def cache_options(settings: Any) -> dict[str, Any]:
    """``caches``/``cache_max_bytes`` for the gateway of a node with ``settings`` (NodeSettings):
    directories under ``<data_dir>/caches``, copied over the runner channel. (bhyve adds its
    ZFS caches on top: ``orchestrator.caches.zfs``.)"""
    config = settings.caches
    return {"caches": DirectoryCaches(settings.data_dir / "caches", config.bytes("max_repo_bytes")),
            "cache_max_bytes": config.bytes("max_cache_bytes")}
