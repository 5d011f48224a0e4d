"""The dashboard's pages over HTTP on a seeded history: what each shows, escaping, paging, errors."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from dashboard.app import MATRIX_ROWS
from dashboard.columns import ColumnUnavailable, ExternalResult
from dashboard.settings import DashboardSettings
from orchestrator.operators import Role
from orchestrator.store import JobState
from tests.dashboard.conftest import Served, serve_dashboard
from tests.dashboard.support import C1, C2, C3, G1, MATRIX, P1, P2, drive, request


class MatrixCells(HTMLParser):
    """(row commit, column name) -> the cell's state, from a matrix page."""

    def __init__(self) -> None:
        super().__init__()
        self.columns: list[str] = []
        self.cells: dict[tuple[str, str], str] = {}
        self.links: dict[tuple[str, str], str] = {}
        self._in_head = self._in_col = self._in_code = False
        self._row = ""
        self._col = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "thead":
            self._in_head = True
        elif tag == "span" and a.get("class") == "col" and self._in_head:
            self._in_col = True
        elif tag == "tr":
            self._col = 0
        elif tag == "code":
            self._in_code = True
        elif tag == "td" and "cell" in (a.get("class") or ""):
            state = next((c[3:] for c in (a.get("class") or "").split() if c.startswith("st-")), "none")
            self.cells[(self._row, self.columns[self._col])] = state
            self._col += 1
        elif tag == "a" and self._row and a.get("href", "").startswith("/jobs/"):
            self.links[(self._row, self.columns[self._col - 1])] = a["href"] or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "thead":
            self._in_head = False
        elif tag == "span":
            self._in_col = False
        elif tag == "code":
            self._in_code = False

    def handle_data(self, data: str) -> None:
        if self._in_col:
            self.columns.append(data)
        elif self._in_code:
            self._row = data


def cells_of(html: str) -> MatrixCells:
    parser = MatrixCells()
    parser.feed(html)
    return parser


async def get(served: Served, path: str, status: int = 200) -> str:
    answer = await served.client.get(path)
    text = await answer.text()
    assert answer.status == status, text[:500]
    return text


async def test_the_summary_ranks_repositories_and_lists_failures(served: Served) -> None:
    page = await get(served, "/")
    widgets, gadgets = page.index(">acme/widgets</a>"), page.index(">acme/gadgets</a>")
    assert widgets < gadgets  # the lower pass rate first
    row = page[widgets:page.index("</tr>", widgets)]
    # widgets: 4 + 2 (PR) succeeded, 2 failed (C2 test, PR attempt 1), 1 errored, 1 cancelled, 1 running, 1 queued
    numbers = re.findall(r'<td class="num">(?:<span[^>]*>)?([^<]*)', row)
    assert numbers[:7] == ["75%", "6", "2", "1", "1", "1", "1"]
    assert "host-a" in page and 'aria-label="host-a: 1 of 4 slots in use"' in page
    failing = served.seeded.jobs[(C2, "test")]
    assert f'href="/jobs/{failing}#L{served.seeded.error_line}">test</a> in step <span class="step-name">Test' in page
    assert "test_widget ... FAILED: expected 3, got 4" in page
    assert (await served.client.get("/?days=3")).status == 400
    assert (await served.client.get("/?days=x")).status == 400
    assert "No job finished" not in await get(served, "/?days=1")


async def test_the_matrix_shows_each_cell_s_state(served: Served) -> None:
    page = await get(served, "/github/acme/widgets")
    cells = cells_of(page)
    assert cells.columns == ["build", "lint", "test"]
    rows = [sha[:10] for sha in (C3, C2, C1)]
    assert [m.group(1) for m in re.finditer(r'<th scope="row"><a [^>]*><code>([0-9a-f]+)</code>', page)] == rows
    for (sha, name), state in MATRIX.items():
        assert cells.cells[(sha[:10], name)] == state, (sha, name)
    failing = served.seeded.jobs[(C2, "test")]
    assert cells.links[(C2[:10], "test")] == f"/jobs/{failing}#L{served.seeded.error_line}"
    assert cells.links[(C1[:10], "build")] == f"/jobs/{served.seeded.jobs[(C1, 'build')]}"
    # colour AND icon AND words: the tip names the state, the reason and the failing line
    assert "test: failed · " in page and "Test: test_widget ... FAILED: expected 3, got 4" in page
    assert "lint: errored" in page and "the VM did not boot: &lt;console&gt; said &amp;nbsp;" in page
    assert f'href="https://github.com/acme/widgets/commit/{C1}"' in page
    assert '<a href="/github/acme/widgets/pull/7">#7</a>' in page  # recent pull requests
    other = cells_of(await get(served, "/github/acme/gadgets"))
    assert other.cells == {(G1[:10], "build"): "succeeded"}


