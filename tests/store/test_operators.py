"""Operator tokens and clone credentials in the store, on both back-ends."""

from __future__ import annotations

import pytest

from orchestrator.operators import OperatorTokenError, OperatorTokens, Role, TokenRefused
from orchestrator.store import ConstraintViolation, JobState, Store
from tests.store.conftest import drive
from tests.waiting import async_wait_until


async def test_tokens_are_kept_as_hashes_listed_and_revoked(store: Store) -> None:
    record = await store.add_operator_token("0123456789ab", "alice", "operate", "ab" * 32, None)
    assert (record.name, record.role, record.expires_at, record.revoked) == ("alice", "operate", None, False)
    assert "ab" * 32 not in repr(record)
    with pytest.raises(ConstraintViolation):  # one live token per name
        await store.add_operator_token("ba9876543210", "alice", "read", "cd" * 32, None)
    later = await store.add_operator_token("ba9876543210", "bob", "read", "cd" * 32, 3600)
    assert later.expires_at is not None and 3599 < (later.expires_at - later.created_at).total_seconds() < 3601
    # newest first, also within one tick of SQLite's millisecond clock (a creation sequence decides)
    assert [t.name for t in await store.operator_tokens()] == ["bob", "alice"]
    revoked = await store.revoke_operator_token("alice")
    assert revoked is not None and revoked.revoked
    assert await store.revoke_operator_token("alice") is None  # not live any more
    assert (await store.revoke_operator_token("ba9876543210")).name == "bob"  # type: ignore[union-attr]  # by id
    again = await store.add_operator_token("00000000000a", "alice", "admin", "ef" * 32, None)  # the name is free again
    fetched = await store.operator_token("00000000000a")
    assert fetched is not None and (fetched.role, fetched.token_hash) == ("admin", "ef" * 32) and again.token_id
    assert await store.operator_token("ffffffffffff") is None


async def test_verify_checks_hash_expiry_and_revocation(store: Store) -> None:
    tokens = OperatorTokens(store)
    text, record = await tokens.create("carol", Role.ADMIN)
    assert (await tokens.verify(text)).name == "carol" and text not in repr(record) and record.token_hash not in text
    with pytest.raises(OperatorTokenError, match="exists"):
        await tokens.create("carol", Role.READ)
    with pytest.raises(OperatorTokenError, match="must be 1-64"):
        await tokens.create("bad name", Role.READ)
    short, _ = await tokens.create("dave", Role.READ, expires_in=0.05)

    async def refused() -> bool:
        try:
            await tokens.verify(short)
        except TokenRefused as err:
            return "expired" in str(err)
        return False
    await async_wait_until(refused, timeout=10, what="dave's token to expire (by the database clock)")
    await tokens.revoke("carol")
    with pytest.raises(TokenRefused, match="was revoked"):
        await tokens.verify(text)


async def test_clone_credentials_live_as_long_as_their_job(store: Store) -> None:
    await store.put_clone_credentials("j-live", "u:p1")
    await store.put_clone_credentials("j-done", "u:p2")
    await store.put_clone_credentials("j-never", "u:p3")  # its Submit failed before the job was stored
    await drive(store, "j-live", JobState.RUNNING)
    await drive(store, "j-done", JobState.SUCCEEDED)
    assert await store.purge_clone_credentials() == 1
    assert (await store.clone_credentials("j-live"), await store.clone_credentials("j-done")) == ("u:p1", None)
    assert await store.clone_credentials("j-never") == "u:p3"  # kept for an hour, then purged
    assert await store.transition("j-live", 1, JobState.FAILED)
    assert await store.purge_clone_credentials() == 1
    assert await store.clone_credentials("j-live") is None
