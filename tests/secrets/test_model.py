"""Scopes, names and ref patterns: what an operator may type and what a job's checkout maps to."""

from __future__ import annotations

import pytest

from common.rpc import jobs_pb2
from orchestrator.secrets import InvalidSecret, RefPatterns, Scope
from orchestrator.secrets.model import check_name, check_value


def test_scopes_parse_lower_case_and_order_repository_before_owner():
    repo = Scope.parse("GitHub/Acme/Widgets.js")
    assert str(repo) == "github/acme/widgets.js" and repo.is_repository
    assert repo.lookup_order() == (repo, Scope.parse("github/acme"))
    owner = Scope.parse("forgejo/infra")
    assert not owner.is_repository and owner.lookup_order() == (owner,)


@pytest.mark.parametrize(("text", "problem"), [
    ("github", "must be FORGE/OWNER/REPO"),
    ("github/acme/widgets/extra", "must be FORGE/OWNER/REPO"),
    ("github//widgets", "must be FORGE/OWNER/REPO"),
    ("git hub/acme", "not a forge name"),
    ("github/ac me/widgets", "owner 'ac me'"),
    ("github/acme/..", "repository '..'"),
    ("github/acme/w?x", "repository 'w?x'"),
])
def test_bad_scopes_are_refused_with_the_reason(text, problem):
    with pytest.raises(InvalidSecret, match="scope") as err:
        Scope.parse(text)
    assert problem in str(err.value)


def test_a_checkout_maps_to_its_repository_and_local_paths_to_none():
    github = jobs_pb2.Checkout(forge="github", repo="Codertocat/Hello-World")
    assert Scope.of_checkout(github) == Scope("github", "codertocat", "hello-world")
    assert Scope.of_checkout(jobs_pb2.Checkout(forge="local", repo="/home/me/app")) is None
    assert Scope.of_checkout(jobs_pb2.Checkout(forge="github", repo="no-owner")) is None


@pytest.mark.parametrize(("patterns", "ref", "allowed"), [
    ((), "refs/pull/7/head", True),
    (("refs/heads/main",), "refs/heads/main", True),
    (("refs/heads/main",), "refs/heads/main2", False),
    (("refs/tags/*",), "refs/tags/v1.2", True),
    (("refs/tags/*",), "refs/tags/release/v1", False),  # '*' stays within a segment
    (("refs/heads/release/**",), "refs/heads/release/2024/q1", True),
    (("refs/heads/main", "refs/tags/v*"), "refs/tags/v3", True),
    (("refs/heads/main", "refs/tags/v*"), "refs/heads/feature", False),
])
def test_ref_patterns(patterns, ref, allowed):
    assert RefPatterns.parse(patterns).allows(ref) is allowed


@pytest.mark.parametrize("pattern", ["main", "refs/heads/../main", "refs/heads/a b", "refs//x", "refs/***"])
def test_bad_ref_patterns_are_refused(pattern):
    with pytest.raises(InvalidSecret, match="ref pattern"):
        RefPatterns.parse([pattern])


def test_names_must_be_environment_variable_names_and_values_usable():
    assert check_name("DEPLOY_TOKEN") == "DEPLOY_TOKEN"
    for bad in ("npm-token", "1X", "A B", ""):
        with pytest.raises(InvalidSecret, match="invalid secret name"):
            check_name(bad)
    for bad, why in (("", "empty"), ("a\0b", "NUL"), ("x" * 70000, "64 KiB")):
        with pytest.raises(InvalidSecret, match=why):
            check_value(bad)
