"""The results body: every schema error says which field and what is wrong; the published schemas match."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest

from integration.external.records import ResultReport, SuiteSummary
from integration.external.report_schema import ReportInvalid, parse_report
from tests.conftest import REPO_ROOT
from tests.integration.external.conftest import SHA, completed, report_body


def problems(body: object) -> list[str]:
    with pytest.raises(ReportInvalid) as caught:
        parse_report(body if isinstance(body, bytes) else json.dumps(body).encode())
    return caught.value.problems


def test_a_valid_report_round_trips():
    report = parse_report(json.dumps(completed()).encode())
    assert report == ResultReport(
        delivery_id="github:d-1", upstream_repo="octo-org/octo-repo", upstream_sha=SHA, run_id="4242", run_attempt=1,
        job_id="test", job_name="Test float32", status="completed", upstream_pr=7, conclusion="success",
        completed_at="2025-04-28T10:45:12Z", tests=SuiteSummary(8430, 2, 20, 0),
        artifact_url="https://acme.example/ci/183512/")
    assert parse_report(json.dumps(report.to_json()).encode()) == report


def test_unknown_versions_and_fields_are_named():
    assert problems(report_body(schema_version=2)) == ["schema_version 2 is not supported: this server takes 1"]
    assert problems(report_body(schema_version="1")) == ['schema_version "1" is not supported: this server takes 1']
    assert problems(report_body(schema_version=None)) == ["schema_version is missing: this server takes 1"]
    body = report_body(verdict="ok", extra=1)
    body["upstream"]["branch"] = "main"
    assert problems(body) == ["the body: unknown fields 'extra', 'verdict'", "upstream: unknown field 'branch'"]


def test_each_field_error_names_the_field():
    assert problems(report_body(upstream={"repo": "octo-org/octo-repo", "sha": "abc"})) == [
        "upstream.sha: 'abc' is not a commit id (40 or 64 lowercase hex digits)"]
    assert problems(report_body(artifact_url="http://acme.example/x")) == [
        "artifact_url: 'http://acme.example/x' is not an https URL (no spaces)"]
    assert problems(report_body(run_attempt=0)) == ["run_attempt: 0 is less than the minimum of 1"]
    assert problems(report_body(status="running")) == [
        "status: 'running' is not one of ['in_progress', 'completed']"]
    assert problems(report_body(job_id=None)) == ["the body: 'job_id' is a required property"]
    assert problems(report_body(job_name="a\x1b[31mred")) == ["job_name: control characters are not allowed"]
    assert problems(report_body(started_at="yesterday")) == ["started_at: 'yesterday' is not an RFC 3339 time"]
    assert problems(report_body(started_at="2025-04-28T10:15:30")) == [
        "started_at: '2025-04-28T10:15:30' needs a date, a 'T', a time and a zone (as 2025-04-28T10:15:30Z)"]
    assert problems(completed(tests={"passed": -1, "failed": 0, "skipped": 0, "errors": 0})) == [
        "tests.passed: -1 is less than the minimum of 0"]


def test_conclusion_goes_with_completed_only():
    assert problems(completed(conclusion=None)) == [
        "conclusion: a completed report needs a conclusion (success, failure, cancelled, timed_out, skipped or "
        "neutral)"]
    assert problems(report_body(conclusion="success")) == ["conclusion: only a completed report has a conclusion"]


def test_what_is_not_a_json_object_says_so():
    assert problems(b"{not json")[0].startswith("the body is not JSON")
    assert problems(b"[1, 2]") == ["the body must be a JSON object"]
    assert problems(b"[" * 100_000 + b"]" * 100_000) == ["the body nests deeper than the JSON parser allows"]


def test_every_missing_field_is_listed():
    listed = problems({"schema_version": 1})
    assert listed == [f"the body: {name!r} is a required property" for name in
                      ("delivery_id", "upstream", "run_id", "run_attempt", "job_id", "job_name", "status")]


@pytest.mark.parametrize("name", ["results-v1.schema.json", "dispatch-v1.schema.json"])
def test_the_published_schemas_are_the_ones_the_server_uses(name: str):
    shipped = REPO_ROOT / "integration" / "external" / "schemas" / name
    published = REPO_ROOT / "docs" / "schemas" / name
    assert published.read_text() == shipped.read_text(), f"copy {shipped} to {published}"
    jsonschema.Draft7Validator.check_schema(json.loads(Path(shipped).read_text()))
