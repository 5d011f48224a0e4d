"""Secrets through one real ``solstice serve``: set with ciadm, delivered by webhook, masked in every reader.

The forge is the fake GitHub (real HTTP, strict); the job runs in the local
driver's real runner. An operator sets secrets with the real ``ciadm``
(values on stdin). A push to master gets its declared secrets: its step
prints them in every form a person could recognise (plain, base64,
URL-encoded, hex, each line of a multi-line value, one value written in two
reads) and then holds until the test has searched the whole data directory
- the runner's spool and console capture included - while the job is live.
Every reader (``ciadm logs``, the HTTP raw log, the stored log files) shows
``***``; the sha256 the step printed proves it had the real value. A fork
pull request of the same repository and a push to another branch declaring
a tag-only secret fail before they start, with the reason on the check run.
``ciadm secret audit`` shows the delivery and both refusals.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
from pathlib import Path
from typing import Any

from tests.fakes.forges import FakeGitHub
from tests.secrets.leaks import file_bytes, leaks
from tests.singlenode.harness import ServeProcess
from tests.singlenode.test_webhooks import REPO, github, github_headers, post, served_repo  # noqa: F401
from tests.waiting import async_wait_until

SCOPE = "github/codertocat/hello-world"
VALUE = "dk/E2E+secret=value&42"  # URL-encoding changes it: every form differs
PEM = "-----BEGIN TEST KEY-----\nQUJDREVGR0hJSktMTU5PUA==\nUVJTVFVWV1hZWjAxMjM0NTY3\n-----END TEST KEY-----"
RELEASE = "release-only-secret-9Xk"


def workflow(release: Path) -> str:
    return f"""\
