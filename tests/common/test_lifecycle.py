"""``first_to_end``: the first named task to end, the rest cancelled and awaited, one line saying how."""

from __future__ import annotations

import asyncio

import pytest

from common.lifecycle import Ended, first_to_end
from tests.waiting import async_wait_until


async def _forever(log: list[str], name: str) -> None:
    log.append(f"{name} started")
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        await asyncio.sleep(0)  # cleanup that itself awaits: first_to_end must wait for it
        log.append(f"{name} cleaned up")
        raise


async def _fail(after: asyncio.Event, error: BaseException) -> None:
    await after.wait()
    raise error


async def test_a_failing_task_is_named_with_its_error_and_the_rest_are_cancelled_and_awaited() -> None:
    log: list[str] = []
    go = asyncio.Event()
    go.set()
    ended = await first_to_end({"signal": _forever(log, "signal"), "purge": _fail(go, RuntimeError("disk full")),
                                "beat": _forever(log, "beat")})
    assert ended == Ended("purge", ended.error)
    assert isinstance(ended.error, RuntimeError)
    assert ended.message == "purge stopped early: RuntimeError: disk full"
    assert sorted(log) == ["beat cleaned up", "beat started", "signal cleaned up", "signal started"]


async def test_a_task_that_returns_is_reported_without_none() -> None:
    log: list[str] = []
    stop = asyncio.Event()
    stop.set()
    ended = await first_to_end({"signal": stop.wait(), "loop": _forever(log, "loop")})
    assert (ended.name, ended.error, ended.cancelled) == ("signal", None, False)
    assert ended.message == "signal stopped"
    assert "None" not in ended.message
    assert log == ["loop started", "loop cleaned up"]


async def test_an_error_without_text_still_names_its_kind() -> None:
    go = asyncio.Event()
    go.set()
    ended = await first_to_end({"outbox": _fail(go, ConnectionResetError())})
    assert ended.message == "outbox stopped early: ConnectionResetError"


async def test_kept_tasks_are_watched_not_cancelled() -> None:
    log: list[str] = []
    heartbeat = asyncio.create_task(_forever(log, "heartbeat"))
    stop = asyncio.Event()
    stop.set()
    ended = await first_to_end({"stop": stop.wait(), "heartbeat": heartbeat}, keep={"heartbeat"})
    assert ended.name == "stop"
    assert not heartbeat.done()  # its owner stops it later
    heartbeat.cancel()
    await asyncio.gather(heartbeat, return_exceptions=True)
    assert log == ["heartbeat started", "heartbeat cleaned up"]


async def test_a_kept_task_that_fails_is_reported() -> None:
    go = asyncio.Event()
    loop = asyncio.create_task(_fail(go, KeyError("x")))
    waiter = asyncio.create_task(first_to_end({"stop": asyncio.Event().wait(), "sweeper": loop}, keep={"sweeper"}))
    go.set()
    ended = await waiter
    assert ended.message == "sweeper stopped early: KeyError: 'x'"


async def test_a_failure_wins_over_a_return_at_the_same_moment() -> None:
    stop = asyncio.Event()
    go = asyncio.Event()
    failing = asyncio.create_task(_fail(go, OSError("gone")))
    stopping = asyncio.create_task(stop.wait())
    stop.set()
    go.set()
    await asyncio.gather(stopping, failing, return_exceptions=True)  # both done before anyone looks
    ended = await first_to_end({"stop": stopping, "reconciler": failing})
    assert ended.name == "reconciler" and ended.message == "reconciler stopped early: OSError: gone"


async def test_cancelling_the_caller_cancels_and_awaits_the_tasks() -> None:
    log: list[str] = []
    waiter = asyncio.create_task(first_to_end({"a": _forever(log, "a"), "b": _forever(log, "b")}))
    await async_wait_until(lambda: len(log) == 2, what="both tasks to start")
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert sorted(log) == ["a cleaned up", "a started", "b cleaned up", "b started"]


async def test_nothing_to_wait_for_is_a_programming_error() -> None:
    with pytest.raises(ValueError):
        await first_to_end({})
