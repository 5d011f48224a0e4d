"""Secret masking: every secret value, and its common encodings, becomes ``***``.

The runner masks before a log line leaves the VM and the orchestrator masks
again before it stores the line; the same ``Masker`` is installed as a logging
filter so no secret reaches a service log either.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
import urllib.parse
from collections.abc import Iterable

MASK = "***"

# Shorter values would mask ordinary words and digits all over a log; CI
# systems commonly refuse to mask them (and tell the user so).
MIN_SECRET_LENGTH = 4


def _encodings(value: str) -> set[str]:
    raw = value.encode()
    forms = {value}
    for enc in (base64.b64encode, base64.urlsafe_b64encode):
        text = enc(raw).decode()
        forms.add(text)
        forms.add(text.rstrip("="))
    # Inside a longer base64 blob the value's encoding depends on its offset
    # modulo 3 and on its neighbours; only the characters whose six bits all
    # come from the value are stable, so mask those for each of the 3 offsets.
    for shift in range(3):
        text = base64.b64encode(b"\0" * shift + raw + b"\0\0").decode()
        first = -(-8 * shift // 6)
        last = 8 * (shift + len(raw)) // 6
        if last - first >= MIN_SECRET_LENGTH:
            forms.add(text[first:last])
    forms.add(urllib.parse.quote(value, safe=""))
    forms.add(raw.hex())
    return {f for f in forms if len(f) >= MIN_SECRET_LENGTH}


class Masker:
    """Replaces registered secret values (plain, base64, URL-encoded, hex).

    Thread-safe; secrets can be added while lines are being masked.
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._forms: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._bpattern: re.Pattern[bytes] | None = None
        self.longest = 0  # bytes of the longest form masked; 0 when there is none
        self.add(*secrets)

    def add(self, *secrets: str) -> None:
        """Register secret values; values shorter than MIN_SECRET_LENGTH are ignored."""
        with self._lock:
            before = len(self._forms)
            for secret in secrets:
                if secret and len(secret) >= MIN_SECRET_LENGTH:
                    self._forms |= _encodings(secret)
            if len(self._forms) == before:
                return  # nothing new (a node registers the same secrets for every job that has them)
            # Longest first so a value masks whole before any part of it.
            ordered = sorted(self._forms, key=len, reverse=True)
            if ordered:
                self._pattern = re.compile("|".join(map(re.escape, ordered)))
                self._bpattern = re.compile(
                    b"|".join(re.escape(f.encode()) for f in ordered)
                )
                self.longest = max(len(f.encode()) for f in ordered)

    def __bool__(self) -> bool:
        return bool(self._forms)

    def mask(self, text: str) -> str:
        pattern = self._pattern
        return pattern.sub(MASK, text) if pattern else text

    def spans_bytes(self, data: bytes) -> list[tuple[int, int]]:
        """(start, end) of every masked form in ``data``, as ``mask_bytes`` would replace them."""
        pattern = self._bpattern
        return [m.span() for m in pattern.finditer(data)] if pattern else []

    def mask_bytes(self, data: bytes) -> bytes:
        """Mask raw log bytes without decoding them (lines need not be UTF-8)."""
        pattern = self._bpattern
        return pattern.sub(MASK.encode(), data) if pattern else data


class MaskingFilter(logging.Filter):
    """A logging filter that masks the rendered message of every record."""

    def __init__(self, masker: Masker) -> None:
        super().__init__()
        self.masker = masker

    def filter(self, record: logging.LogRecord) -> bool:
        if self.masker:
            record.msg = self.masker.mask(record.getMessage())
            record.args = None
        return True