workflow name="secrets" {{
  job id="use" runs_on="illumos-stable" {{
    secret "DEPLOY_KEY" "PEM_KEY"
    step name="Print" run=r#"
echo "plain: $DEPLOY_KEY"
printf '%s' "$DEPLOY_KEY" | base64
python3 -c 'import os, urllib.parse; print("url:", urllib.parse.quote(os.environ["DEPLOY_KEY"], safe=""))'
printf 'hex: '; printf '%s' "$DEPLOY_KEY" | od -An -tx1 | tr -d ' \\n'; echo
echo "$PEM_KEY"
printf 'split: %s' "${{DEPLOY_KEY:0:9}}"; sleep 0.5; printf '%s :end\\n' "${{DEPLOY_KEY:9}}"
printf 'sha: '; printf '%s' "$DEPLOY_KEY" | sha256sum
"#
    step name="Hold" run="for i in $(seq 600); do test -e {release} && exit 0; sleep 0.1; done; exit 9"
  }}
}}
"""


RELEASE_WORKFLOW = """\
workflow name="release" {
  job id="publish" runs_on="illumos-stable" {
    secret "RELEASE_KEY"
    step name="Publish" run="echo publishing"
  }
}
"""


def check_run_of(fake: FakeGitHub, job_id: str) -> dict[str, Any] | None:
    return next((run for run in fake.check_runs.values()
                 if run.get("external_id") == job_id and run.get("conclusion")), None)


async def test_trusted_push_gets_secrets_masked_everywhere_forks_and_other_refs_get_none(
        tmp_path: Path, fixtures_dir: Path, github: tuple[FakeGitHub, bytes], job_dir: Path) -> None:  # noqa: F811
    fake = github[0]
    release = job_dir / "release"  # where the contained job's user can look
    repo, sha, env = served_repo(tmp_path, github, workflow(release))
    fake.put_file(REPO, "f" * 40, RELEASE_WORKFLOW)
    push = json.loads((fixtures_dir / "forge" / "github" / "push.new-branch.json").read_text())
    push["after"] = sha
    push["repository"]["clone_url"] = str(repo)
    data = tmp_path / "data"
    node = ServeProcess(data, env=env)
    await asyncio.to_thread(node.start)
    try:
        for name, value, refs in (("DEPLOY_KEY", VALUE, ()), ("PEM_KEY", PEM + "\n", ()),
                                  ("RELEASE_KEY", RELEASE, ("--ref", "refs/tags/*"))):
            done = await asyncio.to_thread(node.ciadm, "secret", "set", SCOPE, name, *refs, stdin=value)
            assert done.returncode == 0, done.stderr
        bad = await asyncio.to_thread(node.ciadm, "secret", "set", SCOPE, "npm-token", stdin="x" * 8)
        assert bad.returncode == 2 and "invalid secret name 'npm-token'" in bad.stderr
        listed = await asyncio.to_thread(node.ciadm, "secret", "list", SCOPE, "--json")
        assert [(s["name"], s["refs"]) for s in json.loads(listed.stdout)] == [
            ("DEPLOY_KEY", []), ("PEM_KEY", []), ("RELEASE_KEY", ["refs/tags/*"])]

        # -- a trusted push: the job gets both secrets --------------------------------------
        body = json.dumps(push).encode()
        status, answer = await asyncio.to_thread(post, f"{node.url}/webhooks/github", body,
                                                 github_headers("push", body))
        assert status == 202 and answer["result"] == "queued", answer
        [job_id] = answer["jobs"]

        async def printed() -> str | None:
            code, text = await asyncio.to_thread(node.get, f"/jobs/{job_id}/log")
            return text if code == 200 and "sha: " in text else None

        live = await async_wait_until(printed, timeout=90, what="the step to print its secrets")
        # While the job holds: its VM directory (runner spool, console capture) exists and is searched too.
        assert any("vms" in p.parts and p.name == "console.log" for p in file_bytes(data))
        assert leaks(VALUE, ((str(p), b) for p, b in file_bytes(data).items())) == []
        release.touch()
        await asyncio.to_thread(node.wait_state, job_id, "succeeded", timeout=90)
        check = await async_wait_until(lambda: check_run_of(fake, job_id), timeout=60, what="the check run")
        assert check["conclusion"] == "success"

        # -- every reader shows the masked log ------------------------------------------------
        logs = await asyncio.to_thread(node.ciadm, "logs", job_id)
        logs_json = await asyncio.to_thread(node.ciadm, "logs", job_id, "--json")
        code, raw_log = await asyncio.to_thread(node.get, f"/jobs/{job_id}/log")
        stored = b"".join(b for p, b in file_bytes(data / "logs").items())
        assert logs.returncode == 0 and code == 200
        expected = ["plain: ***", "***", "url: ***", "hex: ***", "***", "***", "***", "***", "split: *** :end",
                    f"sha: {hashlib.sha256(VALUE.encode()).hexdigest()}  -"]
        for reader in (logs.stdout, raw_log, live):
            lines = [line for line in reader.splitlines() if not line.startswith("## ")]
            assert lines == expected, reader
        readers = [("ciadm logs", logs.stdout.encode()), ("ciadm logs --json", logs_json.stdout.encode()),
                   ("HTTP raw log", raw_log.encode()), ("stored logs", stored)]
        for value in (VALUE, *PEM.splitlines()[1:3]):
            assert leaks(value, readers) == []

        # -- a fork pull request of the same repository: refused before it starts ------------
        pr = json.loads((fixtures_dir / "forge" / "github" / "pull_request.opened.json").read_text())
        pr["pull_request"]["head"]["sha"] = sha
        pr["pull_request"]["head"]["repo"]["full_name"] = "mallory/Hello-World"
        pr["repository"]["clone_url"] = str(repo)
        body = json.dumps(pr).encode()
        status, answer = await asyncio.to_thread(post, f"{node.url}/webhooks/github", body,
                                                 github_headers("pull_request", body))
        assert status == 202 and answer["result"] == "queued", answer
        [fork_job] = answer["jobs"]
        fork = await asyncio.to_thread(node.wait_state, fork_job, "failed", timeout=60)
        assert fork["reason"].startswith("secrets DEPLOY_KEY, PEM_KEY refused: the job is untrusted")
        fork_check = await async_wait_until(lambda: check_run_of(fake, fork_job), timeout=60, what="the fork's check")
        assert fork_check["conclusion"] == "failure"
        assert "refused: the job is untrusted" in fork_check["output"]["title"]
        assert fork["steps"] == []  # nothing of it ran

        # -- a push to another branch: the tag-only secret is refused ------------------------
        other = copy.deepcopy(push)
        other["ref"], other["after"] = "refs/heads/feature", "f" * 40
        body = json.dumps(other).encode()
        status, answer = await asyncio.to_thread(post, f"{node.url}/webhooks/github", body,
                                                 github_headers("push", body))
        assert status == 202, answer
        [branch_job] = answer["jobs"]
        branch = await asyncio.to_thread(node.wait_state, branch_job, "failed", timeout=60)
        assert branch["reason"] == ("secret RELEASE_KEY is restricted to refs/tags/*; "
                                    "this job builds refs/heads/feature")

        audit = await asyncio.to_thread(node.ciadm, "secret", "audit", "--repo", SCOPE, "--json")
        records = {(r["job_id"], r["outcome"]): r for r in json.loads(audit.stdout)}
        assert set(records) == {(job_id, "delivered"), (fork_job, "refused"), (branch_job, "refused")}
        assert records[(job_id, "delivered")]["names"] == ["DEPLOY_KEY", "PEM_KEY"]
        assert records[(job_id, "delivered")]["ref"] == "refs/heads/master"
    finally:
        release.touch()
        code = await asyncio.to_thread(node.stop)
    assert code == 0, node.output()
    # Nothing the node wrote - state, queue, events, logs, its own output - holds a value.
    places = [*((str(p), b) for p, b in file_bytes(data).items()), ("node output", node.output().encode())]
    assert any(p.endswith("state.sqlite") for p, _ in places)
    for value in (VALUE, RELEASE, *PEM.splitlines()[1:3]):
        assert leaks(value, places) == []
