"""Matrix jobs expand to one job per combination, with values substituted and needs widened."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from cidev.cli import cli
from common.workflow import parse_workflow, render_workflow
from common.workflow.matrix import references, substitute

TWO_BY_TWO = """\
workflow name="matrix" {
  job id="test" runs_on="${{ matrix.os }}" {
    matrix {
      os "illumos-stable" "omnios-lts"
      python "3.11" "3.12"
      exclude os="omnios-lts" python="3.11"
    }
    env PY="python${{ matrix.python }}"
    step name="pytest on ${{ matrix.os }}" run="$PY -m pytest  # ${{matrix.python}}" {
      env WHERE="${{ matrix.os }}"
    }
  }
  job id="package" runs_on="illumos-stable" {
    needs "test"
    step run="make package"
  }
}
"""


def test_two_by_two_with_an_exclude_makes_three_jobs_and_needs_all_of_them():
    workflow = parse_workflow(TWO_BY_TWO, "ci.kdl")
    test_jobs = workflow.jobs[:3]
    assert [j.id for j in test_jobs] == ["test-illumos-stable-3.11", "test-illumos-stable-3.12", "test-omnios-lts-3.12"]
    assert [j.title for j in test_jobs] == [
        "test (illumos-stable, 3.11)", "test (illumos-stable, 3.12)", "test (omnios-lts, 3.12)",
    ]
    assert [j.runs_on for j in test_jobs] == ["illumos-stable", "illumos-stable", "omnios-lts"]
    last = test_jobs[2]
    assert last.env == (("PY", "python3.12"),)
    assert last.steps[0].name == "pytest on omnios-lts"
    assert last.steps[0].run == "$PY -m pytest  # 3.12"
    assert last.steps[0].env == (("WHERE", "omnios-lts"),)
    package = workflow.job("package")
    assert package.needs == tuple(j.id for j in test_jobs)
    assert package.title == "package"


def test_include_adds_a_combination_after_the_excludes_and_a_named_job_keeps_its_name():
    text = """\
workflow {
  job id="t" name="Tests on ${{ matrix.os }}" runs_on="x" {
    matrix {
      include os="c"
      os "a" "b"
      exclude os="a"
    }
    step run="echo ${{ matrix.os }}"
  }
  job id="u" name="Unit" runs_on="x" {
    matrix { os "a"; }
    step run="true"
  }
}
"""
    workflow = parse_workflow(text, "ci.kdl")
    assert [(j.id, j.title, j.steps[0].run) for j in workflow.jobs] == [
        ("t-b", "Tests on b", "echo b"), ("t-c", "Tests on c", "echo c"), ("u-a", "Unit (a)", "true"),
    ]


def test_values_that_make_no_id_or_collide_get_numbered_ids():
    text = """\
workflow {
  job id="t-a" runs_on="x" { step run="true"; }
  job id="t" runs_on="x" {
    matrix { os "a" "Solaris 11/4" "b"; }
    step run="true"
  }
}
"""
    workflow = parse_workflow(text, "ci.kdl")
    # "t-a" is taken by the plain job; "Solaris 11/4" slugs to a usable id.
    assert [j.id for j in workflow.jobs] == ["t-a", "t-1", "t-solaris-11-4", "t-b"]


def test_expanded_workflow_renders_and_reads_back_equal():
    workflow = parse_workflow(TWO_BY_TWO, "ci.kdl")
    text = render_workflow(workflow)
    assert "${{" not in text and "matrix" not in text.replace('name="matrix"', "")
    assert parse_workflow(text, "again.kdl") == workflow


def test_references_and_substitution():
    assert references("a ${{ matrix.os }} b ${{matrix.py}}") == ["os", "py"]
    assert substitute("${{ matrix.os }}-${{ matrix.os }} ${{ github.x }}", (("os", "v"),)) == "v-v ${{ github.x }}"


def test_cidev_inspect_shows_the_expansion(tmp_path: Path):
    path = tmp_path / "workflow.kdl"
    path.write_text(TWO_BY_TWO)
    result = CliRunner().invoke(cli, ["inspect", str(path)])
    assert result.exit_code == 0, result.output
    assert "job test-omnios-lts-3.12:  test (omnios-lts, 3.12)" in result.output
    assert "stage 1: test-illumos-stable-3.11, test-illumos-stable-3.12, test-omnios-lts-3.12" in result.output
    assert "stage 2: package" in result.output
    result = CliRunner().invoke(cli, ["inspect", "--format", "json", str(path)])
    assert '"name": "test (illumos-stable, 3.11)"' in result.output
