"""Artifacts end to end on a real ``solstice serve``: uploaded by one job's runner, downloaded into
the job that needs it before its first step, listed and fetched by ``ciadm artifacts``, and a
file over the node's limit failing its job with the file and the limit named."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.singlenode.harness import ServeProcess, git, git_repo

WORKFLOW = """\
workflow name="artifacts" {
  job id="build" runs_on="ubuntu-22.04" {
    step run="mkdir -p dist/sub && printf 'pkg' > dist/a.p5p && chmod 755 dist/a.p5p && head -c 1500000 /dev/urandom > dist/sub/big.bin && sha256sum dist/sub/big.bin"
    artifact "dist" path="dist" expire="2d"
    artifact "notes" path="*.txt" when="always"
  }
  job id="publish" runs_on="ubuntu-22.04" {
    needs "build"
    step run="test -x dist/a.p5p && cat dist/a.p5p && sha256sum dist/sub/big.bin && cat notes.txt"
  }
}
"""

TOO_BIG = """\
workflow name="too-big" {
  job id="huge" runs_on="ubuntu-22.04" {
    step run="mkdir -p out && head -c 2500000 /dev/zero > out/huge.bin"
    artifact "out" path="out/*.bin"
  }
}
"""


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServeProcess]:
    env = {"SOLSTICE_ARTIFACTS_MAX_FILE_BYTES": "2M", "SOLSTICE_ARTIFACTS_MAX_JOB_BYTES": "3M"}
    with ServeProcess(tmp_path_factory.mktemp("serve") / "data", env=env) as serving:
        yield serving


def test_artifacts_pass_between_jobs_and_ciadm_lists_and_downloads_them(node: ServeProcess, tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "repo", WORKFLOW)
    (repo / "notes.txt").write_text("release notes\n")
    git(repo, "add", "notes.txt")
    git(repo, "commit", "-q", "-m", "notes")
    build, publish = node.ciadm_json("submit", cwd=repo)
    assert node.wait_state(publish["job_id"], "succeeded", "failed", timeout=90)["state"] == "succeeded", \
        node.ciadm("logs", publish["job_id"]).stdout + node.ciadm("logs", build["job_id"]).stdout
    build_log = node.ciadm("logs", build["job_id"]).stdout
    digest = next(line.split()[0] for line in build_log.splitlines()
                  if line.endswith("  dist/sub/big.bin") and not line.startswith("#"))
    assert 'artifact "dist" stored: 2 files' in build_log
    publish_log = node.ciadm("logs", publish["job_id"]).stdout
    assert 'downloading artifact "dist" of job build: 2 files' in publish_log
    assert "pkg" in publish_log and f"{digest}  dist/sub/big.bin" in publish_log

    listed = node.ciadm_json("artifacts", build["job_id"])
    assert [(a["name"], a["files"]) for a in listed] == [("dist", 2), ("notes", 1)]
    dist = listed[0]
    assert dist["bytes"] == 1500003 and dist["expires_at"] is not None and listed[1]["expires_at"] is None
    assert {f["path"] for f in dist["file_list"]} == {"dist/a.p5p", "dist/sub/big.bin"}
    table = node.ciadm("artifacts", build["job_id"]).stdout.splitlines()
    assert table[0].split() == ["ARTIFACT", "FILES", "SIZE", "EXPIRES"] and table[2].split() == [
        "notes", "1", "14", "bytes", "with", "the", "logs"]

    status, page = node.get(f"/jobs/{build['job_id']}")
    link = f"/jobs/{build['job_id']}/artifacts/dist/dist/a.p5p?attempt=1"
    assert status == 200 and 'id="artifacts"' in page and f'href="{link}"' in page
    assert node.get(link) == (200, "pkg")
    assert node.get(f"/jobs/{build['job_id']}/artifacts/dist/etc/passwd")[0] == 404

    out = tmp_path / "out"
    done = node.ciadm("artifacts", build["job_id"], "--name", "dist", "--download", str(out))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"dist: 2 files, 1.4 MiB -> {out / 'dist'}"
    big = out / "dist" / "dist" / "sub" / "big.bin"
    assert hashlib.sha256(big.read_bytes()).hexdigest() == digest
    assert (out / "dist" / "dist" / "a.p5p").read_text() == "pkg"
    assert (out / "dist" / "dist" / "a.p5p").stat().st_mode & 0o111
    assert not (out / "notes").exists()

    missing = node.ciadm("artifacts", build["job_id"], "--name", "nope", "--download", str(out))
    assert missing.returncode == 1
    assert missing.stderr.strip() == f"ERROR: job {build['job_id']} has no artifact 'nope' (it has: dist, notes)"
    assert node.ciadm("artifacts", publish["job_id"]).stdout.strip() == f"job {publish['job_id']} has no artifacts"


def test_a_file_over_the_limit_fails_its_job_naming_file_and_limit(node: ServeProcess, tmp_path: Path) -> None:
    repo = git_repo(tmp_path / "big", TOO_BIG)
    [job] = node.ciadm_json("submit", cwd=repo)
    done = node.wait_state(job["job_id"], "succeeded", "failed", timeout=90)
    expected = ('artifact "out": out/huge.bin is 2.4 MiB; the limit per file is 2 MiB (artifacts.max_file_bytes)')
    assert (done["state"], done["reason"]) == ("failed", expected)
    assert expected in node.ciadm("logs", job["job_id"]).stdout
    assert json.loads(node.ciadm("artifacts", job["job_id"], "--json").stdout) == []
