"""Caches of job directories between runs, scoped per repository and branch.

    scope = cache_scope(request)                  # what a job reads, and where it may write
    caches = DirectoryCaches(root, max_repo_bytes)
    found = await caches.lookup(scope, name, key, restore_keys)     # exact key, else newest prefix match
    async for chunk in caches.chunks(found): ...                    # its files ("copy" mode)
    saved = await caches.save(scope, name, key, chunks, max_bytes)  # a new entry (never overwrites a key)
    await caches.reconcile()                      # remove torn saves; evict least recently used per repository

On bhyve the entries are ZFS datasets instead (``orchestrator.caches.zfs``).
"""

from orchestrator.caches.dirstore import CacheEntry, DirectoryCaches
from orchestrator.caches.scope import CacheScope, cache_scope
from orchestrator.caches.settings import CachesConfig

__all__ = ["CacheEntry", "CacheScope", "CachesConfig", "DirectoryCaches", "cache_scope"]
