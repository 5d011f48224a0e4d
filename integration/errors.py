"""Errors of the forge integration.

    SolsticeError
    └── IntegrationError          the integration could not do what was asked
        ├── ForgeError            a forge API call failed
        │   ├── ForgeUnavailable  5xx, timeouts, network errors: worth retrying later
        │   │   └── ForgeRateLimited  403/429 rate limit: retry once ``retry_at`` has passed
        │   ├── ForgeRejected     4xx: the forge refused the request (``status``,
        │   │                     ``forge_message``); retrying the same call will not help
        │   └── UnsafeForgeUrl    a URL part would leave the repository's API path: not sent
        ├── ForgeAuthError        credentials are missing or unusable (no App key, ...)
        ├── PayloadError          a webhook body lacks a field its event needs (-> 400)
        ├── OrchestratorUnavailable  the orchestrator could not be asked to cancel or re-run jobs
        └── StoreError            the dedupe/report store failed
"""

from __future__ import annotations

from common.errors import SolsticeError


class IntegrationError(SolsticeError):
    """The forge integration failed."""


class ForgeError(IntegrationError):
    """A call to a forge API failed."""


class ForgeUnavailable(ForgeError):
    """The forge did not answer usefully (5xx, timeout, connection error); try again later.

    ``retry_at`` (unix time), when set, is the earliest time the forge said to come back.
    """

    def __init__(self, message: str, retry_at: float | None = None) -> None:
        super().__init__(message)
        self.retry_at = retry_at


class ForgeRateLimited(ForgeUnavailable):
    """The forge's rate limit refused the call (GitHub: 403 or 429); nothing was done.

    ``retry_at`` (unix time) is when the forge said to try again: its
    ``Retry-After``, its ``x-ratelimit-reset``, or a minute from the answer
    when it said neither (GitHub's advice for secondary limits).
    """

    retry_at: float

    def __init__(self, message: str, retry_at: float) -> None:
        super().__init__(message, retry_at)


class ForgeRejected(ForgeError):
    """The forge answered 4xx; ``forge_message`` is what it said."""

    def __init__(self, what: str, status: int, forge_message: str) -> None:
        super().__init__(f"{what}: the forge answered {status}: {forge_message}")
        self.status = status
        self.forge_message = forge_message


class UnsafeForgeUrl(ForgeError):
    """A path segment of a forge API URL is empty, ``.`` or ``..``: the request is not sent."""


class ForgeAuthError(IntegrationError):
    """Forge credentials are missing or cannot be used."""


class StoreError(IntegrationError):
    """The integration's store (dedupe keys, check-run ids) failed."""


class OrchestratorUnavailable(IntegrationError):
    """The orchestrator (AdminService) could not be asked to cancel or re-run jobs; try again later."""
