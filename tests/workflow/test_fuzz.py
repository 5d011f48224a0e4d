"""Any text at all: the parser answers with a model or with positioned errors, never a crash."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.workflow import WorkflowInvalid, parse_workflow, render_workflow
from tests.workflow.test_roundtrip import workflows

# Pieces of real workflows, so random text gets past the KDL syntax often
# enough to reach the schema checks.
TOKENS = st.sampled_from(
    [
        "workflow", "job", "step", "env", "needs", "secret", "run", " ", "\n", "{", "}", ";", "=",
        'id="a"', 'id="b"', 'runs_on="x"', 'run="make"', 'timeout="5m"', 'timeout="0s"', "timeout=5",
        'workdir="../x"', "continue_on_error=true", '"a"', '"b"', "A=", '"1"', "1", "null", "(t)",
        'r#"x\ny"#', "/-", "//c\n", "/*c*/", "\\", '"', "#", "ä",
    ]
)
SOUPS = st.lists(TOKENS, max_size=40).map("".join)

# Modest counts keep CI fast; one-off runs of 3,000 examples each found nothing.
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _check(text: str) -> None:
    try:
        parse_workflow(text, "f.kdl")
    except WorkflowInvalid as err:
        assert err.errors, "an invalid workflow names at least one error"
        lines = text.split("\n")
        for error in err.errors:
            assert error.file == "f.kdl"
            assert 1 <= error.line <= len(lines), error
            assert 1 <= error.col <= len(lines[error.line - 1]) + 1, error
            assert error.message


@settings(SETTINGS, max_examples=500)
@given(SOUPS)
def test_token_soup_never_crashes(text: str):
    _check(text)


@settings(SETTINGS, max_examples=75)
@given(workflows(), st.data())
def test_mutated_workflow_never_crashes(workflow, data):
    text = render_workflow(workflow)
    at = data.draw(st.integers(0, len(text)))
    cut = data.draw(st.integers(0, 5))
    insert = data.draw(st.one_of(st.just(""), TOKENS))
    _check(text[:at] + insert + text[at + cut :])


def test_a_slashdashed_children_block_is_no_children():
    # Found by test_mutated_workflow_never_crashes: kdl-py gives such a node no list of children at all.
    workflow = parse_workflow('workflow {\n  job id="a" runs_on="b" {\n    step run="x" /-{\n      env B=""\n    }\n  }\n}\n',
                              "f.kdl")
    assert workflow.jobs[0].steps[0].env == ()
