"""``cidev run`` of a workflow with artifacts and caches: artifacts travel from one job to the job
that needs it and are copied out with --artifacts-dir; a cache saved by one run (a directory under
--cache-dir) is restored by the next."""

from __future__ import annotations

import os
from pathlib import Path

from tests.cidev.test_run import CIDEV, git, make_repo

WORKFLOW = """\
workflow name="outputs" {
  job id="build" runs_on="local" {
    cache "deps" key="deps-{{ hash deps.lock }}" path=".deps" restore_keys="deps-"
    step run="mkdir -p .deps dist && cat .deps/fetched 2>/dev/null || (echo downloading && echo v1 > .deps/fetched); cp .deps/fetched dist/pkg.txt"
    artifact "dist" path="dist/*.txt"
  }
  job id="ship" runs_on="local" {
    needs "build"
    step run="echo shipping $(cat dist/pkg.txt)"
  }
}
"""


def cidev(repo: Path, *args: str) -> tuple[int, str]:
    import subprocess
    env = {**os.environ, "HOME": str(repo.parent / "home")}
    done = subprocess.run([str(CIDEV), "run", *args], cwd=repo, capture_output=True, text=True, timeout=120, env=env)
    return done.returncode, done.stdout + done.stderr


def test_artifacts_between_jobs_and_a_cache_restored_by_the_next_run(tmp_path: Path) -> None:
    repo = make_repo(tmp_path / "repo", WORKFLOW)
    (repo / "deps.lock").write_text("serde 1.0\n")
    git(repo, "add", "deps.lock")
    git(repo, "commit", "-q", "-m", "lock")
    caches, arts = tmp_path / "caches", tmp_path / "arts"

    code, out = cidev(repo, "--cache-dir", str(caches), "--artifacts-dir", str(arts))
    assert code == 0, out
    assert "[build] | downloading" in out and '[build] * cache "deps": nothing saved for key deps-' in out
    assert '[build] * cache "deps" saved under key deps-' in out
    assert '[ship] * downloading artifact "dist" of job build: 1 files' in out and "[ship] | shipping v1" in out
    assert (arts / "build" / "dist" / "dist" / "pkg.txt").read_text() == "v1\n"
    assert len(list(caches.glob("*/*/deps/deps-*/meta.json"))) == 1

    code, out = cidev(repo, "--cache-dir", str(caches), "--job", "build")
    assert code == 0, out
    assert '[build] * cache "deps" restored from its key: 1 files -> .deps' in out
    assert "[build] | downloading" not in out and "[build] | v1" in out
    assert 'cache "deps" saved' not in out  # the exact key was restored: nothing to save
