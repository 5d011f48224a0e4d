"""Job artifacts on a node: stored beside the job's log, served to runners and operators.

    store = ArtifactStore(logstore.root)
    info = await store.receive(job_id, attempt, job_key, expire, chunks, limits)   # an upload
    await store.list(job_id, attempt)          # ArtifactInfo of each stored artifact
    async for chunk in store.chunks(job_id, attempt, name): ...                  # a download
    await store.expire()                       # delete those past their ``expire`` (retention)

Layout: ``<logs>/<job id>/artifacts/<attempt>/<name>/{manifest.json,files/…}``:
deleting a job's log folder (retention, ``ciadm gc``) deletes its artifacts.
"""

from orchestrator.artifacts.settings import ArtifactsConfig
from orchestrator.artifacts.store import ArtifactNotFound, ArtifactSource, ArtifactStore

__all__ = ["ArtifactNotFound", "ArtifactSource", "ArtifactStore", "ArtifactsConfig"]
