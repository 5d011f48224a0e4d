"""Log store errors::

    SolsticeError
    └── LogStoreError
        ├── LogClosed     append to a finished log (or a store that was shut down)
        ├── LogGap        a batch skips sequences; carries what is stored
        ├── LogCorrupt    a log file is not ours or is damaged beyond a torn tail
        └── LogNotFound   no log for that job attempt
"""

from __future__ import annotations

from common.errors import SolsticeError


class LogStoreError(SolsticeError):
    """A job log cannot be read or written."""


class LogClosed(LogStoreError):
    """The log has its end marker; nothing more can be appended."""


class LogGap(LogStoreError):
    """A batch begins after the next expected sequence; resend from ``stored + 1``."""

    def __init__(self, message: str, stored: int) -> None:
        super().__init__(message)
        self.stored = stored


class LogCorrupt(LogStoreError):
    """A log file is unreadable."""


class LogNotFound(LogStoreError, LookupError):
    """There is no log for the job attempt."""
