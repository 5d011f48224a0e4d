"""Pages of log lines as text, one block per page: what ``ciadm logs``, ``cidev run``
and the raw HTTP log write.

A page (``admin_pb2.LogPage``, or a ``runner_pb2.LogBatch``: the same fields)
holds runs of lines whose contents are joined by ``\\n`` already, so a run
becomes text with a few bytes operations over the whole run - a prefix
inserted after each newline, one masking regex over the run - never a Python
call per line. Solstice's own lines (stream SYSTEM) start with ``## ``; a
chunk marked as a continuation is joined to the line before it (a long line
split in transit). Every line ends with ``\\n``, but the newline of a page's
last line is written with the next page (or by ``finish``): that page may
begin with the rest of the line. A follower calls ``finish`` when the log has
been quiet a while (a keepalive), so the last line does not wait for the next;
a rest of it that still comes then starts a line of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

from common.rpc import admin_pb2

SYSTEM_PREFIX = b"## "


class Run(Protocol):
    """A run of a page (read only, so ``LogRun``'s enum-typed stream fits)."""

    @property
    def stream(self) -> int: ...

    @property
    def lines(self) -> int: ...

    @property
    def data(self) -> bytes: ...


class Page(Protocol):
    """What ``TextBlocks`` reads of a page: ``LogPage`` and ``LogBatch`` both have it."""

    first_sequence: int

    @property
    def runs(self) -> Sequence[Run]: ...

    @property
    def continuations(self) -> Iterable[int]: ...


class TextBlocks:
    """Renders consecutive pages of one log as text.

    ``line_prefix`` starts every line (``cidev run``'s ``[job] | ``; a system
    line gets ``system_prefix`` after it instead of before the text), ``mask``
    is applied to each run's data before anything is added (it must keep the
    newlines: ``common.logbatch.mask_data``).
    """

    def __init__(self, line_prefix: bytes = b"", system_prefix: bytes = SYSTEM_PREFIX,
                 mask: Callable[[bytes], bytes] | None = None) -> None:
        self.line_prefix = line_prefix
        self.system_prefix = system_prefix
        self.mask = mask
        self._open = False  # a line was written whose newline is still owed

    @property
    def pending_newline(self) -> bool:
        return self._open

    def page(self, page: Page) -> bytes:
        """The text of ``page``'s lines (and the newline owed to the page before)."""
        out: list[bytes] = []
        conts = set(page.continuations) if page.continuations else None
        seq = page.first_sequence
        for run in page.runs:
            self.run(out, run, seq, conts)
            seq += run.lines
        return b"".join(out)

    def run(self, out: list[bytes], run: Run, first_sequence: int, conts: set[int] | None) -> None:
        """Append the text of ``run`` (lines from ``first_sequence``) to ``out``."""
        data = self.mask(run.data) if self.mask is not None else run.data
        prefix = self.line_prefix + self.system_prefix if run.stream == admin_pb2.LOG_STREAM_SYSTEM \
            else self.line_prefix
        if conts and any(first_sequence <= s < first_sequence + run.lines for s in conts):
            self._with_continuations(out, data, prefix, first_sequence, conts)
            return
        if self._open:
            out.append(b"\n")
        if prefix:
            out.append(prefix)
            data = data.replace(b"\n", b"\n" + prefix)
        out.append(data)
        self._open = True

    def _with_continuations(self, out: list[bytes], data: bytes, prefix: bytes, seq: int, conts: set[int]) -> None:
        for line in data.split(b"\n"):
            if seq in conts and self._open:
                out.append(line)  # the rest of the line before: no newline, no prefix
            else:
                if self._open:
                    out.append(b"\n")
                out.append(prefix + line)
            self._open = True
            seq += 1

    def finish(self) -> bytes:
        """The newline owed to the last line (empty when none is)."""
        if not self._open:
            return b""
        self._open = False
        return b"\n"

    def line(self, text: bytes) -> bytes:
        """One whole line of our own (a note) after what was written: the newline owed first."""
        return self.finish() + text + b"\n"
