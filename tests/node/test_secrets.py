"""A node hands a job its secrets only as the rules say, before the VM exists, and records each delivery.

Single node (SQLite, local queue and event bus) with the instant driver,
whose fake runner reports the secret names it received and expands ``$NAME``
in ``echo`` steps as a shell would. The multi-host form (PostgreSQL,
RabbitMQ) is test_secrets_multihost.py; the real runner and every reader of
a log, through webhooks, is tests/singlenode/test_secrets.py.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import grpc
import pytest

from common.config import Seconds
from common.rpc import admin_pb2, jobs_pb2
from orchestrator.names import vm_name
from orchestrator.secrets import SecretsConfig, VaultConfig
from orchestrator.secrets.keyring import new_key_entry
from orchestrator.store import JobState
from tests.fakes.vault import FakeVault
from tests.node.harness import LocalNode, admin_stub, job, local_node, local_settings
from tests.waiting import async_wait_until

VALUE = "node-secret-value-Zq81"
REPO = "github/acme/widgets"


def secret_job(job_id: str, *names: str, trusted: bool = True, ref: str = "refs/heads/main",
               steps: tuple[str, ...] = ("echo token=$DEPLOY_KEY",)) -> jobs_pb2.JobRequest:
    request = job(job_id, steps=steps)
    request.checkout.CopyFrom(jobs_pb2.Checkout(forge="github", repo="acme/widgets", ref=ref, sha="b" * 40))
    request.secrets.extend(names)
    request.trusted = trusted
    request.origin = "github push" if trusted else "github pull_request"
    return request


async def finished(node: LocalNode, job_id: str):  # type: ignore[no-untyped-def]
    async def done():  # type: ignore[no-untyped-def]
        record = await node.store.get_job(job_id)
        return record if record is not None and record.terminal else None
    return await async_wait_until(done, timeout=30, what=f"{job_id} to finish")


async def test_trusted_job_gets_its_secrets_others_are_refused_before_a_vm_exists(tmp_path: Path):
    settings = dataclasses.replace(local_settings(tmp_path), secrets=SecretsConfig(keys=new_key_entry()))
    async with local_node(settings, secrets=True) as node:
        async with admin_stub(node.node) as admin:
            await admin.SetSecret(admin_pb2.SetSecretRequest(scope=REPO, name="DEPLOY_KEY", value=VALUE))
            await admin.SetSecret(admin_pb2.SetSecretRequest(scope="github/acme", name="RELEASE_KEY",
                                                             value="release-key-value", refs=["refs/tags/*"]))
            await node.publish(
                secret_job("job-trusted", "DEPLOY_KEY"),
                secret_job("job-fork", "DEPLOY_KEY", trusted=False),
                secret_job("job-branch", "DEPLOY_KEY", "RELEASE_KEY", ref="refs/heads/feature"),
                secret_job("job-missing", "DEPLOY_KEY", "NOT_SET"),
                secret_job("job-none", steps=("echo no secrets: [$DEPLOY_KEY]",)),
            )
            jobs = {j: await finished(node, j) for j in
                    ("job-trusted", "job-fork", "job-branch", "job-missing", "job-none")}
            audit = (await admin.SecretAudit(admin_pb2.SecretAuditRequest(scope=REPO))).deliveries
        lines = [line.text() for line in await (await node.node.parts.gateway.logstore.open(
            "job-trusted", 1, create=False)).read_all()]
        untouched = [line.text() for line in await (await node.node.parts.gateway.logstore.open(
            "job-none", 1, create=False)).read_all()]

    assert jobs["job-trusted"].state is JobState.SUCCEEDED
    assert node.driver.secrets_received["job-trusted"] == ["DEPLOY_KEY"]
    assert lines == ["token=***"]  # the runner printed the value; the node stored it masked
    assert jobs["job-none"].state is JobState.SUCCEEDED and untouched == ["no secrets: []"]
    assert node.driver.secrets_received["job-none"] == []  # only the declared names

    reasons = {j: (jobs[j].state, jobs[j].reason) for j in ("job-fork", "job-branch", "job-missing")}
    assert reasons == {
        "job-fork": (JobState.FAILED, "secret DEPLOY_KEY refused: the job is untrusted (github pull_request jobs "
                                      "run without secrets; fork pull requests and API-submitted jobs get none)"),
        "job-branch": (JobState.FAILED, "secret RELEASE_KEY is restricted to refs/tags/*; this job builds "
                                        "refs/heads/feature"),
        "job-missing": (JobState.FAILED, "secret NOT_SET not set for github/acme/widgets or github/acme"),
    }
    for refused in reasons:  # failed before anything of it ran: no VM, no runner
        assert ("prepare", vm_name(refused, 1)) not in node.driver.events
        assert refused not in node.driver.secrets_received
        assert node.events.job_states(refused) == [JobState.PROVISIONING, JobState.FAILED]
        assert node.events.terminal(refused)[0].reason == reasons[refused][1]

    by_job = {(d.job_id, d.outcome): d for d in audit}
    assert set(by_job) == {("job-trusted", "delivered"), ("job-fork", "refused"), ("job-branch", "refused"),
                           ("job-missing", "refused")}
    delivered = by_job[("job-trusted", "delivered")]
    assert (delivered.attempt, delivered.repo, delivered.ref, list(delivered.names), delivered.host) == (
        1, REPO, "refs/heads/main", ["DEPLOY_KEY"], "node-a")
    assert delivered.at.seconds > 0 and by_job[("job-fork", "refused")].reason == reasons["job-fork"][1]
    for event in node.events.events:
        assert VALUE.encode() not in event.SerializeToString()


async def test_vault_403_ends_the_job_errored_with_the_path_named(tmp_path: Path):
    async with FakeVault() as vault:
        vault.put("secret", "solstice/github/acme/widgets", {"DEPLOY_KEY": VALUE})
        token = vault.issue_token(["secret/data/solstice/github/other/*"])
        secrets = SecretsConfig(store="vault", vault=VaultConfig(address=vault.url, token=token, timeout=Seconds(5)))
        settings = dataclasses.replace(local_settings(tmp_path), secrets=secrets)
        async with local_node(settings, secrets=True) as node:
            await node.publish(secret_job("job-v", "DEPLOY_KEY"))
            record = await finished(node, "job-v")
            async with admin_stub(node.node) as admin:
                listed = await admin.ListSecrets(admin_pb2.ListSecretsRequest(scope="github/other/app"))
    assert record.state is JobState.ERRORED
    assert record.reason == ("the secret store failed: Vault denied reading secret/data/solstice/github/acme/widgets "
                             "(permission denied): the node's policy must allow read on it")
    assert listed.store == "vault" and list(listed.secrets) == []  # 404: nothing there


async def test_secret_rpcs_check_their_input_and_never_answer_a_value(tmp_path: Path):
    async def code_of(call) -> tuple[grpc.StatusCode, str]:  # type: ignore[no-untyped-def]
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await call
        return err.value.code(), err.value.details() or ""

    settings = dataclasses.replace(local_settings(tmp_path), secrets=SecretsConfig(keys=new_key_entry()))
    async with local_node(settings, secrets=True) as node, admin_stub(node.node) as admin:
        info = await admin.SetSecret(admin_pb2.SetSecretRequest(scope="GitHub/Acme/Widgets", name="DEPLOY_KEY",
                                                                value=VALUE, refs=["refs/heads/main"]))
        listed = await admin.ListSecrets(admin_pb2.ListSecretsRequest(scope=REPO))
        bad = [
            await code_of(admin.SetSecret(admin_pb2.SetSecretRequest(scope=REPO, name="npm-token", value="x" * 8))),
            await code_of(admin.SetSecret(admin_pb2.SetSecretRequest(scope="acme", name="A", value="x" * 8))),
            await code_of(admin.SetSecret(admin_pb2.SetSecretRequest(scope=REPO, name="A", value="x",
                                                                     refs=["main"]))),
            await code_of(admin.DeleteSecret(admin_pb2.DeleteSecretRequest(scope=REPO, name="NOT_SET"))),
        ]
        await admin.DeleteSecret(admin_pb2.DeleteSecretRequest(scope=REPO, name="DEPLOY_KEY"))
        after = await admin.ListSecrets(admin_pb2.ListSecretsRequest(scope=REPO))
    assert (info.scope, info.name, list(info.refs), info.store) == (REPO, "DEPLOY_KEY", ["refs/heads/main"], "builtin")
    assert [s.name for s in listed.secrets] == ["DEPLOY_KEY"] and listed.secrets[0].key_id == info.key_id
    for answer in (info, listed):
        assert VALUE.encode() not in answer.SerializeToString()
    assert [code for code, _ in bad] == [grpc.StatusCode.INVALID_ARGUMENT] * 3 + [grpc.StatusCode.NOT_FOUND]
    assert "invalid secret name 'npm-token'" in bad[0][1] and "ref pattern 'main'" in bad[2][1]
    assert list(after.secrets) == []

    async with local_node(local_settings(tmp_path / "bare"), secrets=False) as bare, admin_stub(bare.node) as admin:
        code, message = await code_of(admin.SetSecret(admin_pb2.SetSecretRequest(scope=REPO, name="A", value=VALUE)))
    assert (code, message) == (grpc.StatusCode.FAILED_PRECONDITION, "this node has no secret store")
