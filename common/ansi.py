"""Terminal escape sequences in job output: how to find them, and text without them.

Job output is hostile input: ``dashboard.ansi`` renders its colours as HTML
and shows every other control character; ``strip_ansi`` gives the plain text
of a line for one-line notes (the dashboard's "first failing line").
"""

from __future__ import annotations

import re

ESCAPES = re.compile(
    r"\x1b\[([0-9;:?<=>]*)[ -/]*([@-~])"  # CSI: parameters, intermediates, final byte
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?"  # OSC ... BEL or ST (an unterminated one runs to the end)
    r"|\x1b[@-Z\\-_]?"  # any other escape (or a lone ESC)
)
CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x80-\x9f]")  # every control character but tab and newline


def overwritten(text: str) -> str:
    """What a terminal shows of a line with carriage returns: the text after the last one."""
    if "\r" not in text:
        return text
    return text.rstrip("\r").rsplit("\r", 1)[-1]


def strip_ansi(text: str) -> str:
    """The text without escape sequences or control characters."""
    return CONTROLS.sub("", ESCAPES.sub("", overwritten(text)))
