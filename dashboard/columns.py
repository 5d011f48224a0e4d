"""The matrix's extension point: column sources beyond Solstice's own jobs.

Out-of-tree CI results (issue 22), greenness (later) and the like add columns
to the repository matrix (one per ``ExternalResult.column``) and entries to a
pull request's "external CI" section by registering a ``ColumnSource`` with
the dashboard (``Dashboard(..., columns=[source])``)::

    class DocsBuild:
        name = "docs"
        async def results(self, forge, repo, shas):
            return {sha: [ExternalResult("docs (ext)", "succeeded", "https://...")] for sha in shas}

A source is asked once per page for the commits on it; it must answer fast
(it runs within the page's time) and should raise ``ColumnUnavailable`` (the
page then says so) rather than hang.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from common.errors import SolsticeError

RESULT_STATES = ("queued", "running", "succeeded", "failed", "cancelled", "errored")


class ColumnUnavailable(SolsticeError):
    """A column source cannot answer now; the message is shown on the page."""


@dataclass(frozen=True)
class ExternalResult:
    """One result of another system for one commit: its column, its state, where to see more."""

    column: str  # the column's title ("docs (ext)")
    state: str  # one of RESULT_STATES
    url: str = ""  # details or artifact link; only http(s) links are shown
    summary: str = ""  # shown on hover/focus
    label: str = ""  # a few characters shown in the cell beside the state's icon (greenness: the degree)

    def __post_init__(self) -> None:
        if self.state not in RESULT_STATES:
            raise ValueError(f"an external result's state must be one of {', '.join(RESULT_STATES)}, "
                             f"not {self.state!r}")
        if not self.column:
            raise ValueError("an external result needs a column title")

    @property
    def safe_url(self) -> str:
        return self.url if self.url.lower().startswith(("https://", "http://")) else ""


class ColumnSource(Protocol):
    """Results of one other system, by commit."""

    name: str  # for messages ("docs builder unavailable: ...")

    async def results(self, forge: str, repo: str, shas: Sequence[str]) -> Mapping[str, Sequence[ExternalResult]]:
        """The results for each of ``shas`` (commits it has none for may be absent)."""
        ...


class RefNotes(Protocol):
    """A column source that also has a line or two to say above a branch's matrix (greenness: its last green)."""

    async def ref_notes(self, forge: str, repo: str, ref: str) -> Sequence[str]:
        """Plain-text lines (escaped when shown); ``ColumnUnavailable`` when it cannot answer."""
        ...
