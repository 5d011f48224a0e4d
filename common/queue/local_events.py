"""The single-node event bus: the ``solstice.events`` semantics, kept in a SQLite file.

``LocalEventBus`` is the single-node ``EventPublisher`` and the delivery side
of ``EventConsumer`` in one object. Each subscriber has a name and topic
bindings (``#``, ``job.#``, ``step.*.<job_id>``: AMQP topic rules on the
routing keys of ``common.queue.codec.event_routing_key``), like the durable
queue ``solstice.events.<name>`` it stands for. Subscriptions are stored, so
events published while a subscriber's process is down wait for it, as they
would in its RabbitMQ queue.

``publish`` writes one row per matching subscriber in one transaction and
returns once it is committed. A row is deleted only when the handler returns
``ACK``; ``REQUEUE`` hands it out again; a raising handler is retried and,
after ``max_attempts``, the row moves to the dead-letter table with the
reason (as do rows that cannot be decoded). Rows handed out when the process
died are handed out again on the next start, counting a failed attempt:
delivery is at-least-once and handlers deduplicate on ``event_id``. An event no subscriber binds is not
stored, exactly as RabbitMQ drops it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from common.queue.codec import decode_job_event, encode_job_event, event_routing_key
from common.queue.disposition import Action, handle_stored
from common.queue.errors import InvalidMessage, QueueError, QueueUnavailable
from common.queue.events import EventHandler
from common.queue.sqlite import QueueTable, SqliteQueueFile
from common.queue.topology import Topology
from common.rpc import jobs_pb2

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS event_subscriptions (
    subscriber TEXT NOT NULL,
    binding TEXT NOT NULL,
    PRIMARY KEY (subscriber, binding)
);
CREATE TABLE IF NOT EXISTS event_queue (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    subscriber TEXT NOT NULL,
    event_id TEXT NOT NULL,
    body BLOB NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,   -- failed handler calls so far
    in_flight INTEGER NOT NULL DEFAULT 0,
    enqueued_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS event_queue_ready ON event_queue (subscriber, in_flight, seq);
CREATE TABLE IF NOT EXISTS event_dead_letters (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    subscriber TEXT NOT NULL,
    event_id TEXT NOT NULL,
    body BLOB NOT NULL,
    reason TEXT NOT NULL,
    dead_at REAL NOT NULL
);
"""

TABLE = QueueTable(
    rows="event_queue",
    dead="event_dead_letters",
    kept=("subscriber", "event_id", "body"),
    dead_kept=("subscriber", "event_id", "body"),
)

DEFAULT_MAX_ATTEMPTS = 5


def topic_matches(binding: str, routing_key: str) -> bool:
    """AMQP topic matching: words split on ``.``; ``*`` is one word, ``#`` zero or more."""
    pattern, words = binding.split("."), routing_key.split(".")

    def match(p: int, w: int) -> bool:
        if p == len(pattern):
            return w == len(words)
        if pattern[p] == "#":
            return any(match(p + 1, skip) for skip in range(w, len(words) + 1))
        return w < len(words) and pattern[p] in ("*", words[w]) and match(p + 1, w + 1)

    return match(0, 0)


def validate_binding(binding: str) -> str:
    """Return ``binding`` if it is a topic pattern (non-empty words, wildcards alone in their word)."""
    words = binding.split(".")
    if not binding or any(not w or (("*" in w or "#" in w) and w not in ("*", "#")) for w in words):
        raise InvalidMessage(f"event binding {binding!r} is not a topic pattern like 'job.#' or 'step.*.<job_id>'")
    return binding


@dataclass(frozen=True)
class Subscription:
    """One subscriber of this process: the handler and what it binds."""

    name: str
    handler: EventHandler
    bindings: tuple[str, ...]
    prefetch: int


