"""JobRequest and JobEvent to and from message bodies, with the checks a consumer relies on.

A consumer refuses a message it could misread: undecodable bytes, a schema
version it does not know, or missing fields routing depends on. Those raise
``PoisonMessage`` with a reason that ends up in the dead letter.
"""

from __future__ import annotations

from copy import deepcopy

from google.protobuf.message import DecodeError

from common.queue.errors import InvalidMessage, PoisonMessage
from common.queue.topology import validate_job_id, validate_label
from common.rpc import jobs_pb2

SCHEMA_VERSION = jobs_pb2.SCHEMA_VERSION_1
KNOWN_SCHEMA_VERSIONS = frozenset({jobs_pb2.SCHEMA_VERSION_1})

# Lower-case state names used in event routing keys ("succeeded", ...).
_JOB_STATES = {v: n.removeprefix("JOB_STATE_").lower() for n, v in jobs_pb2.JobState.items()}
_STEP_STATES = {v: n.removeprefix("STEP_STATE_").lower() for n, v in jobs_pb2.StepState.items()}


def _stamped(message: jobs_pb2.JobRequest | jobs_pb2.JobEvent) -> bytes:
    if message.schema_version == 0:
        copy = deepcopy(message)
        copy.schema_version = SCHEMA_VERSION
        message = copy
    elif message.schema_version not in KNOWN_SCHEMA_VERSIONS:
        raise InvalidMessage(f"schema_version {message.schema_version} is not one this version of Solstice writes")
    return message.SerializeToString()


def encode_job_request(request: jobs_pb2.JobRequest) -> bytes:
    """Serialize ``request`` (stamping the current schema version if unset) after checking it can be routed."""
    if not request.job_id:
        raise InvalidMessage("a job request needs a job_id")
    validate_job_id(request.job_id)
    if not request.runs_on:
        raise InvalidMessage(f"job {request.job_id} has no runs_on label: it cannot be routed")
    validate_label(request.runs_on)
    return _stamped(request)


def _parse(message: jobs_pb2.JobRequest | jobs_pb2.JobEvent, body: bytes) -> None:
    """Fill ``message`` from ``body``; poison if unreadable or of an unknown schema version."""
    try:
        message.ParseFromString(body)
    except DecodeError as err:
        raise PoisonMessage(f"the message is not a {type(message).__name__} ({err})") from err
    if message.schema_version not in KNOWN_SCHEMA_VERSIONS:
        raise PoisonMessage(
            f"unknown schema_version {message.schema_version} (this node understands "
            f"{', '.join(map(str, sorted(KNOWN_SCHEMA_VERSIONS)))})",
            message.job_id or None,
        )


def decode_job_request(body: bytes) -> jobs_pb2.JobRequest:
    """Parse a job request body; ``PoisonMessage`` if it can never be processed."""
    request = jobs_pb2.JobRequest()
    _parse(request, body)
    job_id = request.job_id or None
    missing = [name for name in ("job_id", "runs_on") if not getattr(request, name)]
    if missing:
        raise PoisonMessage(f"the job request lacks required field(s): {', '.join(missing)}", job_id)
    try:
        validate_job_id(request.job_id)
        validate_label(request.runs_on)
    except InvalidMessage as err:
        raise PoisonMessage(str(err), None) from err
    return request


def job_id_in(body: bytes) -> str | None:
    """The job id inside a (possibly poison) request body, if it can be read."""
    try:
        return decode_job_request(body).job_id
    except PoisonMessage as err:
        return err.job_id


def encode_job_event(event: jobs_pb2.JobEvent) -> bytes:
    """Serialize ``event`` (stamping the schema version if unset) after checking its ids."""
    if not event.event_id:
        raise InvalidMessage("a job event needs an event_id (consumers deduplicate on it)")
    validate_job_id(event.job_id)
    return _stamped(event)


def decode_job_event(body: bytes) -> jobs_pb2.JobEvent:
    """Parse a job event body; ``PoisonMessage`` if it can never be processed."""
    event = jobs_pb2.JobEvent()
    _parse(event, body)
    if not event.event_id or not event.job_id:
        raise PoisonMessage("the job event lacks event_id or job_id", event.job_id or None)
    return event


def event_routing_key(event: jobs_pb2.JobEvent) -> str:
    """``job.<state>.<job_id>``, or ``step.<state>.<job_id>`` when the event is about a step."""
    if event.HasField("step"):
        return f"step.{_STEP_STATES.get(event.step.state, 'unknown')}.{event.job_id}"
    return f"job.{_JOB_STATES.get(event.state, 'unknown')}.{event.job_id}"
