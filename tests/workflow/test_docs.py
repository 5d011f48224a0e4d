"""docs/workflow.md says what the parser really does.

Plain ```kdl blocks must be valid workflows; blocks after ``<!-- fragment -->``
must at least be KDL; blocks after ``<!-- invalid -->`` must produce exactly the
errors of the ```text block that follows them. The error table must match the
test corpus both ways, the schema tables must name every node and property,
and the JSON example must be what ``cidev validate --format json`` prints.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import kdl
import pytest

from cidev.report import FileResult, error_json, validation_json
from common.workflow import WorkflowInvalid, load_workflow, parse_workflow
from common.workflow import parser as schema
from tests.workflow.cases import INVALID

DOC = Path(__file__).resolve().parents[2] / "docs" / "workflow.md"
_NODE = re.compile(r'^(?:workflow|job (?:"[^"]*"|#\d+))(?: > [a-z]+(?: #\d+)?)*: ')
_FENCE = re.compile(r"(?:<!-- (?P<mark>[a-z]+) -->\n)?```(?P<lang>\w*)\n(?P<body>.*?)```", re.DOTALL)


def _blocks() -> list[tuple[str | None, str, str]]:
    return [(m["mark"], m["lang"], m["body"]) for m in _FENCE.finditer(DOC.read_text(encoding="utf-8"))]


def _kdl_blocks(mark: str | None) -> list[str]:
    return [body for m, lang, body in _blocks() if lang == "kdl" and m == mark]


def test_doc_has_examples_of_each_kind():
    assert len(_kdl_blocks(None)) >= 5
    assert len(_kdl_blocks("invalid")) >= 2
    assert {m for m, lang, _ in _blocks() if lang == "kdl"} <= {None, "fragment", "invalid"}


@pytest.mark.parametrize("text", _kdl_blocks(None))
def test_plain_kdl_blocks_are_valid_workflows(text: str):
    assert parse_workflow(text, "docs.kdl").jobs


@pytest.mark.parametrize("text", _kdl_blocks("fragment"))
def test_fragments_are_kdl(text: str):
    kdl.parse(text)


def test_invalid_blocks_show_their_exact_errors():
    blocks = _blocks()
    checked = 0
    for n, (mark, lang, body) in enumerate(blocks):
        if mark != "invalid":
            continue
        assert lang == "kdl"
        shown_lang, shown = blocks[n + 1][1], blocks[n + 1][2]
        assert shown_lang == "text", "an invalid example is followed by its errors"
        with pytest.raises(WorkflowInvalid) as caught:
            parse_workflow(body, "ci.kdl")
        assert [str(e) for e in caught.value.errors] == shown.splitlines()
        checked += 1
    assert checked >= 2


def _table_patterns() -> list[re.Pattern[str]]:
    text = DOC.read_text(encoding="utf-8")
    section = text[text.index("### Error messages") :]
    rows = re.findall(r"^\| `(.+?)` \|", section, re.MULTILINE)
    return [re.compile(".*".join(map(re.escape, row.split("…")))) for row in rows]


def _all_messages(tmp_path: Path) -> set[str]:
    messages = {line.split(": ", 1)[1] for _, expected in INVALID.values() for line in expected}
    # Node paths are not part of the table: strip 'job "a" > step #1: ' etc.
    bare = {_NODE.sub("", message, count=1) for message in messages}
    bad = tmp_path / "latin1.kdl"
    bad.write_bytes(b"workflow name=\"caf\xe9\" {}\n")
    with pytest.raises(WorkflowInvalid) as caught:
        load_workflow(bad)
    bare.add(caught.value.errors[0].message)
    return bare


def test_error_table_matches_the_corpus_both_ways(tmp_path: Path):
    patterns = _table_patterns()
    assert len(patterns) >= 30
    messages = _all_messages(tmp_path)
    unexplained = [m for m in messages if not any(p.fullmatch(m) for p in patterns)]
    assert unexplained == [], "messages missing from the table in docs/workflow.md"
    unseen = [p.pattern for p in patterns if not any(p.fullmatch(m) for m in messages)]
    assert unseen == [], "table rows no corpus case produces"


def test_schema_tables_name_every_node_and_property():
    text = DOC.read_text(encoding="utf-8")
    for node, props, children in (
        ("workflow", schema._WORKFLOW_PROPS, schema._WORKFLOW_CHILDREN),
        ("job", schema._JOB_PROPS, schema._JOB_CHILDREN),
        ("step", schema._STEP_PROPS, schema._STEP_CHILDREN),
    ):
        section = text[text.index(f"### `{node}`") :]
        section = section[: section.index("\n### ", 1)]
        for name in (*props, *children):
            assert f"| `{name}` |" in section, f"{node} table lacks {name}"


def test_json_example_is_what_cidev_prints():
    (doc,) = [json.loads(body) for _, lang, body in _blocks() if lang == "json"]
    example = _kdl_blocks("invalid")[0]
    with pytest.raises(WorkflowInvalid) as caught:
        parse_workflow(example, "ci.kdl")
    real = validation_json([FileResult("ci.kdl", None, caught.value.errors)])
    shown = doc["files"][0].pop("errors")
    real_errors = real["files"][0].pop("errors")
    assert doc == real
    assert shown and all(error in real_errors for error in shown)
    assert real_errors[4] == error_json(caught.value.errors[4]) == shown[0]
