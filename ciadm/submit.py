"""What ``ciadm submit`` sends: a workflow and the exact commit to build it at.

The commit comes from a local git checkout (``--repo PATH``, default: the
checkout holding the workflow file, or the current directory), whose
``--ref``/``--sha`` (default HEAD) is resolved to a full sha here; or from a
remote repository (``--repo URL``), whose ``--ref`` is resolved with
``git ls-remote`` unless ``--sha`` is given. Without a workflow file the
workflow is read from ``.solstice/workflow.kdl`` at that commit.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from cidev.run_requests import workflow_requests
from cidev.run_source import SourceError, run_git
from common.errors import SolsticeError
from common.rpc import jobs_pb2
from common.workflow import DEFAULT_PATH, Workflow, load_workflow, parse_workflow

_SHA = re.compile(r"^[0-9a-f]{40}$")
_URL = re.compile(r"^(?:[a-z][a-z0-9+.-]*://|[^/:]+@[^/:]+:)")


class SubmitError(SolsticeError):
    """The workflow or the commit to build could not be determined."""


@dataclass(frozen=True)
class Target:
    """The commit a submission builds."""

    checkout: jobs_pb2.Checkout
    workflow: Workflow


def is_url(repo: str) -> bool:
    """True for ``https://…``, ``ssh://…``, ``git@host:path``; False for a local path."""
    return bool(_URL.match(repo))


def _full_ref(ref: str) -> str:
    return ref if ref.startswith("refs/") else f"refs/heads/{ref}"


async def _local(repo: Path, ref: str | None, sha: str | None) -> tuple[jobs_pb2.Checkout, Path]:
    try:
        root = Path(await run_git(["rev-parse", "--show-toplevel"], repo))
    except SourceError as err:
        raise SubmitError(f"{repo} is not a git checkout; give --repo PATH or --repo URL") from err
    what = sha or ref or "HEAD"
    try:
        full = await run_git(["rev-parse", "--verify", f"{what}^{{commit}}"], root)
    except SourceError:
        raise SubmitError(f"{root} has no commit {what!r}") from None
    if ref:
        full_ref = _full_ref(ref)
    else:
        try:
            full_ref = await run_git(["symbolic-ref", "-q", "HEAD"], root) if not sha else ""
        except SourceError:
            full_ref = ""
    checkout = jobs_pb2.Checkout(forge="local", repo=str(root), clone_url=str(root), ref=full_ref, sha=full)
    return checkout, root


async def _remote(url: str, ref: str | None, sha: str | None) -> jobs_pb2.Checkout:
    if sha:
        if not _SHA.match(sha.lower()):
            raise SubmitError(f"--sha {sha!r} must be a full 40-hex commit id for a remote repository")
        return jobs_pb2.Checkout(forge="git", repo=url, clone_url=url, ref=_full_ref(ref) if ref else "",
                                 sha=sha.lower())
    wanted = _full_ref(ref or "HEAD") if ref else "HEAD"
    with tempfile.TemporaryDirectory(prefix="ciadm-") as tmp:
        try:
            out = await run_git(["ls-remote", "--", url, wanted], Path(tmp))
        except SourceError as err:
            raise SubmitError(f"cannot read {url}: {err}") from None
    for line in out.splitlines():
        found, _, name = line.partition("\t")
        if name == wanted:
            return jobs_pb2.Checkout(forge="git", repo=url, clone_url=url, ref=name if ref else "", sha=found)
    raise SubmitError(f"{url} has no ref {wanted!r}; give --ref or --sha")


async def _workflow_at(checkout: jobs_pb2.Checkout) -> str:
    with tempfile.TemporaryDirectory(prefix="ciadm-") as tmp:
        where = Path(tmp)
        try:
            await run_git(["init", "-q", str(where)], where)
            await run_git(["fetch", "-q", "--no-tags", "--depth", "1", "--", checkout.clone_url, checkout.sha], where)
            return await run_git(["show", f"{checkout.sha}:{DEFAULT_PATH.as_posix()}"], where)
        except SourceError as err:
            raise SubmitError(f"cannot read {DEFAULT_PATH} at {checkout.sha[:12]} of {checkout.repo}: {err}") from None


async def resolve_target(workflow_file: Path | None, repo: str | None, ref: str | None, sha: str | None) -> Target:
    """The commit and the workflow to submit (see the module docstring)."""
    if repo and is_url(repo):
        checkout = await _remote(repo, ref, sha)
    else:
        base = Path(repo) if repo else (workflow_file.resolve().parent if workflow_file else Path.cwd())
        if not base.is_dir():
            raise SubmitError(f"--repo {repo!r} is neither a directory nor a URL")
        checkout, _ = await _local(base, ref, sha)
    if workflow_file is not None:
        workflow = load_workflow(workflow_file)
    else:
        workflow = parse_workflow(await _workflow_at(checkout), f"{checkout.repo}@{checkout.sha[:12]}:{DEFAULT_PATH}")
    return Target(checkout, workflow)


def submission(target: Target, jobs: Sequence[str], env: Mapping[str, str]) -> list[jobs_pb2.JobRequest]:
    """The job requests of one run of ``target``."""
    return workflow_requests(target.workflow, target.checkout, origin="ciadm", jobs=jobs, env=env)
