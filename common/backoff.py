"""Capped exponential backoff with jitter, for anything that retries until a service is back."""

from __future__ import annotations

import random


class Backoff:
    """Capped exponential backoff with "equal jitter" (AWS architecture blog): each
    delay is uniform in [d/2, d] where d doubles from ``initial`` up to ``cap``."""

    def __init__(self, initial: float, cap: float) -> None:
        self.initial, self.cap, self.attempt = initial, cap, 0

    def next_delay(self) -> float:
        ceiling = min(self.cap, self.initial * (2**self.attempt))
        self.attempt += 1
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self.attempt = 0
