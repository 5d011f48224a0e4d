"""What ``ciadm logs`` shows of job output on a terminal (ciadm.escape)."""

from __future__ import annotations

import pytest

from common.escape import escape_controls


@pytest.mark.parametrize(("raw", "shown"), [
    (b"plain text, caf\xc3\xa9\tand a tab", b"plain text, caf\xc3\xa9\tand a tab"),
    (b"\x1b[1;31mbold red\x1b[0m \x1b[38;5;208m\x1b[m", b"\x1b[1;31mbold red\x1b[0m \x1b[38;5;208m\x1b[m"),
    (b"\x1b[2J\x1b[H", b"\\x1b[2J\\x1b[H"),  # clear screen, cursor home
    (b"\x1b[5A", b"\\x1b[5A"),  # cursor up: would overwrite earlier lines
    (b"\x1b]0;title\x07", b"\\x1b]0;title\\x07"),  # window title
    (b"\x1b]52;c;ZXZpbA==\x1b\\", b"\\x1b]52;c;ZXZpbA==\\x1b\\"),  # clipboard write, ST-terminated
    (b"done\rPASSED", b"done\\x0dPASSED"),  # carriage-return overprint
    (b"bell\x07 back\x08 del\x7f", b"bell\\x07 back\\x08 del\\x7f"),
    ("c1 csi \u009b2J nel \u0085".encode(), b"c1 csi \\x9b2J nel \\x85"),  # C1 controls as UTF-8
    (b"8-bit csi \x9b2J, not utf-8 \xff", b"8-bit csi \\x9b2J, not utf-8 \\xff"),
    (b"\x1b[31;1", b"\\x1b[31;1"),  # an unfinished sequence is not a colour
])
def test_controls_are_escaped_and_colours_kept(raw: bytes, shown: bytes) -> None:
    assert escape_controls(raw) == shown
