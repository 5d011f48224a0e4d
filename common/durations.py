"""Human durations (``90s``, ``30m``, ``2h``, ``1h30m``, ``500ms``) to seconds and back."""

from __future__ import annotations

import re

from common.errors import DurationError

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+")


def parse_duration(text: str) -> float:
    """Return the number of seconds in ``text``; raise DurationError if malformed.

    A duration is one or more ``<number><unit>`` parts with units ``ms``, ``s``,
    ``m``, ``h`` or ``d`` (``1h30m``). It must be greater than zero.
    """
    if not isinstance(text, str) or not _WHOLE.fullmatch(text):
        raise DurationError(
            f"invalid duration {text!r}: expected a number with a unit, "
            "like 90s, 30m, 2h or 1h30m"
        )
    seconds = sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))
    if seconds <= 0:
        raise DurationError(f"invalid duration {text!r}: must be greater than zero")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest text that ``parse_duration`` reads back as ``seconds``."""
    if seconds <= 0:
        raise DurationError(f"cannot format a non-positive duration ({seconds})")
    millis = round(seconds * 1000)
    if millis % 1000:
        return f"{millis}ms"
    whole = millis // 1000
    out = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, whole = divmod(whole, size)
        if count:
            out.append(f"{count}{unit}")
    return "".join(out)
