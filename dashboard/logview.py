"""Log lines as the job page's HTML: one ``<li id="L<seq>">`` per line, grouped by step.

The line number is the line's sequence in the attempt's log, so ``#L123``
permalinks stay valid as the log grows and across reloads, and the live view
resumes after the last number it has. A long line split in transit
(continuation chunks) is one line: chunks read together are joined here; a
chunk that arrives later (live) is sent with class ``cont`` and the page's
script appends it to the line before.
"""

from __future__ import annotations

from collections.abc import Iterable

from common.logbatch import STDERR, SYSTEM, LogLine
from dashboard.ansi import AnsiRenderer

Group = tuple[int, str]  # (step index, the HTML of its consecutive lines)


class LineRenderer:
    """Renders the lines of one attempt in order; colours carry from line to line."""

    def __init__(self) -> None:
        self._ansi = AnsiRenderer()

    def groups(self, lines: Iterable[LogLine]) -> list[Group]:
        """The lines as ``<li>`` items, grouped by consecutive step."""
        out: list[Group] = []
        step: int | None = None
        items: list[str] = []
        pending: LogLine | None = None
        text = ""
        for line in lines:
            if line.continuation and pending is not None:
                text += line.text()
                continue
            if pending is not None:
                step, items = self._flush(out, step, items, pending, text)
            pending, text = line, line.text()
        if pending is not None:
            step, items = self._flush(out, step, items, pending, text)
        if items and step is not None:
            out.append((step, "".join(items)))
        return out

    def _flush(self, out: list[Group], step: int | None, items: list[str], line: LogLine,
               text: str) -> tuple[int, list[str]]:
        if step is not None and line.step != step and items:
            out.append((step, "".join(items)))
            items = []
        items.append(self.item(line, text))
        return line.step, items

    def item(self, line: LogLine, text: str) -> str:
        kind = "s" if line.stream == SYSTEM else "e" if line.stream == STDERR else ""
        if line.continuation:
            kind = (kind + " cont").strip()
        cls = f' class="{kind}"' if kind else ""
        seq = line.sequence
        return f'<li id="L{seq}"{cls}><a href="#L{seq}" tabindex="-1">{seq}</a>{self._ansi.line(text)}</li>'

