"""Job output made safe to show on a terminal: control bytes escaped, colours kept.

A job prints whatever it likes; shown raw on the operator's terminal, an
escape sequence could move the cursor over earlier lines, retitle the
window, write the clipboard (OSC 52) or, on some terminals, answer back
into the shell. ``ciadm logs`` and ``cidev run`` on a terminal therefore show:

* ANSI SGR sequences (``ESC [ <digits;:> m``: colours, bold) as they are:
  they are what users expect to see;
* TAB as it is;
* every other C0 control (ESC, BEL, CR, BS, ...), DEL and the C1 controls
  (U+0080-U+009F, 8-bit CSI/OSC included) as ``\\xNN``;
* bytes that are not UTF-8 as ``\\xNN``.

Through a pipe or into a file the bytes stay exactly as the job printed them
(``ciadm logs JOB > out.log`` keeps the log); ``--raw`` always prints them so.

``escape_block`` does the same to a block of whole lines, keeping their
newlines, with one pass over the block (and none at all for the usual block
of printable ASCII).
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


# The same, but a newline passes: it separates the lines of a block.
_UNSAFE_IN_BLOCK = re.compile(rf"({_SGR})|[\x00-\x08\x0b-\x1f\x7f-\x9f]")
# Any byte that may need a look: controls but TAB and LF, DEL, and everything not ASCII.
_SUSPECT = re.compile(rb"[\x00-\x08\x0b-\x1f\x7f-\xff]")


def _escaped(content: bytes, pattern: re.Pattern[str]) -> bytes:
    text = content.decode("utf-8", "backslashreplace")
    return pattern.sub(_escape, text).encode("utf-8")


def escape_controls(content: bytes) -> bytes:
    """``content`` with everything but colours and tabs that a terminal would act on made visible."""
    return _escaped(content, _UNSAFE)


def escape_block(block: bytes) -> bytes:
    """``escape_controls`` of each line of ``block``, its newlines kept."""
    if _SUSPECT.search(block) is None:
        return block
    return _escaped(block, _UNSAFE_IN_BLOCK)
