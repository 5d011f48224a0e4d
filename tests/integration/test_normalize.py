"""Each fixture payload -> its normalized event, under each policy setting."""

from __future__ import annotations

import pytest

from common.validation import CloneRules, RequestInvalid
from integration.events import BuildRequested, Forge, Ignored, Ping, PullRequestClosed
from integration.forges import forgejo_events, github_events
from integration.payload import PayloadError
from integration.settings import WebhookSettings

DEFAULT = WebhookSettings()


def gh(event, payload, settings=DEFAULT):
    return github_events.normalize(event, payload, settings)


# The fixtures' Forgejo answers on http://localhost:3000: its clone URLs are plain http.
OVER_HTTP = CloneRules(allow_http=True)


def fj(event, payload, settings=DEFAULT, rules=OVER_HTTP):
    return forgejo_events.normalize(event, payload, settings, rules)


def test_github_branch_push(payload):
    event = gh("push", payload("github/push.new-branch"))
    assert event == BuildRequested(
        repo=event.repo, ref="refs/heads/master", sha="6113728f27ae82c7b1a177c8d03f9e96e0adf246",
        origin="github push", trusted=True, sender="Codertocat",
    )
    assert event.repo.forge is Forge.GITHUB
    assert (event.repo.owner, event.repo.name, event.repo.installation_id) == ("Codertocat", "Hello-World", 1)


def test_github_tag_push_is_built_unless_disabled(payload):
    body = payload("github/push")  # a tag deletion in the fixture; make it a tag creation
    body.update(deleted=False, created=True, after="6113728f27ae82c7b1a177c8d03f9e96e0adf246")
    event = gh("push", body)
    assert isinstance(event, BuildRequested) and event.is_tag and event.ref == "refs/tags/simple-tag"
    ignored = gh("push", body, WebhookSettings(build_tags=False))
    assert isinstance(ignored, Ignored) and "build_tags" in ignored.reason


def test_github_deleted_ref_is_ignored(payload):
    event = gh("push", payload("github/push"))
    assert isinstance(event, Ignored) and "deleted" in event.reason
    branch = payload("github/push.new-branch")
    branch.update(deleted=True, after="0" * 40)
    assert isinstance(gh("push", branch), Ignored)


def test_github_push_without_installation_is_ignored(payload):
    body = payload("github/push.new-branch")
    del body["installation"]
    event = gh("push", body)
    assert isinstance(event, Ignored) and "installation" in event.reason


@pytest.mark.parametrize("action", ["opened", "synchronize", "reopened"])
def test_github_pull_request_builds_its_head(payload, action):
    event = gh("pull_request", payload(f"github/pull_request.{action}"))
    assert isinstance(event, BuildRequested)
    assert (event.ref, event.sha, event.pull_request, event.trusted) == (
        "refs/pull/2/head", "ec26c3e57ca3a959ca5aad62de7213c562f8c821", 2, True,
    )
    assert event.base_ref == "refs/heads/master"  # its caches are read too (issue 25)


def test_github_pull_request_closed(payload):
    event = gh("pull_request", payload("github/pull_request.closed"))
    assert event == PullRequestClosed(event.repo, 2, "ec26c3e57ca3a959ca5aad62de7213c562f8c821", merged=False)


def test_github_labeled_same_repo_is_ignored(payload):
    assert isinstance(gh("pull_request", payload("github/pull_request.labeled")), Ignored)


def _fork(body):
    body["pull_request"]["head"]["repo"]["full_name"] = "mallory/Hello-World"
    return body


def test_github_fork_pull_request_is_untrusted_by_default(payload):
    event = gh("pull_request", _fork(payload("github/pull_request.opened")))
    assert isinstance(event, BuildRequested) and event.trusted is False


def test_github_deleted_fork_counts_as_fork(payload):
    body = payload("github/pull_request.synchronize")
    body["pull_request"]["head"]["repo"] = None
    event = gh("pull_request", body)
    assert isinstance(event, BuildRequested) and event.trusted is False


def test_label_policy_waits_for_the_label(payload):
    settings = WebhookSettings(fork_policy="label", fork_label="bug")
    unlabelled = _fork(payload("github/pull_request.opened"))
    unlabelled["pull_request"]["labels"] = []
    waiting = gh("pull_request", unlabelled, settings)
    assert isinstance(waiting, Ignored) and "label 'bug'" in waiting.reason
    labeled = gh("pull_request", _fork(payload("github/pull_request.labeled")), settings)  # adds "bug"
    assert isinstance(labeled, BuildRequested) and labeled.trusted is False
    other = gh("pull_request", _fork(payload("github/pull_request.labeled")), WebhookSettings(fork_policy="label"))
    assert isinstance(other, Ignored)


APPROVED = "ec26c3e57ca3a959ca5aad62de7213c562f8c821"  # review.commit_id of the fixture = its PR head


def _review(payload, association, state="approved"):
    body = _fork(payload("github/pull_request_review.submitted.approved"))
    body["review"].update(state=state, author_association=association)
    return body


def test_approval_policy_needs_a_maintainer_review(payload):
    settings = WebhookSettings(fork_policy="approval")
    opened = gh("pull_request", _fork(payload("github/pull_request.opened")), settings)
    assert isinstance(opened, Ignored) and "approv" in opened.reason
    by_stranger = gh("pull_request_review", _review(payload, "NONE"), settings)
    assert isinstance(by_stranger, Ignored)
    commented = gh("pull_request_review", _review(payload, "OWNER", "commented"), settings)
    assert isinstance(commented, Ignored)
    approved = gh("pull_request_review", _review(payload, "MEMBER"), settings)
    assert isinstance(approved, BuildRequested) and approved.trusted is False
    assert (approved.ref, approved.sha) == ("refs/pull/2/head", APPROVED)


