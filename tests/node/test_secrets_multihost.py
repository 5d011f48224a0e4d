"""Multi-host: a secret's value never reaches PostgreSQL, RabbitMQ's messages, events or a node's files.

A node on the test's own PostgreSQL database and RabbitMQ prefix runs a
trusted job whose step prints its secret (the instant driver's fake runner
expands ``$DEPLOY_KEY``) and an untrusted one that declares it. A tap queue
of the test's own, bound to the jobs and events exchanges before anything is
published, receives a copy of every message; afterwards every table, every
tapped message and every file under the node's data directory are searched
for the value in each recognisable form.
"""

from __future__ import annotations

import aio_pika

from common.rpc import admin_pb2
from orchestrator.secrets import SecretsConfig
from orchestrator.secrets.keyring import new_key_entry
from orchestrator.store import JobState
from tests.node.conftest import Cluster
from tests.node.harness import admin_stub, driver_of
from tests.node.test_secrets import secret_job
from tests.secrets.leaks import dump, file_bytes, leaks

VALUE = "multihost-secret-Vq7x-2931"


async def test_no_trace_of_the_value_in_store_queue_events_or_files(cluster: Cluster):
    connection = await aio_pika.connect(cluster.amqp)
    try:
        channel = await connection.channel()
        tap = await channel.declare_queue(exclusive=True)
        await tap.bind(await cluster.topology.declare_jobs(channel), routing_key="#")
        await tap.bind(await cluster.topology.declare_events(channel), routing_key="#")

        settings = cluster.settings(secrets=SecretsConfig(keys=new_key_entry()))
        async with cluster.node(settings) as node:
            async with admin_stub(node) as admin:
                await admin.SetSecret(admin_pb2.SetSecretRequest(scope="github/acme/widgets", name="DEPLOY_KEY",
                                                                 value=VALUE))
                await cluster.publish(secret_job("job-mh-trusted", "DEPLOY_KEY"),
                                      secret_job("job-mh-fork", "DEPLOY_KEY", trusted=False))
                trusted = await cluster.finished("job-mh-trusted")
                fork = await cluster.finished("job-mh-fork")
                audit = (await admin.SecretAudit(admin_pb2.SecretAuditRequest())).deliveries
            stored = await (await node.parts.gateway.logstore.open("job-mh-trusted", 1, create=False)).read_all()
            received = dict(driver_of(node).secrets_received)

        messages: list[tuple[str, bytes]] = []
        while (message := await tap.get(no_ack=True, fail=False)) is not None:
            messages.append((f"message {message.routing_key}", message.body))
    finally:
        await connection.close()

    assert trusted.state is JobState.SUCCEEDED and received["job-mh-trusted"] == ["DEPLOY_KEY"]
    assert [line.text() for line in stored] == ["token=***"]
    assert fork.state is JobState.FAILED and "untrusted" in fork.reason and "job-mh-fork" not in received
    assert {(d.job_id, d.outcome) for d in audit} == {("job-mh-trusted", "delivered"), ("job-mh-fork", "refused")}

    routing = {name for name, _ in messages}
    assert {"message lab-a", "message job.succeeded.job-mh-trusted", "message job.failed.job-mh-fork",
            "message step.succeeded.job-mh-trusted"} <= routing, routing  # requests and events were tapped
    database = await dump(cluster.store)
    assert b"DEPLOY_KEY" in database  # the dump reads the secrets and audit tables
    files = file_bytes(cluster.root)
    assert any(p.suffix == ".log" for p in files)  # the job's stored log is among them
    places = [("postgresql", database), *messages, *((str(p), data) for p, data in files.items())]
    assert leaks(VALUE, places) == []
