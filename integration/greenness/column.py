"""Greenness on the dashboard's matrix: a column with each commit's degree, a line with each queue's last green.

A ``dashboard.columns.ColumnSource`` (``results``) and a ``RefNotes``
(``ref_notes``) over the greenness store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from dashboard.columns import ColumnUnavailable, ExternalResult
from integration.errors import StoreError
from integration.greenness.model import WHOLE, QueueKey, Status
from integration.greenness.store import Delivery, SqlGreennessStore

COLUMN = "greenness"
HOOK_LOG = 200  # deliveries of the queue looked at for the hook lines
CELL_STATES = {Status.GREEN: "succeeded", Status.NOT_GREEN: "failed", Status.INCOMPLETE: "errored",
               Status.PENDING: "running"}


class GreennessColumn:
    """The matrix's greenness column and last-green line; ``api_url``: where the JSON and badge live."""

    name = "greenness"

    def __init__(self, store: SqlGreennessStore, api_url: str = "") -> None:
        self.store = store
        self.api_url = api_url.rstrip("/")

    async def results(self, forge: str, repo: str, shas: Sequence[str]) -> Mapping[str, Sequence[ExternalResult]]:
        try:
            verdicts = await self.store.verdicts_of(forge, repo, shas)
        except StoreError as err:
            raise ColumnUnavailable(str(err)) from err
        found: dict[str, list[ExternalResult]] = {}
        for v in verdicts:
            if v.sha in found:
                continue  # the same commit in two queues: the first (they judge the same jobs)
            degree = "not yet" if v.verdict.degree is None else f"{v.verdict.degree:.2f}"
            summary = f"degree {degree}" + "".join(f" · {r}" for r in v.verdict.reasons[:3])
            if v.verdict.carried_from:
                summary += f" · carried from {v.verdict.carried_from[:12]}"
            label = "" if v.verdict.degree is None else f"{v.verdict.degree:.2f}"
            found[v.sha] = [ExternalResult(COLUMN, CELL_STATES[v.verdict.status], self._url(v.queue), summary, label)]
        return found

    async def ref_notes(self, forge: str, repo: str, ref: str) -> Sequence[str]:
        """One line per scope of the queue: its last green commit (or that there is none)."""
        queue = QueueKey(forge, repo, ref)
        try:
            scopes = [WHOLE, *[p for p in await self.store.projects(queue) if p != WHOLE]]
            lines = []
            for project in scopes:
                state = await self.store.scope_state(queue, project)
                if state.head is None and project != WHOLE:
                    continue
                what = f"project {project}" if project else ref.removeprefix("refs/heads/")
                if state.last_green is None:
                    lines.append(f"Last green of {what}: none yet")
                    continue
                now = "green" if state.green else "not green now"
                lines.append(f"Last green of {what}: {state.last_green.sha[:12]} ({now})")
            return lines + await self._hook_notes(queue)
        except StoreError as err:
            raise ColumnUnavailable(str(err)) from err

    async def _hook_notes(self, queue: QueueKey) -> list[str]:
        """Per hook that followed the queue: its newest delivery, and the oldest one still waiting."""
        latest: dict[str, Delivery] = {}
        waiting: dict[str, Delivery] = {}
        for d in await self.store.deliveries("", HOOK_LOG, queue.text):
            latest.setdefault(d.hook, d)
            if d.state != "delivered":
                waiting[d.hook] = d  # newest first: the last one seen is the oldest waiting
        lines = []
        for hook, d in sorted(latest.items()):
            line = f"Hook {hook}: transition {d.number} {d.state}"
            if d.delivered_at:
                line += f" at {datetime.fromtimestamp(d.delivered_at, UTC):%Y-%m-%d %H:%M:%SZ}"
            stuck = waiting.get(hook)
            if stuck is not None:
                line += (f"; transition {stuck.number} waits after {stuck.attempts} attempt(s)"
                         + (f": {stuck.last_error[:120]}" if stuck.last_error else ""))
            lines.append(line)
        return lines

    def _url(self, queue: QueueKey) -> str:
        if not self.api_url:
            return ""
        return f"{self.api_url}/api/v1/queues/{queue.forge}/{queue.repo}/{queue.ref}/last-green"
