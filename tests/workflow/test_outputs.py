"""``artifact`` and ``cache`` nodes: the model they build, and every error at FILE:LINE:COL."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.workflow import WorkflowInvalid, parse_workflow, render_workflow
from common.workflow.cachekeys import resolve_key, template_problem
from common.workflow.model import Artifact, Cache

GOOD = """\
workflow {
  job id="build" runs_on="illumos" {
    step run="make"
    artifact "dist" path="dist/*.p5p" expire="30d" when="always"
    artifact "logs" path="build/logs"
    cache "cargo" key="cargo-{{ hash Cargo.lock }}-{{ runs_on }}" path="~/.cargo" restore_keys="cargo-,old-"
  }
}
"""


def _errors(text: str) -> list[str]:
    with pytest.raises(WorkflowInvalid) as caught:
        parse_workflow(text, "ci.kdl")
    return [str(e) for e in caught.value.errors]


def _job(body: str) -> str:
    return 'workflow {\n  job id="a" runs_on="b" {\n    step run="x"\n' + body + "  }\n}\n"


def test_artifacts_and_caches_build_the_model_and_render_back() -> None:
    workflow = parse_workflow(GOOD)
    job = workflow.jobs[0]
    assert job.artifacts == (Artifact("dist", "dist/*.p5p", 30 * 86400.0, "always"),
                             Artifact("logs", "build/logs", None, "success"))
    assert job.caches == (Cache("cargo", "cargo-{{ hash Cargo.lock }}-{{ runs_on }}", "~/.cargo",
                                ("cargo-", "old-")),)
    assert parse_workflow(render_workflow(workflow)) == workflow


@pytest.mark.parametrize(("body", "expected"), [
    ('    artifact "Dist" path="d"\n',
     ["ci.kdl:4:14: job \"a\" > artifact: invalid artifact name \"Dist\": use 1-63 characters of a-z, 0-9, "
      "'.', '_' and '-', starting with a letter or digit"]),
    ('    artifact "d"\n', ['ci.kdl:4:5: job "a" > artifact: artifact is missing required property "path"']),
    ('    artifact path="d"\n',
     ['ci.kdl:4:5: job "a" > artifact: artifact takes exactly one name argument: artifact "name" ...']),
    ('    artifact "d" path="/etc/*"\n',
     ['ci.kdl:4:18: job "a" > artifact: artifact path "/etc/*" must be relative to the checkout, not absolute']),
    ('    artifact "d" path="../x"\n',
     ['ci.kdl:4:18: job "a" > artifact: artifact path "../x" must not contain \'..\'']),
    ('    artifact "d" path="x" expire="soon"\n',
     ['ci.kdl:4:27: job "a" > artifact: invalid expire "soon": expected a number with a unit, '
      'like 90s, 30m, 2h or 1h30m']),
    ('    artifact "d" path="x" when="never"\n',
     ['ci.kdl:4:27: job "a" > artifact: invalid when "never": use one of success, failure, always']),
    ('    artifact "d" path="x" size=3\n',
     ['ci.kdl:4:27: job "a" > artifact: unknown property "size" (allowed: path, expire, when)']),
    ('    artifact "d" path="x"\n    artifact "d" path="y"\n',
     ['ci.kdl:5:14: job "a" > artifact: artifact "d" is defined twice (first at 4:5)']),
    ('    artifact "d" path=1\n', ['ci.kdl:4:23: job "a" > artifact: property "path" must be a string, not a number']),
    ('    cache "c" path="x"\n', ['ci.kdl:4:5: job "a" > cache: cache is missing required property "key"']),
    ('    cache "c" key="k"\n', ['ci.kdl:4:5: job "a" > cache: cache is missing required property "path"']),
    ('    cache "c" key="a b" path="x"\n',
     ["ci.kdl:4:15: job \"a\" > cache: cache key \"a b\" has ' ' outside {{ }}: use letters, digits, '.', '_' and '-'"]),
    ('    cache "c" key="k-{{ md5 x }}" path="x"\n',
     ['ci.kdl:4:15: job "a" > cache: cache key "k-{{ md5 x }}" has an unknown expression {{ md5 }} '
      '(known: hash, runs_on)']),
    ('    cache "c" key="k-{{ hash }}" path="x"\n',
     ['ci.kdl:4:15: job "a" > cache: cache key "k-{{ hash }}" has {{ hash }} without a file: '
      'write {{ hash Cargo.lock }}']),
    ('    cache "c" key="k-{{ hash ../x }}" path="x"\n',
     ['ci.kdl:4:15: job "a" > cache: cache key "k-{{ hash ../x }}" hashes \'../x\': files must be inside the checkout']),
    ('    cache "c" key="k-{{ hash x" path="x"\n',
     ['ci.kdl:4:15: job "a" > cache: cache key "k-{{ hash x" has an unclosed {{ or a stray }}']),
    ('    cache "c" key="k" path="~bob/x"\n',
     ['ci.kdl:4:23: job "a" > cache: cache path "~bob/x" may start with ~/ (the job user\'s home), not ~user']),
    ('    cache "c" key="k" path="x" restore_keys="a,,b"\n',
     ['ci.kdl:4:32: job "a" > cache: restore_keys entry "" has an empty entry']),
    ('    cache "c" key="k" path="x" {\n      key "k"\n    }\n',
     ['ci.kdl:5:7: job "a" > cache: unexpected child node "key" (cache takes no children)']),
])
def test_invalid_artifact_and_cache_nodes_are_reported_where_they_are(body: str, expected: list[str]) -> None:
    assert _errors(_job(body)) == expected


def test_a_cache_key_resolves_from_the_checkout(tmp_path: Path) -> None:
    (tmp_path / "Cargo.lock").write_text("v1")
    first = resolve_key("cargo-{{ hash Cargo.lock }}-{{ runs_on }}", tmp_path, "illumos")
    assert first.startswith("cargo-") and first.endswith("-illumos") and len(first) == len("cargo--illumos") + 24
    assert resolve_key("cargo-{{ hash Cargo.lock }}-{{ runs_on }}", tmp_path, "illumos") == first
    (tmp_path / "Cargo.lock").write_text("v2")
    assert resolve_key("cargo-{{ hash Cargo.lock }}-{{ runs_on }}", tmp_path, "illumos") != first
    assert template_problem("-x") == "must start with a letter or digit"


def test_cidev_inspect_shows_artifacts_and_caches() -> None:
    from cidev.report import inspect_json, inspect_text

    workflow = parse_workflow(GOOD)
    text = inspect_text("ci.kdl", workflow)
    assert "  artifact dist: dist/*.p5p (after always, expires after 30d)" in text
    assert "  cache cargo: ~/.cargo keyed cargo-{{ hash Cargo.lock }}-{{ runs_on }}, else cargo-*, old-*" in text
    job = inspect_json("ci.kdl", workflow)["jobs"][0]  # type: ignore[index]
    assert job["artifacts"][1] == {"name": "logs", "path": "build/logs", "expire": None, "when": "success"}
    assert job["caches"][0]["restore_keys"] == ["cargo-", "old-"]
