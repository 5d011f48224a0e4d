"""What a message handler tells the queue to do with the message it was given."""

from __future__ import annotations

import enum
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import ClassVar

from common.errors import ServiceUnavailable
from common.queue.errors import PoisonMessage


class Action(enum.Enum):
    ACK = "ack"  # done (for a job: the claim is durable); remove the message
    REQUEUE = "requeue"  # not now: deliver it again (to this node or another)
    DEAD_LETTER = "dead-letter"  # never: move it to the dead-letter queue with ``reason``


@dataclass(frozen=True)
class Disposition:
    """The outcome of one handler call; use ``ACK``, ``REQUEUE`` or ``dead_letter(reason)``."""

    action: Action
    reason: str = ""

    ACK: ClassVar[Disposition]
    REQUEUE: ClassVar[Disposition]

    @classmethod
    def dead_letter(cls, reason: str) -> Disposition:
        if not reason:
            raise ValueError("a dead letter needs a reason the user can read")
        return cls(Action.DEAD_LETTER, reason)


Disposition.ACK = Disposition(Action.ACK)
Disposition.REQUEUE = Disposition(Action.REQUEUE)


def unsettled_reason(attempts: int) -> str:
    """The dead-letter reason of a message whose last delivery was never settled (the node died or stopped)."""
    return (
        f"gave up after {attempts} attempts; the last delivery was never settled "
        "(the node stopped, crashed or lost its connection while handling it)"
    )


@dataclass(frozen=True)
class HandlerOutcome:
    """What became of one handler call: a disposition, or (``retry``) put the message back with
    ``attempts``; ``deferred``: after a pause (``OutagePause``), the attempts as they were."""

    disposition: Disposition | None
    attempts: int
    error: Exception | None = None
    deferred: bool = False  # the handler met an outage (``ServiceUnavailable``): not the message's fault

    @property
    def retry(self) -> bool:
        return self.disposition is None


async def call_handler(call: Callable[[], Awaitable[Disposition]], attempts: int, max_attempts: int) -> HandlerOutcome:
    """Run one handler call with the retry policy every queue back-end shares.

    ``attempts`` counts the failed handler calls so far. A handler that raises is retried
    (one more attempt) until ``max_attempts``, then its message is dead-lettered with the last
    error; ``PoisonMessage`` dead-letters at once. A handler that met an outage
    (``ServiceUnavailable``: the store or the broker cannot be reached) is retried with its
    attempts unchanged, however long the outage lasts: the message is not at fault, and
    dead-lettering it would lose a job nobody stored.
    """
    try:
        return HandlerOutcome(await call(), attempts)
    except PoisonMessage as err:
        return HandlerOutcome(Disposition.dead_letter(err.reason), attempts)
    except ServiceUnavailable as err:
        return HandlerOutcome(None, attempts, err, deferred=True)
    except Exception as err:  # noqa: BLE001 - a failing handler is retried, then dead-lettered
        attempts += 1
        if attempts >= max_attempts:
            reason = f"the handler failed {attempts} times; last error: {type(err).__name__}: {err}"
            return HandlerOutcome(Disposition.dead_letter(reason), attempts, err)
        return HandlerOutcome(None, attempts, err)


async def handle_stored(
    call: Callable[[], Awaitable[Disposition]], attempts: int, max_attempts: int
) -> HandlerOutcome:
    """``call_handler`` for a stored message delivered again with ``attempts`` failed calls so far.

    A message whose attempts were all used up by deliveries that never settled
    (each counted when its node started again) is dead-lettered without calling
    the handler, so one that kills the node cannot loop forever.
    """
    if attempts >= max_attempts:
        return HandlerOutcome(Disposition.dead_letter(unsettled_reason(attempts)), attempts)
    return await call_handler(call, attempts, max_attempts)


class OutagePause:
    """How long a consumer waits before putting back a message whose handler met an outage.

    One per consumer. The pause grows with the outage, not with the number of messages
    meeting it: about half the time since the first handler call of this outage met it,
    at least ``initial`` and at most ``cap`` s (jittered down to half). So waiting messages
    are tried a bounded number of times however long the outage lasts, and the first call
    after it ends comes within half its length (at most ``cap``). A handler call that met
    no outage ends the outage.
    """

    def __init__(self, initial: float = 0.2, cap: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.initial = initial
        self.cap = cap
        self._clock = clock
        self._since: float | None = None

    def next_delay(self) -> float:
        now = self._clock()
        if self._since is None:
            self._since = now
        ceiling = min(self.cap, max(self.initial, (now - self._since) / 2))
        return random.uniform(ceiling / 2, ceiling)

    def note(self, outcome: HandlerOutcome) -> None:
        """A handler call ended: one that met no outage ends the outage."""
        if not outcome.deferred:
            self.reset()

    def reset(self) -> None:
        self._since = None
