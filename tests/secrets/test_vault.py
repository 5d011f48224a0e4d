"""The Vault store against a fake Vault (tests/fakes/vault.py).

Vault itself cannot be installed here: the fake is a real HTTP server written
from Vault's API documentation (KV v2 read envelope and versions, token
lookup-self / renew-self, AppRole login, 403 permission denied, 404), strict
about tokens and policies. The client under test is the real one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from common.config import Seconds
from orchestrator.secrets import ReadOnlyStore, RefPatterns, Scope, SecretStoreUnavailable
from orchestrator.secrets.settings import VaultConfig
from orchestrator.secrets.vault import VaultStore
from tests.fakes.vault import FakeVault
from tests.waiting import async_wait_until

REPO = Scope.parse("github/acme/widgets")
REPO_PATH = "solstice/github/acme/widgets"
OWNER_PATH = "solstice/github/acme"
READ_ALL = ["secret/data/solstice/*"]


def config(vault: FakeVault, **fields: object) -> VaultConfig:
    return VaultConfig(address=vault.url, timeout=Seconds(5), **fields)  # type: ignore[arg-type]


async def test_reads_the_repository_then_the_owner_path_with_refs_from_custom_metadata(vault: FakeVault):
    vault.put("secret", OWNER_PATH, {"NPM_TOKEN": "owner-npm", "SHARED": "owner-shared"})
    vault.put("secret", REPO_PATH, {"SHARED": "repo-shared-v1"})
    assert vault.put("secret", REPO_PATH, {"SHARED": "repo-shared-v2", "SIGN": "signing-key"},
                     {"solstice.refs": "refs/heads/main", "solstice.refs.SIGN": "refs/tags/* refs/heads/main"}) == 2
    token = vault.issue_token(READ_ALL)
    async with VaultStore(config(vault, token=token)) as store:
        found = await store.fetch(REPO, ["SHARED", "SIGN", "NPM_TOKEN", "NOT_SET"])
        listed = await store.list(REPO)
    assert {n: (str(s.scope), s.value) for n, s in found.items()} == {
        "SHARED": ("github/acme/widgets", "repo-shared-v2"),  # the latest version
        "SIGN": ("github/acme/widgets", "signing-key"), "NPM_TOKEN": ("github/acme", "owner-npm")}
    assert found["SHARED"].refs == RefPatterns(("refs/heads/main",))
    assert found["SIGN"].refs == RefPatterns(("refs/tags/*", "refs/heads/main"))
    assert [(i.name, i.version) for i in listed] == [("SHARED", 2), ("SIGN", 2)] and listed[0].updated_at
    assert all(c.token == token for c in vault.calls)


async def test_a_missing_path_and_a_deleted_latest_version_hold_nothing(vault: FakeVault):
    token = vault.issue_token(READ_ALL)
    async with VaultStore(config(vault, token=token)) as store:
        assert await store.fetch(REPO, ["A"]) == {}  # neither path exists: 404, 404
        vault.put("secret", REPO_PATH, {"A": "first"})
        vault.put("secret", REPO_PATH, {"A": "second"})
        vault.delete_latest("secret", REPO_PATH)
        assert await store.fetch(REPO, ["A"]) == {}  # Vault answers 404 with the deleted version's metadata
    assert [c.status for c in vault.calls_to(REPO_PATH)] == [404, 404]


async def test_403_names_the_path_and_a_policy_fix(vault: FakeVault):
    vault.put("secret", REPO_PATH, {"A": "value-a"})
    token = vault.issue_token(["secret/data/solstice/github/other/*"])
    async with VaultStore(config(vault, token=token)) as store:
        with pytest.raises(SecretStoreUnavailable, match=f"denied reading secret/data/{REPO_PATH} "
                                                         r"\(permission denied\).*policy"):
            await store.fetch(REPO, ["A"])


async def test_an_expired_static_token_is_reported_as_such(vault: FakeVault):
    token = vault.issue_token(READ_ALL, ttl=3600)
    async with VaultStore(config(vault, token=token)) as store:
        vault.advance(3601)  # past its TTL: Vault answers 403 to everything
        with pytest.raises(SecretStoreUnavailable, match="refused the configured token .*expired or revoked"):
            await store.fetch(REPO, ["A"])


async def test_a_renewable_token_is_renewed_and_outlives_its_first_ttl(vault: FakeVault):
    vault.put("secret", REPO_PATH, {"A": "value-a"})
    token = vault.issue_token(READ_ALL, ttl=2, renewable=True)
    issued = vault.now()
    async with VaultStore(config(vault, token=token)) as store:
        await async_wait_until(lambda: len(vault.calls_to("renew-self")) >= 3, timeout=30, what="three renewals")
        assert vault.now() - issued > 2  # unrenewed, the token would have expired by now
        assert (await store.fetch(REPO, ["A"]))["A"].value == "value-a"
        assert store.client.renewals >= 3 and all(c.status == 200 for c in vault.calls_to("renew-self"))


async def test_approle_logs_in_and_again_after_its_token_is_revoked(vault: FakeVault, tmp_path: Path):
    vault.put("secret", REPO_PATH, {"A": "value-a"})
    vault.add_approle("role-1", "secret-id-1", READ_ALL)
    secret_file = tmp_path / "secret-id"
    secret_file.write_text("secret-id-1\n")
    async with VaultStore(config(vault, auth="approle", role_id="role-1", secret_id_file=secret_file)) as store:
        assert (await store.fetch(REPO, ["A"]))["A"].value == "value-a"
        first = store.client._lease.token  # type: ignore[union-attr]
        vault.revoke(first)
        assert (await store.fetch(REPO, ["A"]))["A"].value == "value-a"  # 403, login again, read again
        second = store.client._lease.token  # type: ignore[union-attr]
        assert store.client.logins == 2 and second != first
    assert vault.tokens[second].revoked  # the node's own login is revoked on close
    assert [c.token for c in vault.calls_to("revoke-self")] == [second]


async def test_bad_approle_credentials_and_non_kv_answers_fail_clearly(vault: FakeVault):
    vault.add_approle("role-1", "secret-id-1", READ_ALL)
    store = VaultStore(config(vault, auth="approle", role_id="role-1", secret_id="wrong"))
    with pytest.raises(SecretStoreUnavailable, match="refused the AppRole login.*invalid role or secret ID"):
        await store.open()
    vault.put("secret", REPO_PATH, {"A": 42})
    async with VaultStore(config(vault, token=vault.issue_token(READ_ALL))) as store:
        with pytest.raises(SecretStoreUnavailable, match="value of 'A' is a int, not a string"):
            await store.fetch(REPO, ["A"])
        with pytest.raises(ReadOnlyStore, match=f"vault kv patch -mount=secret {REPO_PATH}"):
            await store.put(REPO, "A", "x", RefPatterns())


async def test_an_unreachable_vault_is_one_line(vault: FakeVault):
    store = VaultStore(VaultConfig(address="http://127.0.0.1:9", token="t", timeout=Seconds(5)))
    with pytest.raises(SecretStoreUnavailable, match="cannot reach Vault at http://127.0.0.1:9"):
        await store.open()
