"""The job-request checker shared by Submit and the webhooks (common.validation), field by field."""

from __future__ import annotations

import pytest

from common.validation import (
    CloneRules,
    RequestInvalid,
    check_clone_url,
    check_repo,
    check_sha,
    ref_problem,
)

REMOTE = CloneRules()
LOCAL = CloneRules(allow_local=True)
HTTP = CloneRules(allow_http=True)


@pytest.mark.parametrize("url", [
    "https://github.com/o/r.git", "https://user:token@git.example.org:8443/o/r", "ssh://git@host/o/r.git",
    "git://host/o/r", "git@github.com:o/r.git",
])
def test_remote_clone_urls_are_taken_everywhere(url: str) -> None:
    assert check_clone_url(url, REMOTE) == url


@pytest.mark.parametrize(("url", "rules", "why"), [
    ("http://git.example.org/o/r.git", REMOTE, "plain http only from a forge reached over http"),
    ("/srv/git/r", REMOTE, "is a local path"),
    ("file:///srv/git/r", REMOTE, "is a local path"),
    ("file://host/srv/git/r", LOCAL, "not a file:/// URL"),
    ("ext::sh -c id", LOCAL, "spaces, control characters"),
    ("ext::nc", LOCAL, "the scheme must be"),
    ("fd::3", LOCAL, "the scheme must be"),
    ("-uhttps://x", LOCAL, "a leading '-'"),
    ("ssh://-oProxyCommand=id/x", LOCAL, "names no host"),
    ("git@-oProxyCommand=id:x", LOCAL, "the scheme must be"),
    ("https:///no-host", LOCAL, "names no host"),
    ("https://h:99999/x", LOCAL, "not a valid URL"),
    ("https://h/x\n", LOCAL, "control characters"),
    ("", LOCAL, "is empty"),
    ("https://h/" + "x" * 3000, LOCAL, "longer than"),
])
def test_other_clone_urls_are_refused_with_the_reason(url: str, rules: CloneRules, why: str) -> None:
    with pytest.raises(RequestInvalid, match="^checkout.clone_url: ") as err:
        check_clone_url(url, rules, "checkout.clone_url")
    assert why in err.value.problem


def test_local_and_http_only_where_allowed() -> None:
    assert check_clone_url("/srv/git/r", LOCAL) and check_clone_url("file:///srv/git/r", LOCAL)
    assert check_clone_url("http://forgejo.lan:3000/o/r.git", HTTP)


@pytest.mark.parametrize("sha", ["a" * 40, "0123456789abcdef" * 4])
def test_sha_is_40_or_64_lowercase_hex(sha: str) -> None:
    assert check_sha(sha) == sha


@pytest.mark.parametrize("sha", ["a" * 39, "a" * 41, "A" * 40, "g" * 40, "../" + "a" * 40, "a" * 40 + "\n", ""])
def test_other_shas_are_refused(sha: str) -> None:
    with pytest.raises(RequestInvalid, match="is not a commit id"):
        check_sha(sha)


@pytest.mark.parametrize(("forge", "repo"), [
    ("github", "Codertocat/Hello-World"), ("github", "a-b/c.d_e"), ("forgejo", "some.user/repo_1"),
])
def test_repositories_as_the_forge_names_them(forge: str, repo: str) -> None:
    assert check_repo(forge, repo) == repo


@pytest.mark.parametrize(("forge", "repo"), [
    ("github", "o"), ("github", "o/r/x"), ("github", "o/r?x=1"), ("github", "o/r#x"), ("github", "o/.."),
    ("github", "o/."), ("github", "../r"), ("github", "o_x/r"), ("github", "o/r%2F"), ("forgejo", "-o/r"),
    ("forgejo", "o/r s"), ("github", "o/" + "r" * 101),
])
def test_other_repositories_are_refused(forge: str, repo: str) -> None:
    with pytest.raises(RequestInvalid, match="is not a"):
        check_repo(forge, repo)


@pytest.mark.parametrize("ref", ["refs/heads/main", "refs/heads/feature/x-1.2_b", "refs/tags/v1.0", "refs/pull/7/head"])
def test_refs_the_runner_fetches(ref: str) -> None:
    assert ref_problem(ref) is None


@pytest.mark.parametrize(("ref", "why"), [
    ("refs/heads/feature+x", "Solstice can check out"),  # git takes these; the runner does not
    ("refs/heads/caf\u00e9", "Solstice can check out"),
    ("refs/heads/a@b", "Solstice can check out"),
    ("refs/heads/a b", "Solstice can check out"),
    ("main", "Solstice can check out"),
    ("refs/heads/a..b", "valid git ref"),  # git refuses these too
    ("refs/heads/.hidden", "valid git ref"),
    ("refs/heads/x.lock", "valid git ref"),
    ("refs/heads/x.", "valid git ref"),
    ("refs/heads/a//b", "Solstice can check out"),
    ("refs/heads/" + "x" * 300, "longer than"),
])
def test_refs_it_cannot(ref: str, why: str) -> None:
    problem = ref_problem(ref)
    assert problem is not None and why in problem
