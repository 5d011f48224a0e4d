"""What ``cidev run`` builds: the checkout's committed HEAD, or a snapshot of the working tree.

The runner checks code out with ``git fetch <clone_url> <sha>`` exactly as
it does in a VM, so a local run needs nothing but a commit id in the
repository. ``--dirty`` snapshots the working tree (tracked changes and new,
non-ignored files) as a commit object built through a throw-away index:
the user's index, branches and working tree are never touched; the commit is
an unreferenced object that ``git gc`` removes in due course.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from common.errors import SolsticeError
from common.rpc import jobs_pb2

GIT_TIMEOUT = 120.0
# A fixed identity: the snapshot commit is never pushed, and a missing
# user.name/user.email must not stop a local run.
IDENTITY = {
    "GIT_AUTHOR_NAME": "cidev", "GIT_AUTHOR_EMAIL": "cidev@localhost",
    "GIT_COMMITTER_NAME": "cidev", "GIT_COMMITTER_EMAIL": "cidev@localhost",
}


class SourceError(SolsticeError):
    """The directory is not a git checkout, or git refused to read it."""


@dataclass(frozen=True)
class LocalSource:
    """The commit a local run builds, and where the runner fetches it from."""

    root: Path   # top of the work tree
    sha: str
    ref: str     # refs/heads/<branch>, or "" on a detached HEAD
    dirty: bool  # sha is a snapshot of the working tree, not a commit of a branch
    uncommitted: int = 0  # files changed or new in the work tree (what a run without --dirty leaves out)

    def checkout(self) -> jobs_pb2.Checkout:
        """The ``Checkout`` a job request carries for this source."""
        return jobs_pb2.Checkout(forge="local", repo=str(self.root), clone_url=str(self.root),
                                 ref=self.ref, sha=self.sha)


async def run_git(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    """``git ARGS`` in ``cwd`` (argv, never a shell); its stdout, or ``SourceError`` with git's last line."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    full_env.update(LC_ALL="C", GIT_TERMINAL_PROMPT="0")
    full_env.update(env or {})
    try:
        proc = await asyncio.create_subprocess_exec(
            "git", *args, cwd=cwd, env=full_env, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
    except OSError as err:
        raise SourceError(f"cannot run git: {err.strerror}") from err
    try:
        out, err_out = await asyncio.wait_for(proc.communicate(), GIT_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise SourceError(f"git {args[0]} took longer than {GIT_TIMEOUT:g}s") from None
    if proc.returncode != 0:
        lines = err_out.decode("utf-8", "replace").strip().splitlines()
        raise SourceError(f"git {args[0]} failed in {cwd}: {lines[-1] if lines else f'exit status {proc.returncode}'}")
    return out.decode("utf-8", "replace").strip()


async def resolve_source(path: Path, dirty: bool) -> LocalSource:
    """The commit to build for the checkout holding ``path`` (see the module docstring)."""
    start = path if path.is_dir() else path.parent
    try:
        root = Path(await run_git(["rev-parse", "--show-toplevel"], start))
    except SourceError as err:
        raise SourceError(f"{path} is not inside a git checkout (cidev run builds a commit): {err}") from err
    try:
        head = await run_git(["rev-parse", "--verify", "HEAD^{commit}"], root)
    except SourceError:
        raise SourceError(f"{root} has no commit yet: commit something first") from None
    try:
        ref = await run_git(["symbolic-ref", "-q", "HEAD"], root)
    except SourceError:
        ref = ""  # detached HEAD
    if not dirty:
        changed = await run_git(["status", "--porcelain", "--untracked-files=normal"], root)
        return LocalSource(root, head, ref, False, len(changed.splitlines()))
    with tempfile.TemporaryDirectory(prefix="cidev-index-") as tmp:
        index = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        await run_git(["read-tree", "HEAD"], root, index)
        await run_git(["add", "-A"], root, index)
        tree = await run_git(["write-tree"], root, index)
    sha = await run_git(["commit-tree", tree, "-p", head, "-m", "cidev run --dirty: working tree snapshot"],
                     root, IDENTITY)
    return LocalSource(root, sha, ref, True)
