"""The built-in store and the audit trail on both state-store back-ends (SQLite, PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.secrets import (
    AuditLog,
    KeyringError,
    RefPatterns,
    Scope,
    SecretNotFound,
)
from orchestrator.secrets.builtin import BuiltinStore
from orchestrator.secrets.open import sql_backend
from orchestrator.store import Store
from tests.secrets.conftest import keyring
from tests.secrets.leaks import dump, forms

REPO = Scope.parse("github/acme/widgets")
OWNER = Scope.parse("github/acme")
VALUE = "builtin-store-value-7Hq"


async def test_put_fetch_list_remove_repository_wins_over_owner(state: Store, key_entries):
    store = BuiltinStore(sql_backend(state), keyring(*key_entries))
    await store.put(OWNER, "NPM_TOKEN", "owner-npm-token", RefPatterns())
    await store.put(OWNER, "SHARED", "owner-shared-value", RefPatterns())
    info = await store.put(REPO, "SHARED", VALUE, RefPatterns.parse(["refs/heads/main"]))
    assert (str(info.scope), info.name, info.refs.patterns) == ("github/acme/widgets", "SHARED", ("refs/heads/main",))
    found = await store.fetch(REPO, ["SHARED", "NPM_TOKEN", "MISSING"])
    assert {n: (str(s.scope), s.value) for n, s in found.items()} == {
        "SHARED": ("github/acme/widgets", VALUE), "NPM_TOKEN": ("github/acme", "owner-npm-token")}
    assert found["SHARED"].refs.patterns == ("refs/heads/main",) and VALUE not in repr(found)
    # another repository of the owner sees only the owner's
    other = await store.fetch(Scope.parse("github/acme/other"), ["SHARED"])
    assert other["SHARED"].value == "owner-shared-value"
    assert [i.name for i in await store.list(OWNER)] == ["NPM_TOKEN", "SHARED"]
    again = await store.put(REPO, "SHARED", "replaced-value", RefPatterns())
    assert again.refs.patterns == () and (await store.fetch(REPO, ["SHARED"]))["SHARED"].value == "replaced-value"
    await store.remove(REPO, "SHARED")
    with pytest.raises(SecretNotFound, match="no secret SHARED in github/acme/widgets"):
        await store.remove(REPO, "SHARED")
    assert (await store.fetch(REPO, ["SHARED"]))["SHARED"].scope == OWNER


async def test_the_value_is_nowhere_in_the_database(state: Store, key_entries, store_url: str):
    store = BuiltinStore(sql_backend(state), keyring(*key_entries))
    await store.put(REPO, "TOKEN", VALUE, RefPatterns())
    everything = await dump(state)
    assert b"TOKEN" in everything  # the dump does read the secrets table
    for form in forms(VALUE):
        assert form not in everything
    if store_url.startswith("sqlite"):
        files = b"".join(p.read_bytes() for p in Path(store_url.split("://", 1)[1]).parent.iterdir())
        assert b"TOKEN" in files and VALUE.encode() not in files


async def test_a_sealed_value_moved_to_another_row_does_not_open(state: Store, key_entries):
    backend = sql_backend(state)
    store = BuiltinStore(backend, keyring(*key_entries))
    await store.put(REPO, "TOKEN", VALUE, RefPatterns())
    await store.put(REPO, "OTHER", "other-value", RefPatterns())
    await backend.run("UPDATE secrets SET sealed = (SELECT sealed FROM secrets WHERE name = 'TOKEN')"
                      " WHERE name = 'OTHER'")
    with pytest.raises(KeyringError, match="does not open"):
        await store.fetch(REPO, ["OTHER"])


async def test_key_rotation_and_rewrap(state: Store, key_entries):
    backend = sql_backend(state)
    old, new = key_entries
    old_id, new_id = old.split(":")[0], new.split(":")[0]
    await BuiltinStore(backend, keyring(old)).put(REPO, "A", "value-of-a", RefPatterns())
    rotated = BuiltinStore(backend, keyring(old, new))
    assert (await rotated.fetch(REPO, ["A"]))["A"].value == "value-of-a"  # old values stay readable
    assert (await rotated.put(REPO, "B", "value-of-b", RefPatterns())).key_id == new_id  # new writes: the new key
    assert [i.key_id for i in await rotated.list(REPO)] == [old_id, new_id]
    with pytest.raises(KeyringError, match=f"key '{old_id}'"):
        await BuiltinStore(backend, keyring(new)).fetch(REPO, ["A"])
    assert await rotated.rewrap() == 1
    assert await rotated.rewrap() == 0
    only_new = BuiltinStore(backend, keyring(new))
    assert {n: s.value for n, s in (await only_new.fetch(REPO, ["A", "B"])).items()} == {
        "A": "value-of-a", "B": "value-of-b"}


async def test_without_a_key_nothing_is_set_and_a_stored_value_is_not_opened(state: Store, key_entries):
    backend = sql_backend(state)
    await BuiltinStore(backend, keyring(*key_entries)).put(REPO, "A", "value-of-a", RefPatterns())
    keyless = BuiltinStore(backend, None)
    with pytest.raises(KeyringError, match="no encryption key"):
        await keyless.put(REPO, "B", "value-of-b", RefPatterns())
    with pytest.raises(KeyringError, match="no encryption key"):
        await keyless.fetch(REPO, ["A"])
    assert await keyless.fetch(REPO, ["NOT_SET"]) == {}


async def test_audit_records_are_queried_by_job_repository_and_owner(state: Store):
    audit = AuditLog(sql_backend(state))
    for job, repo, outcome in (("job-1", "github/acme/widgets", "delivered"),
                               ("job-2", "github/acme/gadgets", "refused"),
                               ("job-3", "github/acme_x/widgets", "delivered")):
        await audit.record(job_id=job, attempt=1, repo=repo, ref="refs/heads/main", names=["A", "B"],
                           outcome=outcome, host="node-a", store="builtin",
                           reason="why" if outcome == "refused" else "")
    newest = await audit.query()
    assert [d.job_id for d in newest] == ["job-3", "job-2", "job-1"]
    assert newest[1].names == ("A", "B") and newest[1].outcome == "refused" and newest[1].reason == "why"
    assert [d.job_id for d in await audit.query(job_id="job-1")] == ["job-1"]
    assert [d.job_id for d in await audit.query(scope=Scope.parse("github/acme"))] == ["job-2", "job-1"]
    assert [d.job_id for d in await audit.query(scope=Scope.parse("github/acme/widgets"))] == ["job-1"]
    assert len(await audit.query(limit=1)) == 1
