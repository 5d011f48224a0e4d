"""``/schedules``: the integration store's schedules on the dashboard, and what a dashboard without them says."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from integration.schedules import schedule_rows
from integration.store import SqliteSeenStore
from tests.dashboard.conftest import Served


async def test_the_schedules_page_lists_each_with_its_runs(served: Served, tmp_path: Path) -> None:
    answer = await served.client.get("/schedules")
    assert answer.status == 200 and "cannot see the schedules" in await answer.text()
    seen = SqliteSeenStore(tmp_path / "integration.sqlite")
    await seen.open()
    try:
        backing = served.dashboard.backing
        assert backing is not None
        served.dashboard.attach(dataclasses.replace(backing, schedules=schedule_rows(seen)))
        assert "No schedules." in await (await served.client.get("/schedules")).text()
        await seen.replace_schedules("github", "acme/widgets", "https://github.com/acme/widgets.git", 1, "main",
                                     [("0 3 * * *", 0.0), ("@hourly", 0.0)])
        key = "github:acme/widgets:main:@hourly"
        assert await seen.take_tick(key, 3600.0, 3601.0)
        await seen.give_back(key, 3600.0, 0.0, "acme/widgets has no branch 'main' <gone>")
        page = await (await served.client.get("/schedules")).text()
        rows = page[page.index("<tbody>"):]
        assert rows.count("<tr>") == 2
        assert '<a href="/github/acme/widgets">acme/widgets</a></th><td>main</td><td><code>0 3 * * *</code></td><td>never</td>' in rows
        assert "acme/widgets has no branch &#x27;main&#x27; &lt;gone&gt;" in rows  # escaped
        assert "<script" not in rows
    finally:
        await seen.close()
