"""``ciadm schedules`` and the dashboard's ``/schedules`` against a real ``solstice serve``: the
integration's schedules, read through the node's AdminService and pages."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from pathlib import Path

from common.cron import parse_cron
from integration.store import SqliteSeenStore
from tests.singlenode.harness import ServeProcess


async def _register(path: Path) -> None:
    store = SqliteSeenStore(path)
    await store.open()
    try:
        await store.replace_schedules("github", "acme/widgets", "https://github.com/acme/widgets.git", 1, "main",
                                      [("0 3 * * *", parse_cron("0 3 * * *").latest(time.time()) or 0.0)])
    finally:
        await store.close()


def test_schedules_are_listed_by_ciadm_and_the_dashboard(tmp_path: Path):
    with ServeProcess(tmp_path / "data") as node:
        empty = node.ciadm("schedules")
        assert empty.returncode == 0, empty.stderr
        assert "no schedules" in empty.stdout + empty.stderr
        asyncio.run(_register(node.data_dir / "integration.sqlite"))
        [schedule] = node.ciadm_json("schedules")
        assert {k: schedule[k] for k in ("forge", "repo", "branch", "cron", "last_run_at", "last_error")} == {
            "forge": "github", "repo": "acme/widgets", "branch": "main", "cron": "0 3 * * *",
            "last_run_at": None, "last_error": None}
        assert schedule["next_run_at"].endswith("T03:00Z")
        table = node.ciadm("schedules").stdout.splitlines()
        assert table[0].split()[:2] == ["REPOSITORY", "BRANCH"]
        assert table[1].split()[:2] == ["github:acme/widgets", "main"] and "never" in table[1]
        with urllib.request.urlopen(node.url.rstrip("/") + "/schedules", timeout=10) as answer:
            page = answer.read().decode()
        assert "<td>main</td><td><code>0 3 * * *</code></td><td>never</td>" in page
