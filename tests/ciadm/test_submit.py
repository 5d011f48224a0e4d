"""What ``ciadm submit`` builds: the exact commit and the workflow, from a checkout or a URL (real git)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ciadm.submit import SubmitError, resolve_target, submission
from tests.singlenode.harness import ciadm, git, git_repo

ONE = 'workflow name="one" {\n  job id="a" runs_on="x" {\n    step run="echo one"\n  }\n}\n'
TWO = 'workflow name="two" {\n  job id="b" runs_on="y" {\n    step run="echo two"\n  }\n}\n'


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """main has workflow ONE (first commit); branch 'next' has TWO on top."""
    path = git_repo(tmp_path / "repo", ONE)
    git(path, "checkout", "-q", "-b", "next")
    (path / ".solstice" / "workflow.kdl").write_text(TWO)
    git(path, "commit", "-q", "-am", "two")
    git(path, "checkout", "-q", "main")
    return path


async def test_head_of_the_checkout_with_its_committed_workflow(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (repo / ".solstice" / "workflow.kdl").write_text(TWO)  # uncommitted: not what is built
    monkeypatch.chdir(repo)
    target = await resolve_target(None, None, None, None)
    assert target.checkout.sha == git(repo, "rev-parse", "HEAD")
    assert (target.checkout.ref, target.checkout.forge, target.checkout.repo) == ("refs/heads/main", "local", str(repo))
    assert target.workflow.name == "one"


async def test_ref_and_sha_of_a_local_checkout(repo: Path) -> None:
    nxt = await resolve_target(None, str(repo), "next", None)
    assert nxt.checkout.sha == git(repo, "rev-parse", "next") and nxt.checkout.ref == "refs/heads/next"
    assert nxt.workflow.name == "two"
    first = await resolve_target(None, str(repo), None, git(repo, "rev-parse", "main")[:10])
    assert first.checkout.sha == git(repo, "rev-parse", "main") and first.checkout.ref == ""
    assert first.workflow.name == "one"


async def test_a_workflow_file_is_used_as_it_is(repo: Path, tmp_path: Path) -> None:
    other = tmp_path / "nightly.kdl"
    other.write_text(TWO)
    target = await resolve_target(other, str(repo), None, None)
    assert target.workflow.name == "two" and target.checkout.sha == git(repo, "rev-parse", "HEAD")
    [request] = submission(target, (), {"MODE": "nightly"})
    assert (request.key, request.runs_on, request.env["MODE"], request.origin) == ("b", "y", "nightly", "ciadm")
    assert request.checkout.sha == target.checkout.sha and request.job_id.startswith("job-")


async def test_a_remote_url_is_resolved_with_ls_remote(repo: Path) -> None:
    url = repo.as_uri()  # file:///...: a URL, read with the git protocol like any remote
    target = await resolve_target(None, url, "next", None)
    assert (target.checkout.forge, target.checkout.clone_url) == ("git", url)
    assert target.checkout.sha == git(repo, "rev-parse", "next") and target.checkout.ref == "refs/heads/next"
    assert target.workflow.name == "two"


@pytest.mark.parametrize("args, message", [
    ((None, "REPO", "nope", None), "has no commit 'nope'"),
    ((None, "URL", "nope", None), "has no ref 'refs/heads/nope'"),
    ((None, "URL", None, "abc123"), "must be a full 40-hex commit id"),
    ((None, "/no/such/dir", None, None), "is neither a directory nor a URL"),
])
async def test_what_cannot_be_resolved_says_why(repo: Path, args: tuple, message: str) -> None:
    swap = {"REPO": str(repo), "URL": repo.as_uri()}
    resolved = tuple(swap.get(a, a) if isinstance(a, str) else a for a in args)
    with pytest.raises(SubmitError, match=message):
        await resolve_target(*resolved)


def test_the_cli_reports_resolution_errors_in_one_line(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    done = ciadm("127.0.0.1:1", "submit", cwd=plain)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [f"ERROR: {plain} is not a git checkout; give --repo PATH or --repo URL"]
