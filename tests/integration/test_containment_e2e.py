"""Containment and limits through one real ``solstice serve`` process, driven as an attacker would.

The node's environment holds both webhook secrets and the Forgejo API token,
as an operator's would; jobs come in as GitHub webhooks (the fake GitHub
serves the workflow) and run on the default local driver - contained, with
real namespaces and cgroups where this machine allows it (CI runs as root;
on a host that cannot isolate, the fork job is refused instead, which the
last test shows on every host).
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from orchestrator.drivers.local_contain import REFUSAL
from tests.integration.test_e2e_single_node import (
    FORGEJO_SECRET,
    FORGEJO_TOKEN,
    GH_REPO,
    GITHUB_SECRET,
    Single,
    single_node,
    wait_for,
)

# One node for every test here: files up to 2 MiB (the 1 MB workflow), a 1 MB log limit for `tiny` jobs.
CONFIG = """\
workflow_limits:
  max_file_bytes: 2097152
logs:
  label_max_bytes:
    tiny: 1M
"""
SECRETS = (GITHUB_SECRET, FORGEJO_SECRET, FORGEJO_TOKEN)
MiB = 1024 * 1024


@pytest.fixture
async def node(tmp_path: Path, fixtures_dir: Path, app_key: tuple[bytes, bytes]) -> AsyncIterator[Single]:
    async with single_node(tmp_path, fixtures_dir, app_key, CONFIG) as single:
        yield single


async def healthz_while(single: Single, work: asyncio.Future[object]) -> int:
    """Ask /healthz every few ms until ``work`` is done; every answer must be 200. How many there were."""
    answered = 0
    async with aiohttp.ClientSession() as client:
        while not work.done():
            async with client.get(single.node.url + "/healthz") as health:
                assert health.status == 200
                answered += 1
            await asyncio.sleep(0.01)
    return answered


def fork_pull_request(single: Single) -> dict:  # type: ignore[type-arg]
    payload = single.payload("github/pull_request.opened")
    payload["pull_request"]["head"]["repo"]["full_name"] = "mallory/Hello-World"  # a fork: untrusted
    return payload


async def concluded(single: Single, *names: str) -> dict[str, dict]:  # type: ignore[type-arg]
    await wait_for(lambda: all(single.check_runs().get(n, {}).get("conclusion") for n in names),
                   f"check runs {', '.join(names)} to conclude")
    return single.check_runs()


async def get_log(single: Single, job_id: str) -> str:
    status, text = await asyncio.to_thread(single.node.get, f"/jobs/{job_id}/log")
    assert status == 200, text
    return text


# Every environment the job can find, dumped; its own processes listed; it waits for its sibling
# so that both jobs run at once and each could see the other's runner if anything let it.
SNOOP_STEP = r"""
id -un
mine=/tmp/snoop-$SOLSTICE_SHA-$SOLSTICE_JOB_ID; touch $mine
for i in $(seq 100); do [ $(ls /tmp/snoop-$SOLSTICE_SHA-* | wc -l) -ge 2 ] && break; sleep 0.1; done
ls -d /proc/[0-9]* | sed 's|/proc/||' | tr '\n' ' '; echo
for f in /proc/[0-9]*/environ /proc/[0-9]*/cmdline; do echo "== $f"; tr '\0' '\n' < "$f" 2>&1 || true; done
sleep 1; rm -f $mine
"""
SNOOP = "workflow name=\"snoop\" {\n" + "".join(
    f'  job id="{side}" runs_on="any" {{\n    step name="Snoop" run=r#"{SNOOP_STEP}"#\n  }}\n'
    for side in ("left", "right")) + "}\n"


async def test_a_fork_pull_request_job_reading_every_environ_finds_no_secret_and_no_token(node: Single):
    node.github.put_file(GH_REPO, node.sha, SNOOP)
    status, answer = await node.deliver_github("pull_request", fork_pull_request(node))
    assert status == 202 and answer["result"] == "queued", answer
    runs = await concluded(node, "solstice/left", "solstice/right")
    assert runs["solstice/left"]["conclusion"] == "success" and runs["solstice/right"]["conclusion"] == "success"
    for job_id in answer["jobs"]:
        log = await get_log(node, job_id)
        lines = log.splitlines()
        assert lines[lines.index("## step 1: Snoop") + 1] == "solstice-job"
        pids = lines[lines.index("## step 1: Snoop") + 2].split()
        assert 3 <= len(pids) < 12  # its own namespace: init, runner, the step's processes
        assert "== /proc/1/environ" in lines and "== /proc/2/environ" in lines  # it did look at them
        assert any("Permission denied" in line for line in lines)  # ...and the runner's was not readable
        for secret in SECRETS:
            assert secret not in log
        assert "eyJ" not in log  # no runner token (a JWT) of this job or the other
        assert "SOLSTICE_RUNNER_TOKEN" not in log and "SOLSTICE_GITHUB" not in log and "SOLSTICE_FORGEJO" not in log
    job = await node.job(answer["jobs"][0])
    assert job["state"] == "succeeded"


async def test_a_10_mib_script_is_refused_at_the_webhook_as_an_invalid_workflow(node: Single):
    script = "echo " + "x" * (10 * MiB)
    node.github.put_file(GH_REPO, node.sha, f'workflow {{\n  job id="big" runs_on="any" {{\n'
                                            f'    step run="{script}"\n  }}\n}}\n')
    status, answer = await node.deliver_github("push", node.payload("github/push.new-branch"))
    assert (status, answer["result"]) == (200, "invalid workflow"), answer
    assert "the limit is 2 MiB (workflow_limits.max_file_bytes)" in answer["detail"]
    [check] = node.github.check_runs.values()
    assert (check["name"], check["conclusion"]) == ("Solstice workflow", "failure")
    assert "workflow_limits.max_file_bytes" in check["output"]["summary"]
    assert await node.jobs() == []


def big_workflow(jobs: int) -> str:
    """About 1 MB of KDL: ``jobs`` jobs of 20 steps each - more jobs than a workflow may have."""
    steps = "\n".join(f'    step name="step {i}" run="echo step {i} of this job && make target-{i}"' for i in range(20))
    return "workflow {\n" + "".join(f'  job id="j{n}" runs_on="any" {{\n{steps}\n  }}\n' for n in range(jobs)) + "}\n"


async def test_healthz_answers_while_a_1mb_workflow_is_parsed(node: Single):
    text = big_workflow(720)
    assert len(text) > MiB
    node.github.put_file(GH_REPO, node.sha, text)
    delivery = asyncio.create_task(node.deliver_github("push", node.payload("github/push.new-branch")))
    answered = await healthz_while(node, delivery)
    status, answer = await delivery
    assert (status, answer["result"]) == (200, "invalid workflow"), answer
    assert "workflow_limits.max_jobs" in answer["detail"] or "workflow_limits.parse_seconds" in answer["detail"]
    assert answered > 1  # /healthz kept answering while the file was read


def status_kb(single: Single, field: str) -> int:
    assert single.node.proc is not None
    status = Path(f"/proc/{single.node.proc.pid}/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", status, re.MULTILINE).group(1))  # type: ignore[union-attr]


LOUD = """\
workflow name="loud" {{
  job id="loud" runs_on="{label}" {{
    step name="Shout" run="yes 'the quick brown fox jumps over the lazy dog 0123456789' | head -c {size} || true; echo"
    step name="After" run="echo still running"
  }}
}}
"""


async def test_a_job_over_its_log_limit_ends_with_the_truncation_line(node: Single):
    node.github.put_file(GH_REPO, node.sha, LOUD.format(label="tiny", size=20 * MiB))
    status, answer = await node.deliver_github("push", node.payload("github/push.new-branch"))
    assert status == 202, answer
    runs = await concluded(node, "solstice/loud")
    assert runs["solstice/loud"]["conclusion"] == "success"  # the job went on (fail_at_limit is off)
    log = await get_log(node, answer["jobs"][0])
    assert "## log truncated at 1048576 bytes (this job's log limit): the rest of its output is not kept anywhere" \
        in log.splitlines()
    assert "still running" not in log  # output after the limit is dropped
    assert MiB < len(log.encode()) < MiB + 4096


async def test_serving_a_200_mb_log_keeps_the_server_small_and_healthz_answering(node: Single):
    node.github.put_file(GH_REPO, node.sha, LOUD.format(label="any", size=200 * 1000 * 1000))
    status, answer = await node.deliver_github("push", node.payload("github/push.new-branch"))
    assert status == 202, answer
    [job_id] = answer["jobs"]
    await concluded(node, "solstice/loud")
    assert node.node.proc is not None
    Path(f"/proc/{node.node.proc.pid}/clear_refs").write_text("5")  # the peak RSS starts again from now
    before = status_kb(node, "VmRSS")
    received = 0

    async def download() -> bytes:
        nonlocal received
        last = b""
        async with node.client.get(f"{node.node.url}/jobs/{job_id}/log") as answer:
            assert answer.status == 200
            async for piece in answer.content.iter_chunked(1 << 20):
                received += len(piece)
                last = (last + piece)[-200:]
        return last

    fetch = asyncio.create_task(download())
    healthy = await healthz_while(node, fetch)
    end = await fetch
    peak = status_kb(node, "VmHWM")
    assert received > 200 * 1000 * 1000
    assert re.search(rb"\nstill running\n## exited with exit code 0 after [0-9.]+s\n$", end), end  # to its end
    assert healthy > 1
    print(f"serving {received} bytes of log: server RSS {before} kB, peak {peak} kB")
    assert peak - before < 50 * 1024, f"serving the log grew the server from {before} kB to {peak} kB"


async def test_a_node_that_cannot_isolate_refuses_the_fork_job_with_the_reason(tmp_path: Path, fixtures_dir: Path,
                                                                              app_key: tuple[bytes, bytes]):
    async with single_node(tmp_path, fixtures_dir, app_key, CONFIG,
                           {"SOLSTICE_DRIVERS_LOCAL_JOB_USER": "solstice-nobody"}) as single:
        single.github.put_file(GH_REPO, single.sha, 'workflow {\n  job id="fork" runs_on="any" {\n'
                                                    '    step run="echo never"\n  }\n}\n')
        status, answer = await single.deliver_github("pull_request", fork_pull_request(single))
        assert status == 202, answer
        runs = await concluded(single, "solstice/fork")
        run = runs["solstice/fork"]
        assert run["conclusion"] == "failure"
        assert REFUSAL in json.dumps(run["output"])
        job = await single.job(answer["jobs"][0])
        assert job["state"] == "failed" and job["reason"] == REFUSAL
        assert "never" not in await get_log(single, answer["jobs"][0])
        assert any("untrusted jobs (fork pull requests) are refused on this node" in line
                   for line in single.node.lines)
