"""The results API's body: JSON, schema version 1, checked field by field with messages that name them.

The schema (``schemas/results-v1.schema.json``, published as
``docs/schemas/results-v1.schema.json``) says what is allowed; this module
adds what a schema says poorly: the version first (an unknown one is named),
unknown fields named as such, a conclusion only with ``completed``, times
that are real RFC 3339 times with a zone, and no control characters in the
job name.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

from integration.errors import IntegrationError
from integration.external.records import COMPLETED, ResultReport

SCHEMA_VERSIONS = (1,)
MAX_ERRORS = 10
# What a pattern means, said plainly, per field.
_RULES = {
    "artifact_url": "is not an https URL (no spaces)",
    "delivery_id": "is not a delivery id (1-140 printable characters: client_payload.delivery_id)",
    "upstream.repo": "is not owner/name",
    "upstream.sha": "is not a commit id (40 or 64 lowercase hex digits)",
    "run_id": "is not a run id (1-64 letters, digits, '.', '_', '-')",
    "job_id": "is not a job id (1-100 letters, digits, '.', '_', '-')",
}


class ReportInvalid(IntegrationError):
    """A report body that is not taken; ``problems`` lists each (``field: what is wrong``)."""

    def __init__(self, problems: list[str], malformed: bool = False) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems
        self.malformed = malformed  # not a JSON object at all (400), rather than a JSON object that is wrong (422)


def schema_text(version: int = 1) -> str:
    return resources.files("integration.external").joinpath(f"schemas/results-v{version}.schema.json").read_text()


@cache
def _validator(version: int) -> jsonschema.Draft7Validator:
    schema = json.loads(schema_text(version))
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def _where(path: Any) -> str:
    parts = [str(p) for p in path]
    return ".".join(parts) if parts else "the body"


def _problem(error: jsonschema.ValidationError) -> str:
    where = _where(error.path)
    if (error.validator == "additionalProperties" and isinstance(error.instance, dict)
            and isinstance(error.schema, dict)):
        known = set(error.schema.get("properties", {}))
        unknown = sorted(str(name) for name in error.instance if name not in known)
        return f"{where}: unknown field{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}"
    if error.validator == "required":
        return f"{where}: {error.message}"
    if error.validator in ("pattern", "maxLength", "minLength") and isinstance(error.instance, str):
        shown = error.instance if len(error.instance) <= 60 else error.instance[:57] + "..."
        rule = {"pattern": _RULES.get(where, f"does not match {error.validator_value}"),
                "maxLength": f"is longer than {error.validator_value} characters",
                "minLength": "is empty"}[str(error.validator)]
        return f"{where}: {shown!r} {rule}"
    return f"{where}: {error.message}"


def _time_problem(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return f"{name}: {value!r} is not an RFC 3339 time"
    if parsed.tzinfo is None or "T" not in value:
        return f"{name}: {value!r} needs a date, a 'T', a time and a zone (as 2025-04-28T10:15:30Z)"
    return None


def parse_report(body: bytes) -> ResultReport:
    """The report in ``body``; ``ReportInvalid`` listing every problem (at most ``MAX_ERRORS``)."""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise ReportInvalid([f"the body is not JSON: {err}"], malformed=True) from None
    except RecursionError:
        raise ReportInvalid(["the body nests deeper than the JSON parser allows"], malformed=True) from None
    return check_report(doc)


def check_report(doc: Any) -> ResultReport:
    """``doc`` (decoded JSON) as a report, checked against its schema version."""
    if not isinstance(doc, dict):
        raise ReportInvalid(["the body must be a JSON object"], malformed=True)
    version = doc.get("schema_version")
    if "schema_version" not in doc:
        raise ReportInvalid([f"schema_version is missing: this server takes {', '.join(map(str, SCHEMA_VERSIONS))}"])
    if isinstance(version, bool) or version not in SCHEMA_VERSIONS:
        shown = json.dumps(version)[:40]
        raise ReportInvalid([f"schema_version {shown} is not supported: this server takes "
                             f"{', '.join(map(str, SCHEMA_VERSIONS))}"])
    errors = sorted(_validator(version).iter_errors(doc), key=lambda e: (list(map(str, e.path)), str(e.validator)))
    problems = [_problem(error) for error in errors]
    if not problems:
        if doc["status"] == COMPLETED and "conclusion" not in doc:
            problems.append("conclusion: a completed report needs a conclusion (success, failure, cancelled, "
                            "timed_out, skipped or neutral)")
        if doc["status"] != COMPLETED and "conclusion" in doc:
            problems.append("conclusion: only a completed report has a conclusion")
        if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in doc["job_name"]):
            problems.append("job_name: control characters are not allowed")
        problems += [p for p in (_time_problem(n, doc.get(n)) for n in ("started_at", "completed_at")) if p]
    if problems:
        raise ReportInvalid(problems[:MAX_ERRORS] + ([f"... and {len(problems) - MAX_ERRORS} more"]
                                                     if len(problems) > MAX_ERRORS else []))
    return ResultReport.from_json(doc)