def test_approval_builds_the_approved_commit_and_only_while_it_is_the_head(payload):
    settings = WebhookSettings(fork_policy="approval")
    pushed_since = _review(payload, "OWNER")
    pushed_since["pull_request"]["head"]["sha"] = "f" * 40  # a commit pushed after the review
    stale = gh("pull_request_review", pushed_since, settings)
    assert isinstance(stale, Ignored)
    assert f"is for {APPROVED[:12]}, which is no longer its head (ffffffffffff)" in stale.reason
    no_commit = _review(payload, "OWNER")
    del no_commit["review"]["commit_id"]
    with pytest.raises(PayloadError, match="review.commit_id"):
        gh("pull_request_review", no_commit, settings)


def test_ping_and_unknown_events(payload):
    assert gh("ping", payload("github/ping")) == Ping("Anything added dilutes everything else.")
    assert isinstance(gh("check_run", payload("github/check_run.rerequested")), Ignored)


def test_forgejo_push(payload):
    event = fj("push", payload("forgejo/push"))
    assert isinstance(event, BuildRequested)
    assert event.repo.forge is Forge.FORGEJO and event.repo.full_name == "gitea/webhooks"
    assert (event.ref, event.sha, event.origin) == (
        "refs/heads/develop", "bffeb74224043ba2feb48d137756c8a9331c449a", "forgejo push",
    )


def test_forgejo_branch_delete_is_ignored(payload):
    body = payload("forgejo/push")
    body["after"] = "0" * 40
    assert isinstance(fj("push", body), Ignored)
    assert isinstance(fj("delete", {"ref": "develop", "ref_type": "branch"}), Ignored)


def test_forgejo_fork_pull_request(payload):
    event = fj("pull_request", payload("forgejo/pull_request.opened"))
    assert isinstance(event, BuildRequested)
    assert (event.trusted, event.pull_request, event.ref) == (False, 3, "refs/pull/3/head")


def test_forgejo_synchronized_and_closed(payload):
    body = payload("forgejo/pull_request.opened")
    body["action"] = "synchronized"
    assert isinstance(fj("pull_request", body), BuildRequested)
    body["action"] = "closed"
    closed = fj("pull_request", body)
    assert isinstance(closed, PullRequestClosed) and closed.pull_request == 3


def test_forgejo_same_repo_pull_request_is_trusted(payload):
    body = payload("forgejo/pull_request.opened")
    body["pull_request"]["head"]["repo_id"] = body["pull_request"]["base"]["repo_id"]
    event = fj("pull_request", body)
    assert isinstance(event, BuildRequested) and event.trusted is True


def test_forgejo_label_policy(payload):
    settings = WebhookSettings(fork_policy="label", fork_label="ci:run")
    body = payload("forgejo/pull_request.opened")
    assert isinstance(fj("pull_request", body, settings), Ignored)
    body["action"] = "label_updated"
    body["pull_request"]["labels"] = [{"id": 1, "name": "ci:run"}]
    assert isinstance(fj("pull_request", body, settings), BuildRequested)


def test_missing_fields_raise_payload_error(payload):
    body = payload("github/pull_request.opened")
    del body["pull_request"]["head"]
    with pytest.raises(PayloadError, match="pull_request.head.sha"):
        gh("pull_request", body)
    with pytest.raises(PayloadError, match="repository"):
        fj("push", {"ref": "refs/heads/x", "after": "a" * 40})


def test_github_check_run_rerequested(payload):
    from integration.events import RerunRequested

    body = payload("github/check_run.rerequested")
    body["check_run"]["external_id"] = "job-" + "0f" * 16
    event = gh("check_run", body)
    assert isinstance(event, RerunRequested)
    assert (event.job_id, event.sha, event.repo.full_name, event.repo.installation_id) == (
        "job-" + "0f" * 16, "d6fde92930d4715a2b49857d24b940956b26d2d3", "github/hello-world", 1,
    )
    assert isinstance(gh("check_run", payload("github/check_run.rerequested")), Ignored)  # external_id "" in the fixture
    del body["installation"]
    assert isinstance(gh("check_run", body), Ignored)


def test_a_later_attempts_check_run_names_its_job(payload):
    from integration.events import RerunRequested

    body = payload("github/check_run.rerequested")
    body["check_run"]["external_id"] = "job-" + "0f" * 16 + ":3"  # attempt 3's check run
    event = gh("check_run", body)
    assert isinstance(event, RerunRequested) and event.job_id == "job-" + "0f" * 16
    for bad in ("job-" + "0f" * 16 + ":", "job-" + "0f" * 16 + ":x", "workflow:" + "a" * 40):
        body["check_run"]["external_id"] = bad
        assert isinstance(gh("check_run", body), Ignored), bad


def test_github_check_suite_rerequested(payload):
    from integration.events import CommitRerunRequested

    event = gh("check_suite", payload("github/check_suite.rerequested"))
    assert isinstance(event, CommitRerunRequested)
    assert (event.sha, event.repo.full_name, event.repo.installation_id, event.sender) == (
        "ec26c3e57ca3a959ca5aad62de7213c562f8c821", "Codertocat/Hello-World", 957387, "octocoders-linter[bot]")
    requested = gh("check_suite", payload("github/check_suite.requested"))  # every push: the push builds it
    assert isinstance(requested, Ignored)
    body = payload("github/check_suite.rerequested")
    body["check_suite"]["head_sha"] = "not-a-sha"
    with pytest.raises(RequestInvalid):
        gh("check_suite", body)
