"""What a message handler tells the queue to do with the message it was given."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import ClassVar


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
