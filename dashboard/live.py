"""``/jobs/<id>/live``: an attempt's log and state as server-sent events, until it has ended.

    event: lines   id: <last sequence>   data: {"g": [[step, "<li ...>..."], ...]}
    event: state                         data: {"state": "running", "terminal": false, "head": "...",
                                                "steps": [[index, "running", "<summary html>"], ...]}
    event: notice                        data: {"text": "..."}  (the log cannot be followed here)
    event: end                           data: {"state": "succeeded"}

The log is followed from the sequence after ``Last-Event-ID`` (the browser
sends the id of the last ``lines`` event when it reconnects) or ``?after=``
(the last line the page was rendered with), so a reconnect neither loses
nor repeats a line. Lines are escaped and coloured here (``LineRenderer``);
the page inserts them as they are. The state is read from the store every
``POLL`` seconds and sent when it changed. ``end`` comes once the log has
ended (or the attempt finished without one) and the attempt is final; the
script then closes the stream. Every task here is the request's own and
ends with it (or when the server shuts down).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from dashboard.logsource import LogError, LogMissing
from dashboard.logview import LineRenderer
from dashboard.pages import job as job_page
from dashboard.pages.layout import Viewer
from orchestrator.store import JobRecord, StoreError

if TYPE_CHECKING:
    from dashboard.app import Backing, Dashboard

log = logging.getLogger(__name__)

POLL = 1.0  # seconds between looks at the job's state (and for a log that does not exist yet)
KEEPALIVE = 15.0  # a comment this often keeps proxies from closing a quiet stream
RETRY_MS = 2000  # how soon a browser reconnects
_SEQ = re.compile(r"[0-9]{1,15}")


class _Sender:
    """Writes events to the response, one at a time."""

    def __init__(self, response: web.StreamResponse) -> None:
        self.response = response
        self._lock = asyncio.Lock()

    async def send(self, event: str, data: dict[str, Any], event_id: int | None = None) -> None:
        text = f"event: {event}\n" + (f"id: {event_id}\n" if event_id is not None else "")
        text += f"data: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n"
        async with self._lock:
            await self.response.write(text.encode())

    async def comment(self, text: str) -> None:
        async with self._lock:
            await self.response.write(f": {text}\n\n".encode())


def _start(request: web.Request) -> int:
    """The last sequence the browser has: ``Last-Event-ID`` (a reconnect), else ``?after=``."""
    for text in (request.headers.get("Last-Event-ID", ""), request.query.get("after", "")):
        if text:
            if not _SEQ.fullmatch(text):
                raise web.HTTPBadRequest(text="Last-Event-ID and after must be log sequence numbers\n")
            return int(text)
    return 0


async def stream(dash: Dashboard, backing: Backing, job: JobRecord, request: web.Request) -> web.StreamResponse:
    attempt_text = request.query.get("attempt", "")
    attempt = int(attempt_text) if _SEQ.fullmatch(attempt_text) else job.attempt if not attempt_text else 0
    if not 1 <= attempt <= job.attempt:
        raise web.HTTPBadRequest(text=f"attempt must be 1..{job.attempt}\n")
    after = _start(request)
    viewer = await dash.viewer(request)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8",
                                           "Cache-Control": "no-cache, no-transform", "X-Accel-Buffering": "no"})
    await response.prepare(request)
    sender = _Sender(response)
    await response.write(f"retry: {RETRY_MS}\n\n".encode())
    follow = _Follow(dash, backing, job.job_id, attempt, viewer, sender)
    tasks = {asyncio.create_task(follow.state(), name=f"live state {job.job_id}"),
             asyncio.create_task(follow.log(after), name=f"live log {job.job_id}")}
    closing = asyncio.create_task(dash.closing.wait(), name="server closing")
    try:
        while tasks:
            done, _ = await asyncio.wait({*tasks, closing}, return_when=asyncio.FIRST_COMPLETED)
            if closing in done:
                return response
            for task in done:
                tasks.discard(task)
                task.result()  # a failure ends the stream (the browser reconnects)
        await sender.send("end", {"state": follow.final})
    except (ConnectionError, asyncio.CancelledError):
        pass  # the browser went away
    except StoreError as err:
        log.warning("live view ended: %s", err)
    finally:
        for task in (*tasks, closing):
            task.cancel()
        await asyncio.gather(*tasks, closing, return_exceptions=True)
    return response


class _Follow:
    """The two halves of one live view: the log, and the state."""

    def __init__(self, dash: Dashboard, backing: Backing, job_id: str, attempt: int, viewer: Viewer,
                 sender: _Sender) -> None:
        self.dash = dash
        self.backing = backing
        self.job_id = job_id
        self.attempt = attempt
        self.viewer = viewer
        self.sender = sender
        self.final = ""  # the attempt's final state, once it has one

    async def _attempt_final(self) -> bool:
        attempts = await self.backing.store.attempts(self.job_id)
        return any(a.attempt == self.attempt and a.state.terminal for a in attempts)

    async def log(self, after: int) -> None:
        renderer = LineRenderer()
        last = after
        while True:
            try:
                following = self.backing.logs.follow(self.job_id, self.attempt, last + 1)
                async with contextlib.aclosing(following) as batches:
                    async for batch in batches:
                        await self.sender.send("lines", {"g": renderer.groups(batch)}, batch[-1].sequence)
                        last = batch[-1].sequence
                return  # the log has ended
            except LogMissing:
                if await self._attempt_final():
                    return  # it ended without a line: no log is stored
            except LogError as err:
                await self.sender.send("notice", {"text": str(err)})
                return
            await asyncio.sleep(POLL)  # queued or booting: its log appears when the runner calls in

    async def state(self) -> None:
        last_sent: tuple[Any, ...] | None = None
        quiet = 0.0
        while True:
            job = await self.backing.store.get_job(self.job_id)
            if job is None:
                return
            view = await self.dash.job_view(self.backing, job, self.attempt, with_run=False)
            steps = job_page.steps_state(view)
            signature = (view.attempt, tuple(view.steps), job.state, job.attempt, tuple(s[:2] for s in steps))
            if signature != last_sent:
                now = datetime.now(UTC)
                await self.sender.send("state", {
                    "state": view.attempt.state.name.lower(), "terminal": view.attempt.state.terminal,
                    "head": job_page.head(view, self.backing.links, self.viewer, now),
                    "steps": [list(s) for s in steps],
                })
                last_sent = signature
                quiet = 0.0
            if view.attempt.state.terminal:
                self.final = view.attempt.state.name.lower()
                return
            await asyncio.sleep(POLL)
            quiet += POLL
            if quiet >= KEEPALIVE:
                await self.sender.comment("keepalive")
                quiet = 0.0