async def test_the_matrix_pages_by_commit(served: Served) -> None:
    for n in range(MATRIX_ROWS + 2):  # more commits on a branch than one page holds
        sha = f"{n:040x}"
        await served.store.submit(request(f"job-many-{n}", "build", sha, ref="refs/heads/dev"))
    first = await get(served, "/github/acme/widgets?ref=refs/heads/dev")
    rows = re.findall(r'<th scope="row"><a [^>]*><code>([0-9a-f]+)</code>', first)
    assert len(rows) == MATRIX_ROWS and rows[0] == f"{MATRIX_ROWS + 1:040x}"[:10]
    older = re.search(r'rel="next" href="([^"]+)"', first)
    assert older is not None
    second = await get(served, older.group(1).replace("&amp;", "&"))
    assert re.findall(r'<th scope="row"><a [^>]*><code>([0-9a-f]+)</code>', second) == [
        f"{1:040x}"[:10], f"{0:040x}"[:10]]
    assert 'rel="next"' not in second and ">Newest</a>" in second
    assert (await served.client.get("/github/acme/widgets?before=1x")).status == 400
    assert "No jobs on nope yet." in await get(served, "/github/acme/widgets?ref=refs/heads/nope")
    assert "no jobs of github/acme/nothing" in await get(served, "/github/acme/nothing", 404)
    assert (await served.client.get("/gitlab/acme/widgets")).status == 404  # not a forge of ours


class Docs:
    """A column source: another system's results by commit (issue 22's kind)."""

    name = "docs builder"

    async def results(self, forge: str, repo: str, shas: Sequence[str]) -> Mapping[str, Sequence[ExternalResult]]:
        return {sha: [ExternalResult("docs (ext)", "failed" if sha == C2 else "succeeded",
                                     f"https://docs.example/{sha}", "built <docs>")] for sha in shas if sha != C3}


class Broken:
    name = "flaky system"

    async def results(self, forge: str, repo: str, shas: Sequence[str]) -> Mapping[str, Sequence[ExternalResult]]:
        raise ColumnUnavailable("its API answered 503")


async def test_column_sources_add_columns_and_pull_request_sections(tmp_path: Path) -> None:
    async with serve_dashboard(tmp_path, columns=(Docs(), Broken())) as served:
        page = await get(served, "/github/acme/widgets")
        cells = cells_of(page)
        assert cells.columns == ["build", "lint", "test", "docs (ext)"]
        assert cells.cells[(C1[:10], "docs (ext)")] == "succeeded"
        assert cells.cells[(C2[:10], "docs (ext)")] == "failed"
        assert cells.cells[(C3[:10], "docs (ext)")] == "none"
        assert f'href="https://docs.example/{C2}"' in page and "built &lt;docs&gt;" in page
        assert "flaky system: its API answered 503" in page
        pull = await get(served, "/github/acme/widgets/pull/7")
        assert "External CI (1)" in pull and f'href="https://docs.example/{P1}"' in pull
    assert ExternalResult("x", "succeeded", "javascript:alert(1)").safe_url == ""


async def test_the_pull_request_page_groups_by_commit_and_attempt(served: Served) -> None:
    page = await get(served, "/github/acme/widgets/pull/7")
    p2, p1 = page.index(f"<code>{P2[:10]}</code>"), page.index(f"<code>{P1[:10]}</code>")
    assert p2 < p1  # the newest head first
    p1_part = page[p1:]
    assert p1_part.index("Attempt 2") < p1_part.index("Attempt 1")
    assert 'href="/jobs/job-pr-1?attempt=2">build</a>' in p1_part
    assert 'href="/jobs/job-pr-1?attempt=1">build</a>' in p1_part
    attempt1 = p1_part[p1_part.index("Attempt 1"):]
    assert "st-failed" in attempt1[:attempt1.index("</ul>")]
    assert 'href="https://github.com/acme/widgets/pull/7"' in page
    assert "no jobs of pull request #8" in await get(served, "/github/acme/widgets/pull/8", 404)


