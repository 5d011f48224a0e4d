"""Check out the job's exact commit with the real ``git``.

``git init``, then ``git fetch --depth 1 <url> <sha>`` (one commit, shallow);
servers that refuse to serve a commit by id get a full fetch of branches,
tags and the job's ref instead; then ``git checkout --detach <sha>``.
Credentials in the clone URL never reach argv, ``.git/config`` or a log: the
URL is stripped of them and git gets an ``Authorization`` header through
``GIT_CONFIG_*`` environment variables; the values are masked in git's output.

The checkout is part of the job: it stops when the job is cancelled
(``CheckoutCancelled``) or its timeout passes (``CheckoutTimedOut``), each
git command is bounded by what is left of the job's time, and git's whole
process group (remote helpers included) is killed when it is stopped. A
network failure (refused or reset connection, name resolution, a 5xx, a
connection that dies mid-transfer) is retried with backoff; a stalled fetch
that times out is not repeated as a full fetch.
"""

from __future__ import annotations

import asyncio
import base64
import os
import random
import re
import signal
import time
import urllib.parse
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from common.errors import SolsticeError
from common.masking import Masker
from common.rpc import jobs_pb2
from common.validation import ref_problem

_SHA = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
GIT_TIMEOUT = 600.0
FETCH_ATTEMPTS = 4  # a fetch that fails on the network is tried this many times in all...
FETCH_BACKOFF = (1.0, 8.0)  # ...after pauses doubling from 1 s up to 8 s (jittered)
# What git says when the network, not the request, failed (curl and the git protocols).
_TRANSIENT = re.compile(
    r"could not resolve host|failed to connect|connection refused|connection reset|connection timed out|"
    r"operation timed out|timed out after|network is unreachable|no route to host|early eof|"
    r"the remote end hung up unexpectedly|rpc failed|unexpected disconnect|returned error: 5\d\d|"
    r"http/2 stream \d+ was not closed cleanly|gnutls|ssl_read|ssl_error|transfer closed|empty reply from server",
    re.IGNORECASE,
)


class CheckoutError(SolsticeError):
    """The commit could not be checked out; ``transient``: git said the network failed."""

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class CheckoutStopped(CheckoutError):
    """The checkout was stopped before it finished."""


class CheckoutCancelled(CheckoutStopped):
    """The job was cancelled during the checkout."""


class CheckoutTimedOut(CheckoutStopped):
    """The job's timeout passed during the checkout."""


@dataclass(frozen=True)
class Remote:
    """A clone URL without credentials, and the header that carries them."""

    url: str
    auth_header: str | None

    def __repr__(self) -> str:
        return f"Remote(url={self.url!r}, auth_header={'***' if self.auth_header else None})"


def split_credentials(url: str, masker: Masker) -> Remote:
    """Remove ``user:password@`` from ``url``; register the secret parts with ``masker``."""
    if url.startswith("-"):
        raise CheckoutError(f"clone URL {masker.mask(url)!r} looks like an option")
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or parsed.password is None and parsed.username is None:
        return Remote(url, None)
    user = urllib.parse.unquote(parsed.username or "")
    password = urllib.parse.unquote(parsed.password or "")
    basic = base64.b64encode(f"{user}:{password}".encode()).decode()
    masker.add(password, basic, f"{user}:{password}")
    host = parsed.hostname or ""
    netloc = f"{host}:{parsed.port}" if parsed.port else host
    clean = urllib.parse.urlunsplit((parsed.scheme, netloc, parsed.path, parsed.query, parsed.fragment))
    return Remote(clean, f"Authorization: Basic {basic}")


async def checkout(spec: jobs_pb2.Checkout, dest: Path, masker: Masker, note: Callable[[str], object],
                   deadline: float | None = None, cancelled: asyncio.Event | None = None) -> str:
    """Check ``spec.sha`` out into ``dest`` (created empty); return the checked-out sha.

    ``note(text)`` receives progress lines (already masked). ``deadline``
    (``time.monotonic()``) is the job's; ``cancelled`` is set when the job is
    cancelled. Raises ``CheckoutCancelled``/``CheckoutTimedOut`` for those,
    ``CheckoutError`` when the commit cannot be had.
    """
    work = asyncio.ensure_future(_checkout(spec, dest, masker, note, deadline))
    stop = asyncio.ensure_future(cancelled.wait()) if cancelled is not None else None
    try:
        left = None if deadline is None else max(deadline - time.monotonic(), 0.0)
        done, _ = await asyncio.wait([t for t in (work, stop) if t is not None], timeout=left,
                                     return_when=asyncio.FIRST_COMPLETED)
        if work in done:
            return work.result()
        if stop is not None and stop in done:
            raise CheckoutCancelled("the job was cancelled during the checkout")
        raise CheckoutTimedOut("the job timed out during the checkout")
    finally:
        for task in (work, stop):
            if task is not None:
                task.cancel()
        # git's process group is killed as the checkout task unwinds.
        await asyncio.gather(*(t for t in (work, stop) if t is not None), return_exceptions=True)


