"""Message encoding, validation and naming: what a consumer may rely on."""

from __future__ import annotations

import pytest

from common.queue import InvalidMessage, PoisonMessage, Topology
from common.queue.codec import (
    decode_job_event,
    decode_job_request,
    encode_job_event,
    encode_job_request,
    event_routing_key,
    job_id_in,
)
from common.queue.connection import redact_url
from common.rpc import jobs_pb2
from tests.queue.conftest import job


def test_encode_stamps_the_schema_version_without_touching_the_request() -> None:
    request = job("j1", "illumos-stable")
    request.schema_version = 0
    decoded = decode_job_request(encode_job_request(request))
    assert decoded.schema_version == jobs_pb2.SCHEMA_VERSION_1
    assert request.schema_version == 0
    assert decoded.runs_on == "illumos-stable" and decoded.steps[0].run == "true"


@pytest.mark.parametrize(
    ("job_id", "label", "message"),
    [
        ("", "a", "needs a job_id"),
        ("j.1", "a", "job id 'j.1' is not valid"),
        ("j1", "", "has no runs_on label"),
        ("j1", "a.*", "label 'a.*' is not valid"),
        ("j1", "#", "label '#' is not valid"),
    ],
)
def test_encode_refuses_what_cannot_be_routed(job_id: str, label: str, message: str) -> None:
    with pytest.raises(InvalidMessage, match=message.replace("*", r"\*").replace(".", r"\.")):
        encode_job_request(job(job_id, label))


def test_encode_refuses_an_unknown_schema_version() -> None:
    with pytest.raises(InvalidMessage, match="schema_version 3"):
        encode_job_request(job("j1", "a", schema_version=3))


def test_decode_names_the_poison() -> None:
    with pytest.raises(PoisonMessage, match="not a JobRequest") as garbage:
        decode_job_request(b"\x0a\xff")
    assert garbage.value.job_id is None
    with pytest.raises(PoisonMessage, match="lacks required field\\(s\\): runs_on") as unlabelled:
        decode_job_request(job("j9", "").SerializeToString())
    assert unlabelled.value.job_id == "j9"
    assert job_id_in(job("j7", "a", schema_version=42).SerializeToString()) == "j7"


def test_event_routing_keys() -> None:
    running = jobs_pb2.JobEvent(event_id="e", job_id="j1", state=jobs_pb2.JOB_STATE_RUNNING)
    step = jobs_pb2.JobEvent(
        event_id="e", job_id="j1", state=jobs_pb2.JOB_STATE_RUNNING,
        step=jobs_pb2.StepResult(state=jobs_pb2.STEP_STATE_FAILED),
    )
    assert event_routing_key(running) == "job.running.j1"
    assert event_routing_key(step) == "step.failed.j1"
    assert decode_job_event(encode_job_event(step)).step.state == jobs_pb2.STEP_STATE_FAILED
    with pytest.raises(InvalidMessage, match="event_id"):
        encode_job_event(jobs_pb2.JobEvent(job_id="j1"))


def test_topology_names_carry_the_prefix() -> None:
    topology = Topology(prefix="ci1.")
    assert topology.jobs_exchange == "ci1.solstice.jobs"
    assert topology.label_queue("ubuntu-22.04") == "ci1.solstice.jobs.ubuntu-22.04"
    assert topology.jobs_dead_queue == "ci1.solstice.jobs.dead"
    assert topology.event_queue("reporter") == "ci1.solstice.events.reporter"
    with pytest.raises(InvalidMessage):
        Topology(prefix="bad prefix ")
    with pytest.raises(InvalidMessage):
        topology.event_queue("a#b")


def test_redact_url_hides_the_password() -> None:
    assert redact_url("amqp://guest:s3cret@host:5672/vh") == "amqp://guest:***@host:5672/vh"
    assert redact_url("amqp://host/vh") == "amqp://host/vh"