async def test_the_job_page_shows_the_log_escaped_and_coloured(served: Served) -> None:
    failing = served.seeded.jobs[(C2, "test")]
    answer = await served.client.get(f"/jobs/{failing}")
    page = await answer.text()
    assert answer.status == 200 and answer.content_type == "text/html"
    assert answer.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert answer.headers["X-Frame-Options"] == "DENY"
    assert "<script>alert" not in page and "<img src=x" not in page and "onerror=alert(1)>" not in page
    assert ('&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt; <span class="f1">&lt;img src=x '
            'onerror=alert(1)&gt;</span> \ufffd') in page
    assert '<span class="f2">built</span> ok' in page
    # the failing step is open, the others closed; exit code and duration shown
    assert re.search(r'<details class="step" id="step-1" data-step="1" data-state="failed" open>', page)
    assert re.search(r'<details class="step" id="step-0" data-step="0" data-state="succeeded">', page)
    assert "2. Test</span> <span class=\"muted\">3.2s · exit 2</span>" in page
    assert f'<li id="L{served.seeded.error_line}" class="e"><a href="#L{served.seeded.error_line}"' in page
    assert f'href="/jobs/{failing}/log?attempt=1">raw log</a>' in page
    assert 'data-follow=""' in page  # finished: nothing to follow
    assert "forge webhook (github push)" in page and "<dd>local</dd>" in page
    assert f'href="https://github.com/acme/widgets/commit/{C2}"' in page
    assert 'id="cancel"' not in page and 'id="retry"' not in page  # nobody signed in
    others = page[page.index("Other jobs of this run"):]
    assert f'href="/jobs/{served.seeded.jobs[(C2, "build")]}">build</a>' in others


async def test_the_job_page_searches_and_pages_the_log(served: Served) -> None:
    failing = served.seeded.jobs[(C2, "test")]
    found = await get(served, f"/jobs/{failing}?q=FAILED")
    assert len(re.findall(r'<li id="L\d+"', found)) == 1 and "(1 found)" in found
    assert await get(served, f"/jobs/{failing}?q=%3Cscript") != ""  # a search for markup is text too
    later = await get(served, f"/jobs/{failing}?from=6")
    assert re.findall(r'<li id="L(\d+)"', later) == ["6", "7", "8"]
    assert "Show earlier lines</a> (this page starts at line 6)" in later
    for bad in ("?attempt=2", "?attempt=0", "?attempt=x", "?from=-1", "?attempt=%C2%B2"):
        assert (await served.client.get(f"/jobs/{failing}{bad}")).status == 400, bad
    assert "no job job-nope" in await get(served, "/jobs/job-nope", 404)


async def test_a_running_job_page_follows_and_an_old_attempt_does_not(served: Served) -> None:
    running = served.seeded.jobs[(C3, "build")]
    page = await get(served, f"/jobs/{running}")
    assert 'data-follow="1"' in page and 'data-last="2"' in page and "compiling 2" in page
    assert re.search(r'data-step="0" data-state="running" open>', page)
    old = await get(served, "/jobs/job-pr-1?attempt=1")
    assert 'data-follow=""' in old and '<span aria-current="page">1 ' in old
    assert '<a href="/jobs/job-pr-1?attempt=2">2</a>' in old
    queued = await get(served, f"/jobs/{served.seeded.jobs[(C3, 'test')]}")
    assert 'data-follow="1"' in queued and "(not claimed yet)" in queued


async def test_pages_say_503_until_the_store_is_there(tmp_path: Path) -> None:
    async with serve_dashboard(tmp_path) as served:
        served.dashboard.backing = None
        assert (await served.client.get("/")).status == 503
        assert (await served.client.get("/jobs/x")).status == 503
        assert (await served.client.get("/static/dashboard.css")).status == 200


async def test_sign_in_can_be_required_for_every_page(tmp_path: Path) -> None:
    async with serve_dashboard(tmp_path, DashboardSettings(require_signin=True)) as served:
        answer = await served.client.get("/github/acme/widgets?ref=x", allow_redirects=False)
        location = urlsplit(answer.headers["Location"])
        assert answer.status == 303 and location.path == "/signin"
        assert parse_qs(location.query)["next"] == ["/github/acme/widgets?ref=x"]
        for path in ("/", "/jobs/job-01-build", "/jobs/job-01-build/live", "/github/acme/widgets/pull/7"):
            assert (await served.client.get(path, allow_redirects=False)).status == 303, path
        assert (await served.client.get("/signin")).status == 200
        assert (await served.client.get("/static/dashboard.js")).status == 200
        await served.sign_in(await served.token("viewer", Role.READ))
        assert (await served.client.get("/")).status == 200
        assert "signed in as <strong>viewer</strong> (read)" in await get(served, "/")


async def test_states_change_what_the_pages_show(served: Served) -> None:
    queued = served.seeded.jobs[(C3, "test")]
    await drive(served.store, queued, JobState.SUCCEEDED)
    cells = cells_of(await get(served, "/github/acme/widgets"))
    assert cells.cells[(C3[:10], "test")] == "succeeded"