async def _checkout(spec: jobs_pb2.Checkout, dest: Path, masker: Masker, note: Callable[[str], object],
                    deadline: float | None) -> str:
    sha = spec.sha.lower()
    if not _SHA.match(sha):
        raise CheckoutError(f"commit {spec.sha!r} is not a full hexadecimal commit id")
    problem = ref_problem(spec.ref) if spec.ref else None
    if problem:
        raise CheckoutError(f"ref {spec.ref!r} {problem}")
    if not spec.clone_url:
        raise CheckoutError("the job names no clone URL")
    remote = split_credentials(spec.clone_url, masker)
    env = _git_env(remote)
    dest.mkdir(parents=True, exist_ok=True)

    async def git(*args: str) -> str:
        return await _git(list(args), dest, env, masker, note, deadline)

    await git("init", "-q", str(dest))
    note(f"fetching {masker.mask(remote.url)} {sha}")
    try:
        await _retrying(lambda: git("-C", str(dest), "fetch", "-q", "--no-tags", "--depth", "1", remote.url, sha),
                        note, deadline)
    except CheckoutError as err:
        if err.transient or isinstance(err, _GitTimeout):
            raise  # the network failed, not the request: a full fetch would fail the same way, only slower
        note(f"fetching one commit failed ({err}); fetching all branches and tags")
        refspecs = ["+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"]
        if spec.ref:
            refspecs.append(f"+{spec.ref}:refs/solstice/job")
        await _retrying(lambda: git("-C", str(dest), "fetch", "-q", remote.url, *refspecs), note, deadline)
    await git("-C", str(dest), "-c", "advice.detachedHead=false", "checkout", "-q", "--detach", sha)
    head = (await git("-C", str(dest), "rev-parse", "HEAD")).strip()
    if head != sha:
        raise CheckoutError(f"checked out {head} instead of {sha}")
    note(f"checked out {sha}")
    return head


async def _retrying(fetch: Callable[[], Awaitable[str]], note: Callable[[str], object],
                    deadline: float | None) -> str:
    """``fetch()`` again after a network failure, with backoff, while the job's time allows."""
    pause = FETCH_BACKOFF[0]
    for attempt in range(1, FETCH_ATTEMPTS + 1):
        try:
            return await fetch()
        except CheckoutError as err:
            wait = random.uniform(pause / 2, pause)
            if (not err.transient or attempt == FETCH_ATTEMPTS
                    or deadline is not None and time.monotonic() + wait >= deadline):
                raise
            note(f"fetch failed ({err}); retrying in {wait:.1f}s ({attempt} of {FETCH_ATTEMPTS - 1} retries)")
            await asyncio.sleep(wait)
            pause = min(pause * 2, FETCH_BACKOFF[1])
    raise AssertionError("unreachable")


def _git_env(remote: Remote) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOLSTICE_RUNNER_", "GIT_"))}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_CONFIG_NOSYSTEM="1", LC_ALL="C")
    if remote.auth_header:
        env.update(GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="http.extraHeader", GIT_CONFIG_VALUE_0=remote.auth_header)
    return env


class _GitTimeout(CheckoutError):
    """One git command outlived its time (``GIT_TIMEOUT`` or the job's deadline)."""


async def _git(args: list[str], cwd: Path, env: dict[str, str], masker: Masker, note: Callable[[str], object],
               deadline: float | None = None) -> str:
    what = args[2] if args[0] == "-C" else args[0]
    timeout = GIT_TIMEOUT if deadline is None else min(GIT_TIMEOUT, deadline - time.monotonic())
    if timeout <= 0:
        raise _GitTimeout(f"no time left for git {what}")
    try:
        # Its own process group: a remote helper (git-remote-https) is stopped with it.
        proc = await asyncio.create_subprocess_exec(
            "git", *args, cwd=cwd, env=env, process_group=0,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
    except OSError as err:
        raise CheckoutError(f"cannot run git: {err.strerror}") from err
    try:
        out, err_bytes = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        raise _GitTimeout(f"git {what} took longer than {timeout:g}s") from None
    finally:
        if proc.returncode is None:  # timed out, or the checkout was stopped
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            await asyncio.shield(proc.wait())
    stderr = masker.mask(err_bytes.decode("utf-8", "replace")).strip()
    for line in stderr.splitlines()[-20:]:
        note(f"git: {line}")
    if proc.returncode != 0:
        last = stderr.splitlines()[-1] if stderr else f"exit status {proc.returncode}"
        raise CheckoutError(f"git {what} failed: {last}", transient=bool(_TRANSIENT.search(stderr)))
    return out.decode("utf-8", "replace")
