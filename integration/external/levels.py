"""The four participation levels of a downstream repository (the server's word, never the caller's).

    L1  receives the upstream's events (dispatch only)
    L2  L1 + its results are accepted and shown (never blocking)
    L3  L2 + re-runs (a new run_attempt) and its queue / execution times are shown
    L4  L3 + its results are posted on the upstream commit as a check run or commit status
"""

from __future__ import annotations

import enum


class Level(enum.IntEnum):
    L1 = 1
    L2 = 2
    L3 = 3
    L4 = 4

    @classmethod
    def parse(cls, text: str) -> Level:
        """``L1``..``L4`` (case-insensitive); ``ValueError`` naming the choices otherwise."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            raise ValueError(f"{text!r} is not a level: use L1, L2, L3 or L4") from None

    @property
    def takes_results(self) -> bool:
        return self >= Level.L2

    @property
    def takes_reruns(self) -> bool:
        """A new ``run_attempt`` starts a fresh record; its times are shown."""
        return self >= Level.L3

    @property
    def posts_upstream(self) -> bool:
        return self >= Level.L4
