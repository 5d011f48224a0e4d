"""Check out the job's exact commit with the real ``git``.

``git init``, then ``git fetch --depth 1 <url> <sha>`` (one commit, shallow);
servers that refuse to serve a commit by id get a full fetch of branches,
tags and the job's ref instead; then ``git checkout --detach <sha>``.
Credentials in the clone URL never reach argv, ``.git/config`` or a log: the
URL is stripped of them and git gets an ``Authorization`` header through
``GIT_CONFIG_*`` environment variables; the values are masked in git's output.
"""

from __future__ import annotations

import asyncio
import base64
import os
import re
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from common.errors import SolsticeError
from common.masking import Masker
from common.rpc import jobs_pb2
from common.validation import ref_problem

_SHA = re.compile(r"^(?:[0-9a-f]{40}|[0-9a-f]{64})$")
GIT_TIMEOUT = 600.0


class CheckoutError(SolsticeError):
    """The commit could not be checked out."""


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


async def checkout(spec: jobs_pb2.Checkout, dest: Path, masker: Masker, note) -> str:  # type: ignore[no-untyped-def]
    """Check ``spec.sha`` out into ``dest`` (created empty); return the checked-out sha.

    ``note(text)`` receives progress lines (already masked).
    """
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
    await _git(["init", "-q", str(dest)], dest, env, masker, note)
    note(f"fetching {masker.mask(remote.url)} {sha}")
    try:
        await _git(["-C", str(dest), "fetch", "-q", "--no-tags", "--depth", "1", remote.url, sha], dest, env, masker, note)
    except CheckoutError as err:
        note(f"fetching one commit failed ({err}); fetching all branches and tags")
        refspecs = ["+refs/heads/*:refs/remotes/origin/*", "+refs/tags/*:refs/tags/*"]
        if spec.ref:
            refspecs.append(f"+{spec.ref}:refs/solstice/job")
        await _git(["-C", str(dest), "fetch", "-q", remote.url, *refspecs], dest, env, masker, note)
    await _git(["-C", str(dest), "-c", "advice.detachedHead=false", "checkout", "-q", "--detach", sha],
               dest, env, masker, note)
    head = (await _git(["-C", str(dest), "rev-parse", "HEAD"], dest, env, masker, note)).strip()
    if head != sha:
        raise CheckoutError(f"checked out {head} instead of {sha}")
    note(f"checked out {sha}")
    return head


def _git_env(remote: Remote) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SOLSTICE_RUNNER_", "GIT_"))}
    env.update(GIT_TERMINAL_PROMPT="0", GIT_CONFIG_NOSYSTEM="1", LC_ALL="C")
    if remote.auth_header:
        env.update(GIT_CONFIG_COUNT="1", GIT_CONFIG_KEY_0="http.extraHeader", GIT_CONFIG_VALUE_0=remote.auth_header)
    return env


async def _git(args: list[str], cwd: Path, env: dict[str, str], masker: Masker, note) -> str:  # type: ignore[no-untyped-def]
    try:
        proc = await asyncio.create_subprocess_exec(
            "git", *args, cwd=cwd, env=env,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
    except OSError as err:
        raise CheckoutError(f"cannot run git: {err.strerror}") from err
    try:
        out, err_bytes = await asyncio.wait_for(proc.communicate(), GIT_TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise CheckoutError(f"git {args[2] if args[0] == '-C' else args[0]} took longer than {GIT_TIMEOUT:g}s") from None
    stderr = masker.mask(err_bytes.decode("utf-8", "replace")).strip()
    for line in stderr.splitlines()[-20:]:
        note(f"git: {line}")
    if proc.returncode != 0:
        what = args[2] if args[0] == "-C" else args[0]
        last = stderr.splitlines()[-1] if stderr else f"exit status {proc.returncode}"
        raise CheckoutError(f"git {what} failed: {last}")
    return out.decode("utf-8", "replace")
