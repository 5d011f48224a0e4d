"""``solstice serve`` as a real process: health, a job end to end, the job pages, restart."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

from tests.singlenode.harness import ServeProcess, git_repo
from tests.waiting import wait_until

HELLO = """\
workflow name="demo" {
  job id="hello" runs_on="ubuntu-22.04" {
    step name="Greet" run="echo hello from solstice; echo second line"
    step name="Count" run="for i in 1 2 3; do echo n=$i; done"
  }
}
"""


def test_a_submitted_job_runs_and_is_served_over_http(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo", HELLO)
    with ServeProcess(tmp_path / "data") as node:
        out = node.output()
        assert "driver:    local, serving every runs_on label" in out
        assert f"{node.url}/webhooks/github" in out and f"{node.url}/webhooks/forgejo" in out

        [job] = node.ciadm_json("submit", cwd=repo)
        follow = node.ciadm("logs", "--follow", job["job_id"], timeout=90)
        assert follow.returncode == 0, follow.stderr
        lines = follow.stdout.splitlines()
        assert "## step 1: Greet" in lines
        assert lines.index("hello from solstice") < lines.index("second line") < lines.index("n=1")
        assert f"job {job['job_id']} succeeded" in follow.stderr

        status, text = node.get(f"/jobs/{job['job_id']}/log")
        assert status == 200
        assert "hello from solstice\nsecond line\n" in text and "n=3\n" in text and "## step 2: Count" in text

        status, page = node.get(f"/jobs/{job['job_id']}")
        assert status == 200
        assert '<span class="st st-succeeded">' in page and "<dd>local (serves every runs_on label)</dd>" in page
        assert 'id="L1"' in page and "hello from solstice" in page  # the log inline
        assert f'href="/jobs/{job["job_id"]}/log?attempt=1"' in page

        assert node.get("/jobs/job-nosuchjob")[0] == 404
        assert node.get("/jobs/job-nosuchjob/log")[0] == 404
        assert json.loads(node.get("/healthz")[1]) == {"status": "ok"}
        with urllib.request.urlopen(f"{node.url}/jobs/{job['job_id']}/log", timeout=10) as answer:
            assert answer.headers["X-Content-Type-Options"] == "nosniff"
            assert answer.headers["Content-Type"] == "text/plain; charset=utf-8"


def test_a_restart_keeps_jobs_and_logs(tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo", HELLO)
    with ServeProcess(tmp_path / "data") as node:
        [job] = node.ciadm_json("submit", cwd=repo)
        node.wait_state(job["job_id"], "succeeded")
    with ServeProcess(tmp_path / "data") as again:
        after = again.status(job["job_id"])
        assert after["state"] == "succeeded" and [s["name"] for s in after["steps"]] == ["Greet", "Count"]
        status, text = again.get(f"/jobs/{job['job_id']}/log")
        assert status == 200 and "n=2" in text
        assert [j["job_id"] for j in again.ciadm_json("list")] == [job["job_id"]]


def test_a_job_cut_off_by_shutdown_runs_again_after_restart(tmp_path: Path, job_dir: Path) -> None:
    marker = job_dir / "first-run"
    repo = git_repo(tmp_path / "repo", f"""\
