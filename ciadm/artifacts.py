"""``ciadm artifacts JOB``: list a job's artifacts, or download them with ``--download DIR``.

Every chunk is checked as it arrives (CRC-32 per chunk, size and sha256 per
file: common/artifacts.py) and files are written under DIR/<artifact>/ at
their paths in the job's checkout; a path that would leave DIR is refused.
"""

from __future__ import annotations

from pathlib import Path

import click

from ciadm.cli import _json_option, _run, _show, cli
from ciadm.client import AdminClient
from common.artifacts import ArtifactError, FileWriter
from common.cli import fail
from common.rpc import jobs_pb2
from common.tables import iso_time, table
from common.workflow.limits import show_bytes


def _info_json(info: jobs_pb2.ArtifactInfo) -> dict[str, object]:
    return {"name": info.name, "job_id": info.job_id, "attempt": info.attempt, "files": info.files,
            "bytes": info.bytes, "created_at": iso_time(info.created_at),
            "expires_at": iso_time(info.expires_at) if info.HasField("expires_at") else None,
            "file_list": [{"path": f.path, "size": f.size, "sha256": f.sha256} for f in info.file_list]}


def _lines(artifacts: list[jobs_pb2.ArtifactInfo]) -> list[str]:
    rows: list[tuple[str, ...]] = [("ARTIFACT", "FILES", "SIZE", "EXPIRES")]
    rows += [(a.name, str(a.files), show_bytes(a.bytes),
              iso_time(a.expires_at) if a.HasField("expires_at") else "with the logs") for a in artifacts]
    return table(rows)


@cli.command(epilog="""\b
Examples:
  ciadm artifacts job-0f3c...                       # list them
  ciadm artifacts job-0f3c... --download out/       # every artifact, into out/<name>/
  ciadm artifacts job-0f3c... --name dist --download out/
""")
@click.argument("job_id", metavar="JOB")
@click.option("--attempt", type=click.IntRange(1), default=None, help="Which attempt [default: the current one].")
@click.option("--download", "target", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Download into this directory (one folder per artifact).")
@click.option("--name", "names", multiple=True, help="Only this artifact (repeatable).")
@_json_option
@click.pass_context
def artifacts(ctx: click.Context, job_id: str, attempt: int | None, target: Path | None, names: tuple[str, ...],
              as_json: bool) -> None:
    """List a job's artifacts, or download them (--download DIR)."""
    async def work(client: AdminClient) -> list[jobs_pb2.ArtifactInfo]:
        found = await client.list_artifacts(job_id, attempt or 0)
        chosen = [a for a in found if not names or a.name in names]
        missing = sorted(set(names) - {a.name for a in found})
        if missing:
            fail(f"job {job_id} has no artifact {missing[0]!r}"
                 + (f" (it has: {', '.join(a.name for a in found)})" if found else " (it has none)"))
        if target is not None:
            for info in chosen:
                folder = target / info.name
                folder.mkdir(parents=True, exist_ok=True)
                writer = FileWriter(folder, replace=True)
                try:
                    async for chunk in client.download_artifact(job_id, info.name, info.attempt):
                        writer.add(chunk)
                    writer.finish()
                except ArtifactError as err:
                    fail(f"artifact {info.name!r}: {err}")
                finally:
                    writer.abort()
        return chosen

    chosen = _run(ctx, work)
    if target is not None and not as_json:
        for info in chosen:
            click.echo(f"{info.name}: {info.files} files, {show_bytes(info.bytes)} -> {target / info.name}")
        return
    _show(as_json, [_info_json(a) for a in chosen], _lines(chosen) if chosen else [],
          empty=f"job {job_id} has no artifacts")
