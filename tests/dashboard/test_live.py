"""``/jobs/<id>/live``: server-sent events follow a log as it grows, resume after a reconnect from
``Last-Event-ID`` (nothing lost, nothing twice) and end with the final state."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import ClientResponse

from common.logbatch import STDOUT
from dashboard.app import Backing
from dashboard.logsource import NoLogs
from orchestrator.store import JobState
from tests.dashboard.conftest import Served, serve_dashboard
from tests.dashboard.support import C3, drive, write_log

DEADLINE = 30.0


@dataclass
class Event:
    name: str
    data: Any
    id: str | None


class Events:
    """Reads server-sent events off a response."""

    def __init__(self, response: ClientResponse) -> None:
        self.response = response

    async def next(self) -> Event:
        name, data, event_id = "message", "", None
        while True:
            raw = await asyncio.wait_for(self.response.content.readline(), DEADLINE)
            assert raw, "the stream ended"
            line = raw.decode().rstrip("\n")
            if not line:
                if data:
                    return Event(name, json.loads(data), event_id)
                continue
            field, _, value = line.partition(": ")
            if field == "event":
                name = value
            elif field == "data":
                data += value
            elif field == "id":
                event_id = value

    async def until(self, name: str) -> tuple[list[Event], Event]:
        """Events before the first ``name`` one, and that one."""
        seen = []
        while True:
            event = await self.next()
            if event.name == name:
                return seen, event
            seen.append(event)


def numbers(events: list[Event]) -> list[int]:
    """The line numbers the ``lines`` events carried, in order."""
    found = []
    for event in events:
        if event.name == "lines":
            for _, html in event.data["g"]:
                found += [int(n) for n in re.findall(r'<li id="L(\d+)"', html)]
    return found


async def test_a_live_log_grows_resumes_and_ends(served: Served) -> None:
    job_id = served.seeded.jobs[(C3, "build")]
    answer = await served.client.get(f"/jobs/{job_id}/live?after=0")
    assert answer.status == 200 and answer.headers["Content-Type"] == "text/event-stream; charset=utf-8"
    events = Events(answer)
    before, first = await events.until("lines")
    assert (first.id, numbers([first])) == ("2", [1, 2])
    _, state = await events.until("state")
    assert (state.data["state"], state.data["terminal"]) == ("running", False)
    assert "compiling" not in state.data["head"] and "build" in state.data["head"]

    await write_log(served.logs, job_id, 1, [(0, STDOUT, b"line 3\n<b>line 4</b>")], close=False)
    _, more = await events.until("lines")
    assert more.id == "4" and numbers([more]) == [3, 4] and "&lt;b&gt;line 4&lt;/b&gt;" in more.data["g"][0][1]
    answer.close()  # the browser loses the connection

    await write_log(served.logs, job_id, 1, [(0, STDOUT, b"line 5\nline 6\nline 7")], close=False)
    again = await served.client.get(f"/jobs/{job_id}/live?after=0", headers={"Last-Event-ID": "4"})
    events = Events(again)
    _, resumed = await events.until("lines")
    assert numbers([resumed]) == [5, 6, 7]  # from the last one it had: none lost, none twice

    await write_log(served.logs, job_id, 1, [(1, STDOUT, b"last line")], close=True)
    await drive_to_end(served, job_id)
    seen, end = await events.until("end")
    assert numbers(seen) == [8] and end.data == {"state": "succeeded"}
    finals = [e for e in seen if e.name == "state"]
    assert finals[-1].data["terminal"] and finals[-1].data["state"] == "succeeded"
    assert await again.content.read() == b""  # the server closed the stream


async def drive_to_end(served: Served, job_id: str) -> None:
    assert await served.store.transition(job_id, 1, JobState.SUCCEEDED)


async def test_a_queued_job_is_followed_once_its_log_appears(served: Served) -> None:
    job_id = served.seeded.jobs[(C3, "test")]  # queued: no log yet
    events = Events(await served.client.get(f"/jobs/{job_id}/live"))
    _, state = await events.until("state")
    assert state.data["state"] == "queued"
    await drive(served.store, job_id, JobState.RUNNING)
    await write_log(served.logs, job_id, 1, [(0, STDOUT, b"hello")], close=False)
    seen, lines = await events.until("lines")
    assert numbers([lines]) == [1]


async def test_a_finished_attempt_without_a_log_ends_at_once(served: Served) -> None:
    job_id = served.seeded.jobs[(C3, "lint")]  # errored before its VM booted
    events = Events(await served.client.get(f"/jobs/{job_id}/live"))
    seen, end = await events.until("end")
    assert end.data == {"state": "errored"} and numbers(seen) == []


async def test_where_logs_are_elsewhere_the_stream_says_so(tmp_path: Path) -> None:
    async with serve_dashboard(tmp_path) as served:
        backing = served.dashboard.backing
        assert backing is not None
        served.dashboard.attach(Backing(backing.store, NoLogs(), backing.actions, backing.links))
        job_id = served.seeded.jobs[(C3, "build")]
        events = Events(await served.client.get(f"/jobs/{job_id}/live"))
        _, notice = await events.until("notice")
        assert f"ciadm logs {job_id}" in notice.data["text"]
        page = await (await served.client.get(f"/jobs/{job_id}")).text()
        assert f"read this one with: ciadm logs {job_id}" in page


async def test_bad_resume_points_are_refused(served: Served) -> None:
    job_id = served.seeded.jobs[(C3, "build")]
    for headers, query in (({"Last-Event-ID": "x"}, ""), ({}, "?after=-3"), ({}, "?attempt=2"), ({}, "?attempt=²")):
        answer = await served.client.get(f"/jobs/{job_id}/live{query}", headers=headers)
        assert answer.status == 400, (headers, query)
    assert (await served.client.get("/jobs/job-nope/live")).status == 404
