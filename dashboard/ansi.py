"""Log text to HTML: ANSI colours become classes, everything else is escaped.

Log bytes come from whatever a job printed, so they are hostile input. The
only markup in the output is ``<span class="...">`` with class names chosen
here from a fixed set; every character of the text is escaped (``& < > " '``).
What a terminal would do with the rest is shown, not obeyed:

* SGR (``ESC [ ... m``): bold, dim, italic, underline, strike-through and the
  16 colours; 256-colour and true-colour values are shown as the nearest of
  the 16 (the theme picks them, so they stay readable in dark and light).
* Other CSI sequences (cursor moves, erase line) and OSC sequences (titles,
  hyperlinks - never followed) are dropped.
* A carriage return overwrites the line, as in a terminal: the text after the
  last one is shown (progress bars show their final state).
* Other control characters are shown as their Unicode pictures (U+2400...).

Styles carry from one line to the next (a colour set on one line and reset
lines later), per ``AnsiRenderer``.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass, replace

from common.ansi import CONTROLS as _CONTROLS
from common.ansi import ESCAPES as _ESCAPES
from common.ansi import overwritten

_NEEDS_WORK = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x80-\x9f]")  # anything but plain text and tabs
# The xterm palette, to map 256-colour and true-colour values onto the 16 classes.
_PALETTE = (
    (0, 0, 0), (205, 0, 0), (0, 205, 0), (205, 205, 0), (0, 0, 238), (205, 0, 205), (0, 205, 205), (229, 229, 229),
    (127, 127, 127), (255, 0, 0), (0, 255, 0), (255, 255, 0), (92, 92, 255), (255, 0, 255), (0, 255, 255),
    (255, 255, 255),
)


def escape(text: str) -> str:
    """HTML-escape text for an element's content or a quoted attribute."""
    return html.escape(text, quote=True)


def _picture(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code == 0x7F:
        return "\u2421"
    if code < 0x20:
        return chr(0x2400 + code)
    return "\ufffd"  # C1 controls have no picture


def nearest16(red: int, green: int, blue: int) -> int:
    """The index of the palette colour closest to an RGB value."""
    return min(range(16), key=lambda i: sum((a - b) ** 2 for a, b in zip(_PALETTE[i], (red, green, blue), strict=True)))


def _from256(n: int) -> int:
    if n < 16:
        return n
    if n < 232:
        n -= 16
        levels = (0, 95, 135, 175, 215, 255)
        return nearest16(levels[n // 36], levels[n // 6 % 6], levels[n % 6])
    grey = 8 + (n - 232) * 10
    return nearest16(grey, grey, grey)


@dataclass(frozen=True)
class Style:
    """The SGR state: what a span of text looks like."""

    fg: int | None = None  # 0..15
    bg: int | None = None
    bold: bool = False
    dim: bool = False
    italic: bool = False
    underline: bool = False
    strike: bool = False

    def classes(self) -> str:
        names = [name for name, on in (("a-b", self.bold), ("a-d", self.dim), ("a-i", self.italic),
                                       ("a-u", self.underline), ("a-s", self.strike)) if on]
        if self.fg is not None:
            names.append(f"f{self.fg}")
        if self.bg is not None:
            names.append(f"b{self.bg}")
        return " ".join(names)


PLAIN = Style()


def apply_sgr(style: Style, params: str) -> Style:
    """The style after one SGR sequence's parameters (``"1;31"``; empty = reset)."""
    codes = [int(p) if p.isdigit() else 0 for p in re.split(r"[;:]", params)] if params else [0]
    i = 0
    while i < len(codes):
        code = codes[i]
        if code == 0:
            style = PLAIN
        elif code == 1:
            style = replace(style, bold=True)
        elif code == 2:
            style = replace(style, dim=True)
        elif code == 3:
            style = replace(style, italic=True)
        elif code == 4:
            style = replace(style, underline=True)
        elif code == 9:
            style = replace(style, strike=True)
        elif code == 22:
            style = replace(style, bold=False, dim=False)
        elif code == 23:
            style = replace(style, italic=False)
        elif code == 24:
            style = replace(style, underline=False)
        elif code == 29:
            style = replace(style, strike=False)
        elif 30 <= code <= 37:
            style = replace(style, fg=code - 30)
        elif 90 <= code <= 97:
            style = replace(style, fg=code - 90 + 8)
        elif 40 <= code <= 47:
            style = replace(style, bg=code - 40)
        elif 100 <= code <= 107:
            style = replace(style, bg=code - 100 + 8)
        elif code == 39:
            style = replace(style, fg=None)
        elif code == 49:
            style = replace(style, bg=None)
        elif code in (38, 48):
            colour, used = _extended(codes[i + 1:])
            i += used
            if colour is not None:
                style = replace(style, fg=colour) if code == 38 else replace(style, bg=colour)
        i += 1
    return style


def _extended(rest: list[int]) -> tuple[int | None, int]:
    """A ``38;5;n`` / ``38;2;r;g;b`` colour: (palette index, parameters used)."""
    if len(rest) >= 2 and rest[0] == 5:
        return _from256(min(rest[1], 255)), 2
    if len(rest) >= 4 and rest[0] == 2:
        return nearest16(*(min(v, 255) for v in rest[1:4])), 4
    return None, len(rest)


class AnsiRenderer:
    """Renders lines of one log to HTML, carrying the SGR state from line to line."""

    def __init__(self) -> None:
        self.style = PLAIN

    def line(self, text: str) -> str:
        """One line (no newline) as HTML."""
        if self.style is PLAIN and not _NEEDS_WORK.search(text):
            return escape(text)  # the common case: plain text
        text = overwritten(text)
        out: list[str] = []
        pos = 0
        for match in _ESCAPES.finditer(text):
            self._text(out, text[pos:match.start()])
            pos = match.end()
            if match.group(2) == "m":
                self.style = apply_sgr(self.style, match.group(1) or "")
        self._text(out, text[pos:])
        return "".join(out)

    def _text(self, out: list[str], text: str) -> None:
        if not text:
            return
        safe = escape(_CONTROLS.sub(_picture, text))
        classes = self.style.classes()
        out.append(f'<span class="{classes}">{safe}</span>' if classes else safe)

