"""``solstice serve`` as a real process: health, a job end to end, the job pages, restart."""

from __future__ import annotations

import json
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
        assert "<td>succeeded</td>" in page and "local (serves every runs_on label)" in page
        assert f'href="/jobs/{job["job_id"]}/log"' in page

        assert node.get("/jobs/job-nosuchjob")[0] == 404
        assert node.get("/jobs/job-nosuchjob/log")[0] == 404
        assert json.loads(node.get("/healthz")[1]) == {"status": "ok"}


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
    assert "solstice: stopping (running jobs get 1s, then are requeued)" in node.output()
    with ServeProcess(tmp_path / "data", env=env) as again:
        done = again.wait_state(job["job_id"], "succeeded")
        assert done["attempt"] == 2
        assert "second run\n" in again.get(f"/jobs/{job['job_id']}/log")[1]
        status, first = again.get(f"/jobs/{job['job_id']}/log?attempt=1")
        assert status == 200 and "first run\n" in first and "second run" not in first
