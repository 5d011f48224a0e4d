"""Printing a workflow and parsing it again gives the same model; printing is stable."""

from __future__ import annotations

import string

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from common.workflow import Job, Schedule, Step, Workflow, parse_workflow, render_workflow

IDS = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True)
ENV_NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,12}", fullmatch=True)
# Any text a user could put in a value: quotes, backslashes, hashes, newlines,
# control characters and non-ASCII all have to survive printing.
TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from('"#\\\n\t\r r{}=;/'),
        st.characters(codec="utf-8", exclude_categories=("Cs",)),
    ),
    max_size=40,
# ${{ matrix.AXIS }} is a matrix reference, an error in a job without a matrix (tests/workflow/test_matrix.py).
).filter(lambda s: "${{" not in s)
SCRIPTS = TEXT.filter(lambda s: s.strip() != "")
SINGLE_LINE = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")) | st.sampled_from('"\\#'),
    min_size=1,
    max_size=30,
).filter(lambda s: s.strip() and "\n" not in s and "\r" not in s and "${{" not in s)
# Up to the default limit of 24 h (workflow_limits.max_timeout).
DURATIONS = st.one_of(st.none(), st.integers(1, 86400).map(float), st.integers(1, 10**7).map(lambda ms: ms / 1000))
WORKDIRS = st.one_of(
    st.none(),
    st.lists(st.text(alphabet=string.ascii_letters + "._- ", min_size=1, max_size=8), min_size=1, max_size=3)
    .map("/".join)
    .filter(lambda p: p.strip() and ".." not in p.split("/")),
)


# Job names, schedules (issue 25): ${{ matrix.* }} is not allowed in a job without a matrix.
NAMES = SINGLE_LINE
CRONS = st.sampled_from(["0 3 * * *", "*/15 9-17 * * mon-fri", "@daily", "30 2 1,15 * *"])
BRANCHES = st.sampled_from(["main", "release/1.x", "feature/a_b-c", "v2.0", "_x"])


def _env():
    return st.dictionaries(ENV_NAMES, TEXT, max_size=3).map(lambda d: tuple(d.items()))


STEPS = st.builds(
    Step,
    run=SCRIPTS,
    name=st.one_of(st.none(), SINGLE_LINE),
    env=_env(),
    timeout=DURATIONS,
    workdir=WORKDIRS,
    continue_on_error=st.booleans(),
)


@st.composite
def workflows(draw) -> Workflow:
    workflow_env = draw(_env())
    ids = draw(st.lists(IDS, min_size=1, max_size=5, unique=True))
    jobs = []
    for n, job_id in enumerate(ids):
        # Needs only point backwards, so the generated graph has no cycles.
        needs = draw(st.lists(st.sampled_from(ids[:n]), unique=True)) if n else []
        steps = tuple(draw(st.lists(STEPS, min_size=1, max_size=3)))
        env = draw(_env())
        # A secret may not share its name with an env variable of its job.
        taken = {name for level in (workflow_env, env, *(s.env for s in steps)) for name, _ in level}
        secrets = draw(st.lists(ENV_NAMES.filter(lambda name, taken=taken: name not in taken), unique=True, max_size=3))
        jobs.append(
            Job(
                id=job_id,
                runs_on=draw(IDS),
                steps=steps,
                env=env,
                timeout=draw(DURATIONS),
                needs=tuple(needs),
                secrets=tuple(secrets),
                name=draw(st.one_of(st.none(), NAMES)),
                reports=tuple(draw(st.lists(WORKDIRS.filter(lambda p: p is not None), unique=True, max_size=2))),
            )
        )
    schedules = draw(st.lists(st.builds(Schedule, cron=CRONS, branch=BRANCHES), unique=True, max_size=2))
    return Workflow(jobs=tuple(jobs), name=draw(st.one_of(st.none(), SINGLE_LINE)), env=workflow_env,
                    schedules=tuple(schedules))


# 100 random workflows per property keep the file fast in CI; a one-off run of
# 4,000 found nothing more. The explicit examples pin the cases that once
# needed care, so they are checked on every run whatever Hypothesis draws.
SETTINGS = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

_TRICKY = Workflow(
    name='say "hi" \\ ☀',
    env=(("null", "1"), ("true", ""), ("_", "a\nb")),
    jobs=(
        Job(
            id="0",
            runs_on="a.b_c-d",
            timeout=0.001,
            secrets=("false",),
            steps=(
                Step(run='echo "#"\nend"#', workdir="src dir/x"),
                Step(run="crlf\r\nscript", name="#", timeout=86399.0, continue_on_error=True),
                Step(run='r#"raw"#\n"##', env=(("A", '"#'),)),
            ),
        ),
        Job(id="z", runs_on="b", needs=("0",), steps=(Step(run="\n\n  x\n"),)),
    ),
)


@SETTINGS
@given(workflows())
@example(_TRICKY)
def test_parse_of_render_is_identity(workflow):
    assert parse_workflow(render_workflow(workflow)) == workflow


@SETTINGS
@given(workflows())
@example(_TRICKY)
def test_render_is_stable(workflow):
    text = render_workflow(workflow)
    assert render_workflow(parse_workflow(text)) == text


def test_multiline_script_is_printed_as_raw_string():
    step = Step(run='echo "a"\necho "#b"\n', name="two lines")
    text = render_workflow(Workflow(jobs=(Job(id="a", runs_on="b", steps=(step,)),)))
    assert '    run r##"echo "a"\necho "#b"\n"##\n' in text
    assert parse_workflow(text).jobs[0].steps[0] == step


def test_rendering_a_parsed_file_is_canonical():
    messy = 'workflow   name="x"{\njob runs_on="b" id="a" {step  run="t" name="n";}\n}'
    assert render_workflow(parse_workflow(messy)) == (
        'workflow name="x" {\n  job id="a" runs_on="b" {\n    step name="n" run="t"\n  }\n}\n'
    )