class LocalEventBus(SqliteQueueFile):
    """Single-node ``EventPublisher`` with durable per-subscriber delivery, in SQLite at ``path``.

    Lifetime: ``subscribe`` (any number, before ``start``), ``start()``,
    ``publish`` any time while started, ``stop()``. Also an async context manager.
    """

    what = "the event bus"
    schema = SCHEMA
    table = TABLE

    def __init__(self, path: str | Path, max_attempts: int = DEFAULT_MAX_ATTEMPTS) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        super().__init__(path)
        self.max_attempts = max_attempts
        self._subscriptions: dict[str, Subscription] = {}
        self._routes: dict[str, tuple[str, ...]] = {}  # every stored subscriber -> its bindings
        self._inflight: dict[str, set[asyncio.Task[None]]] = {}

    def subscribe(
        self, name: str, handler: EventHandler, bindings: tuple[str, ...] = ("#",), prefetch: int = 16
    ) -> None:
        """Deliver events matching ``bindings`` to ``handler`` (at most ``prefetch`` at a time)."""
        if self._db is not None:
            raise QueueError("subscribe before start(): the bus routes with the subscriptions it started with")
        Topology().event_queue(name)  # same name rules as the RabbitMQ queue
        if prefetch < 1:
            raise ValueError("prefetch must be at least 1")
        if not bindings:
            raise InvalidMessage(f"subscriber {name!r} needs at least one binding")
        self._subscriptions[name] = Subscription(name, handler, tuple(map(validate_binding, bindings)), prefetch)

    @property
    def in_flight(self) -> int:
        """Events handed to handlers and not yet settled."""
        return sum(len(tasks) for tasks in self._inflight.values())

    async def _prepare(self, db: aiosqlite.Connection) -> None:
        """Store this process's subscriptions; learn every stored subscriber's routes."""
        for sub in self._subscriptions.values():
            await db.execute("DELETE FROM event_subscriptions WHERE subscriber = ?", (sub.name,))
            await db.executemany(
                "INSERT INTO event_subscriptions (subscriber, binding) VALUES (?, ?)",
                [(sub.name, binding) for binding in sub.bindings],
            )
        cursor = await db.execute("SELECT subscriber, binding FROM event_subscriptions ORDER BY subscriber")
        routes: dict[str, list[str]] = {}
        for subscriber, binding in await cursor.fetchall():
            routes.setdefault(subscriber, []).append(binding)
        self._routes = {name: tuple(bindings) for name, bindings in routes.items()}
        self._inflight = {name: set() for name in self._subscriptions}

    async def publish(self, events: Sequence[jobs_pb2.JobEvent]) -> None:
        """Store ``events`` for every subscriber that binds them (one transaction)."""
        self._require_db()  # the routes are known only once started
        rows = []
        now = time.time()
        for event in events:
            body = encode_job_event(event)  # validates before anything is written
            key = event_routing_key(event)
            for subscriber, bindings in self._routes.items():
                if any(topic_matches(binding, key) for binding in bindings):
                    rows.append((subscriber, event.event_id, body, now))
        if not rows:
            return
        async with self._transaction() as db:
            await db.executemany(
                "INSERT INTO event_queue (subscriber, event_id, body, enqueued_at) VALUES (?, ?, ?, ?)", rows
            )
        self._wake.set()

    async def dead_letters(self) -> list[tuple[str, str, str]]:
        """``(subscriber, event_id, reason)`` of every dead letter, oldest first."""
        async with self._lock:
            cursor = await self._require_db().execute(
                "SELECT subscriber, event_id, reason FROM event_dead_letters ORDER BY seq"
            )
            return [(row[0], row[1], row[2]) for row in await cursor.fetchall()]

    def _running(self) -> set[asyncio.Task[None]]:
        return {task for tasks in self._inflight.values() for task in tasks}

    async def _dispatch_once(self) -> None:
        for sub in self._subscriptions.values():
            try:
                await self._hand_out(sub)
            except QueueUnavailable as err:
                log.error("local event bus: %s", err)

    async def _hand_out(self, sub: Subscription) -> None:
        running = self._inflight[sub.name]
        room = sub.prefetch - len(running)
        if room <= 0:
            return
        async with self._transaction() as db:
            cursor = await db.execute(
                "SELECT seq, event_id, body, attempts FROM event_queue WHERE subscriber = ? AND in_flight = 0 "
                "ORDER BY seq LIMIT ?",
                (sub.name, room),
            )
            rows = list(await cursor.fetchall())
            await db.executemany("UPDATE event_queue SET in_flight = 1 WHERE seq = ?", [(row[0],) for row in rows])
        for seq, event_id, body, attempts in rows:
            task = asyncio.create_task(self._deliver(sub, seq, event_id, body, attempts), name=f"event {event_id}")
            self._track(task, running)

    async def _deliver(self, sub: Subscription, seq: int, event_id: str, body: bytes, attempts: int) -> None:
        outcome = await handle_stored(lambda: sub.handler(decode_job_event(body)), attempts, self.max_attempts)
        await self._pause_after(outcome, f"{sub.name} on {event_id}")
        if outcome.retry and not outcome.deferred:
            log.warning("local event bus: %s failed on %s (attempt %d): %s",
                        sub.name, event_id, outcome.attempts, outcome.error)
        elif outcome.disposition is not None and outcome.disposition.action is Action.DEAD_LETTER:
            log.warning("event dead-lettered",
                        extra={"fields": {"event_id": event_id, "reason": outcome.disposition.reason}})
        async with self._transaction() as db:
            await TABLE.settle(db, seq, outcome)
