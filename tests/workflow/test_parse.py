"""Valid workflows become the model they describe; stages honour needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.workflow import Job, Step, Workflow, execution_stages, load_workflow, merge_env, parse_workflow
from common.workflow.graph import find_cycles

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

SEED = """\
workflow name="Solstice CI" {
  job id="build" runs_on="illumos-stable" {
    step name="Format" run="cargo fmt --check"
    step name="Test" run="cargo test --workspace"
  }
  job id="lint" runs_on="ubuntu-22.04" {
    step name="Lint" run="ruff check ."
  }
}
"""


def test_seed_form_from_the_design():
    assert parse_workflow(SEED) == Workflow(
        name="Solstice CI",
        jobs=(
            Job(
                id="build",
                runs_on="illumos-stable",
                steps=(
                    Step(name="Format", run="cargo fmt --check"),
                    Step(name="Test", run="cargo test --workspace"),
                ),
            ),
            Job(id="lint", runs_on="ubuntu-22.04", steps=(Step(name="Lint", run="ruff check ."),)),
        ),
    )


def test_full_schema():
    text = """\
// comments and slash-dashed nodes are ignored
workflow {
  env LANG="C.UTF-8" TZ="UTC"
  env EXTRA="1"
  job id="build" runs_on="illumos-stable" timeout="1h30m" {
    env CARGO_TERM_COLOR="always"
    secret "NPM_TOKEN" "GH_TOKEN"
    /-step run="skipped"
    step run="make" workdir="src/app" timeout="90s" continue_on_error=true {
      env V="1"
    }
    step name="Script" {
      run r#"
set -e
echo "quoted" \\ $HOME
"#
    }
  }
  job id="deploy" runs_on="ubuntu-22.04" {
    needs "build"
    step run="echo \\"hi\\"\\n"
  }
}
"""
    workflow = parse_workflow(text)
    assert workflow.name is None
    assert workflow.env == (("LANG", "C.UTF-8"), ("TZ", "UTC"), ("EXTRA", "1"))
    build, deploy = workflow.jobs
    assert build.timeout == 5400.0
    assert build.env == (("CARGO_TERM_COLOR", "always"),)
    assert build.secrets == ("NPM_TOKEN", "GH_TOKEN")
    assert build.needs == ()
    assert build.steps[0] == Step(
        run="make", workdir="src/app", timeout=90.0, continue_on_error=True, env=(("V", "1"),)
    )
    assert build.steps[1] == Step(name="Script", run='\nset -e\necho "quoted" \\ $HOME\n')
    assert deploy.needs == ("build",)
    assert deploy.steps[0].run == 'echo "hi"\n'
    assert deploy.steps[0].title == 'echo "hi"'


def test_node_run_argument_equals_property():
    as_prop = parse_workflow('workflow {\n  job id="a" runs_on="b" { step run="make"; }\n}\n')
    as_node = parse_workflow('workflow {\n  job id="a" runs_on="b" {\n    step {\n      run "make"\n    }\n  }\n}\n')
    assert as_prop == as_node


@pytest.mark.parametrize("name", ["rust", "python", "pipeline", "failing"])
def test_example_validates(name):
    workflow = load_workflow(EXAMPLES / name / ".solstice" / "workflow.kdl")
    assert workflow.jobs


def test_every_example_directory_validates():
    found = sorted(EXAMPLES.glob("*/.solstice/workflow.kdl"))
    assert len(found) >= 4
    for path in found:
        assert load_workflow(path).jobs, path


def test_pipeline_example_uses_needs_env_secrets_timeouts():
    workflow = load_workflow(EXAMPLES / "pipeline" / ".solstice" / "workflow.kdl")
    assert [[j.id for j in stage] for stage in execution_stages(workflow)] == [
        ["lint", "unit"],
        ["package"],
        ["publish"],
    ]
    assert workflow.job("publish").secrets == ("PKG_REPO_TOKEN", "SIGNING_KEY")
    assert workflow.job("package").timeout == 3600.0
    assert workflow.env == (("LANG", "C.UTF-8"),)


def test_failing_example_has_a_step_that_exits_non_zero():
    workflow = load_workflow(EXAMPLES / "failing" / ".solstice" / "workflow.kdl")
    assert "exit 3" in workflow.jobs[0].steps[1].run


def _job(job_id: str, *needs: str) -> Job:
    return Job(id=job_id, runs_on="x", steps=(Step(run="true"),), needs=needs)


def test_stages_put_each_job_after_all_it_needs():
    workflow = Workflow(
        jobs=(
            _job("deploy", "test", "build"),
            _job("build"),
            _job("test", "build"),
            _job("lint"),
            _job("docs", "lint"),
        )
    )
    assert [[j.id for j in s] for s in execution_stages(workflow)] == [
        ["build", "lint"],
        ["test", "docs"],
        ["deploy"],
    ]


def test_stages_of_a_long_chain_do_not_recurse():
    jobs = tuple(_job(f"j{n}", *((f"j{n - 1}",) if n else ())) for n in range(3000))
    stages = execution_stages(Workflow(jobs=tuple(reversed(jobs))))
    assert len(stages) == 3000
    assert stages[-1][0].id == "j2999"


def test_stages_refuse_a_hand_built_cycle():
    with pytest.raises(ValueError, match="cycle"):
        execution_stages(Workflow(jobs=(_job("a", "b"), _job("b", "a"))))


def test_find_cycles_reports_each_cycle_once_from_its_first_member():
    graph = {"a": ["b"], "b": ["c"], "c": ["a"], "d": ["d2"], "d2": ["d"], "e": ["a"], "f": []}
    assert find_cycles(graph) == [["a", "b", "c", "a"], ["d", "d2", "d"]]


def test_find_cycles_none_in_a_dag():
    assert find_cycles({"a": [], "b": ["a"], "c": ["a", "b"]}) == []


def test_env_precedence_workflow_then_job_then_step():
    workflow = parse_workflow(
        'workflow {\n  env A="w" B="w" C="w"\n'
        '  job id="j" runs_on="x" {\n    env B="j" D="j"\n'
        '    step run="true" {\n      env C="s" E="s"\n    }\n    step run="true"\n  }\n}\n'
    )
    job = workflow.jobs[0]
    first, second = job.steps
    assert merge_env(workflow.env, job.env, first.env) == (
        ("A", "w"), ("B", "j"), ("C", "s"), ("D", "j"), ("E", "s"),
    )
    assert merge_env(workflow.env, job.env, second.env) == (("A", "w"), ("B", "j"), ("C", "w"), ("D", "j"))
    assert merge_env() == ()