workflow name="twice" {{
  job id="twice" runs_on="illumos-stable" {{
    step name="Maybe wait" run="if [ -f {marker} ]; then echo second run; else touch {marker}; echo first run; sleep 120; fi"
  }}
}}
""")
    env = {"SOLSTICE_SHUTDOWN_GRACE": "1s"}
    node = ServeProcess(tmp_path / "data", env=env).start()
    try:
        [job] = node.ciadm_json("submit", cwd=repo)
        wait_until(lambda: "first run" in node.get(f"/jobs/{job['job_id']}/log")[1], 60, "the first run to start")
    finally:
        assert node.stop() == 0, node.output()
    assert "solstice: stopping (running jobs get 1s, then are requeued; Ctrl-C again to stop at once)" in node.output()
    with ServeProcess(tmp_path / "data", env=env) as again:
        done = again.wait_state(job["job_id"], "succeeded")
        assert done["attempt"] == 2
        assert "second run\n" in again.get(f"/jobs/{job['job_id']}/log")[1]
        status, first = again.get(f"/jobs/{job['job_id']}/log?attempt=1")
        assert status == 200 and "first run\n" in first and "second run" not in first


THREE_STEPS = """\
workflow name="fails" {
  job id="fails" runs_on="ubuntu-22.04" {
    step name="Works" run="echo fine"
    step name="Fails" run="exit 3"
    step name="Never runs" run="echo never"
  }
}
"""


def _post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_forges_not_configured_say_so_and_skipped_steps_are_logged(tmp_path: Path) -> None:
    env = {"SOLSTICE_GITHUB_WEBHOOK_SECRET": "s3cret", "SOLSTICE_GITHUB_APP_ID": "1"}
    with ServeProcess(tmp_path / "data", env=env) as node:
        assert ("  forges:    GitHub enabled, Forgejo off (set SOLSTICE_FORGEJO_WEBHOOK_SECRET)"
                in node.output().splitlines())
        status, answer = _post(f"{node.url}/webhooks/forgejo", b"{}", {"X-Forgejo-Event": "push"})
        assert (status, answer) == (404, {
            "result": "forge not configured",
            "detail": "Forgejo webhooks are not configured on this server: "
                      "set SOLSTICE_FORGEJO_WEBHOOK_SECRET and restart it"})
        # A configured forge still checks signatures.
        status, answer = _post(f"{node.url}/webhooks/github", b"{}", {"X-GitHub-Event": "push"})
        assert (status, answer["result"]) == (401, "bad signature")

        [job] = node.ciadm_json("submit", cwd=git_repo(tmp_path / "repo", THREE_STEPS))
        node.wait_state(job["job_id"], "failed")

        def finished() -> dict | None:
            for line in node.lines:
                entry = json.loads(line) if line.startswith("{") else {}
                if entry.get("msg") == "job finished" and entry.get("job") == job["job_id"]:
                    return entry
            return None

        entry = wait_until(finished, 30, "the 'job finished' log line")
        assert (entry["state"], entry["reason"], entry["skipped"]) == (
            "FAILED", "step 2 (Fails) failed with exit code 3", "step 3 (Never runs)")


def test_a_second_interrupt_stops_running_jobs_at_once(tmp_path: Path) -> None:
    import signal

    repo = git_repo(tmp_path / "repo", """\
workflow name="slow" {
  job id="slow" runs_on="ubuntu-22.04" {
    step name="Wait" run="echo waiting; sleep 600"
  }
}
""")
    # A grace far longer than the stop below waits: only the second interrupt can end it in time.
    node = ServeProcess(tmp_path / "data", env={"SOLSTICE_SHUTDOWN_GRACE": "1h"}).start()
    try:
        [job] = node.ciadm_json("submit", cwd=repo)
        wait_until(lambda: "waiting" in node.get(f"/jobs/{job['job_id']}/log")[1], 60, "the step to start")
        assert node.proc is not None
        node.proc.send_signal(signal.SIGINT)
        wait_until(lambda: any(line.startswith("solstice: stopping (") for line in node.lines), 30, "the stop")
    finally:
        assert node.stop(signal.SIGINT) == 0, node.output()
    lines = node.output().splitlines()
    assert "solstice: stopping (running jobs get 3600s, then are requeued; Ctrl-C again to stop at once)" in lines
    assert "solstice: stopping at once (running jobs are stopped and requeued)" in lines
    with ServeProcess(tmp_path / "data", env={"SOLSTICE_SHUTDOWN_GRACE": "1s"}) as again:
        first = again.status(job["job_id"])["attempts"][0]
        assert (first["state"], first["reason"]) == (
            "errored", f"host {first['host']} shut down during attempt 1; requeued as attempt 2")
