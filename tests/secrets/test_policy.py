"""Who gets which secret: trusted jobs only, declared names only, on an allowed ref - or a reason."""

from __future__ import annotations

from common.rpc import jobs_pb2
from orchestrator.secrets import RefPatterns, Scope, SecretValue
from orchestrator.secrets.policy import Refusal, after_lookup, before_lookup

REPO = Scope.parse("github/acme/widgets")


def request(*names: str, trusted: bool = True, ref: str = "refs/heads/main", forge: str = "github",
            repo: str = "acme/widgets", origin: str = "github push") -> jobs_pb2.JobRequest:
    return jobs_pb2.JobRequest(job_id="job-1", secrets=list(names), trusted=trusted, origin=origin,
                               checkout=jobs_pb2.Checkout(forge=forge, repo=repo, ref=ref, sha="a" * 40))


def value(name: str, scope: Scope = REPO, refs: tuple[str, ...] = ()) -> SecretValue:
    return SecretValue(scope, name, RefPatterns.parse(refs), f"value-of-{name}")


def test_an_untrusted_job_is_refused_every_declared_name_before_any_lookup():
    decided = before_lookup(request("DEPLOY_KEY", "NPM_TOKEN", trusted=False, origin="github pull_request"))
    assert isinstance(decided, Refusal)
    assert decided.reason.startswith("secrets DEPLOY_KEY, NPM_TOKEN refused: the job is untrusted")
    assert "github pull_request" in decided.reason and "fork pull requests" in decided.reason


def test_a_local_checkout_has_no_scope_and_a_node_without_store_refuses():
    decided = before_lookup(request("A", forge="local", repo="/home/me/app"))
    assert isinstance(decided, Refusal) and "/home/me/app, not a forge repository" in decided.reason
    decided = before_lookup(request("A"), has_store=False)
    assert isinstance(decided, Refusal) and decided.reason == "secret A refused: this node has no secret store"
    assert before_lookup(request("A")) == REPO


def test_every_declared_name_must_be_found_and_allowed_on_the_ref():
    found = {"A": value("A"), "B": value("B", Scope.parse("github/acme"), ("refs/heads/main",))}
    assert after_lookup(request("A", "B"), REPO, found) == {"A": "value-of-A", "B": "value-of-B"}
    assert after_lookup(request("A"), REPO, found) == {"A": "value-of-A"}  # only the declared names
    missing = after_lookup(request("A", "C", "D"), REPO, found)
    assert missing == Refusal("secrets C, D not set for github/acme/widgets or github/acme")
    other_ref = after_lookup(request("A", "B", ref="refs/heads/feature"), REPO, found)
    assert other_ref == Refusal("secret B is restricted to refs/heads/main; this job builds refs/heads/feature")
