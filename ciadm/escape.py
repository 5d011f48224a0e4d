"""Job output made safe to show on a terminal: control bytes escaped, colours kept.

A job prints whatever it likes; shown raw on the operator's terminal, an
escape sequence could move the cursor over earlier lines, retitle the
window, write the clipboard (OSC 52) or, on some terminals, answer back
into the shell. ``ciadm logs`` on a terminal therefore shows:

* ANSI SGR sequences (``ESC [ <digits;:> m``: colours, bold) as they are:
  they are what users expect to see;
* TAB as it is;
* every other C0 control (ESC, BEL, CR, BS, ...), DEL and the C1 controls
  (U+0080-U+009F, 8-bit CSI/OSC included) as ``\\xNN``;
* bytes that are not UTF-8 as ``\\xNN``.

Through a pipe or into a file the bytes stay exactly as the job printed them
(``ciadm logs JOB > out.log`` keeps the log); ``--raw`` always prints them so.
"""

from __future__ import annotations

import re

_SGR = r"\x1b\[[0-9;:]*m"
# An SGR sequence, or one character that must be escaped.
_UNSAFE = re.compile(rf"({_SGR})|[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def _escape(match: re.Match[str]) -> str:
    if match.group(1):
        return match.group(1)
    return f"\\x{ord(match.group(0)):02x}"


def escape_controls(content: bytes) -> bytes:
    """``content`` with everything but colours and tabs that a terminal would act on made visible."""
    text = content.decode("utf-8", "backslashreplace")
    return _UNSAFE.sub(_escape, text).encode("utf-8")
