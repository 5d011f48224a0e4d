"""The dashboard in a real headless Chromium (Debian's, through its chromedriver; selenium drives it).

One browser for the whole session and one ``solstice serve`` for this module, started on a
data directory seeded with a known history (tests/dashboard/support.py). Every page is
checked for its text and states and screenshotted (saved, and checked not to be blank);
a real job's log is watched growing live until its final state, without a reload; the
cancel button is tried as nobody, as a reader and as an operator.

scripts/ensure-browser.sh (run by scripts/test.sh) installs chromium and chromium-driver.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from PIL import Image
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from orchestrator.logstore import LogStore
from orchestrator.store import open_store
from tests.dashboard.greenness_seed import GREENNESS, seed_greenness
from tests.dashboard.support import C1, C2, C3, HOSTILE, MATRIX, Seeded, seed
from tests.singlenode.harness import BIN, ServeProcess, git_repo

T = TypeVar("T")
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WAIT = 60.0

TICKS = """\
workflow name="live" {
  job id="ticker" runs_on="ubuntu-22.04" {
    step name="Tick" run="for i in $(seq 1 30); do echo tick $i; sleep 0.3; done"
    step name="Done" run="echo all done"
  }
}
"""
FOREVER = """\
workflow name="long" {
  job id="sleeper" runs_on="ubuntu-22.04" {
    step name="Sleep" run="for i in $(seq 1 900); do echo still here $i; sleep 0.5; done"
  }
}
"""


@pytest.fixture(scope="session")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    for path in (CHROMIUM, CHROMEDRIVER):
        assert shutil.which(path), f"{path} is missing: run scripts/ensure-browser.sh (scripts/test.sh does)"
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}", "--window-size=1280,900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServeProcess, Seeded]]:
    data = tmp_path_factory.mktemp("dashboard-site") / "data"
    data.mkdir(mode=0o700)
    seeded = asyncio.run(_seed(data))
    asyncio.run(seed_greenness(data / "integration.sqlite"))
    with ServeProcess(data, env={"SOLSTICE_GREENNESS_ENABLED": "true"}) as node:
        yield node, seeded


async def _seed(data: Path) -> Seeded:
    async with open_store(f"sqlite:///{data / 'state.sqlite'}") as store, LogStore(data / "logs") as logs:
        seeded = await seed(store, logs)
        # The seeded jobs' host stays alive: the node's sweep must not take its jobs back.
        await store.backend.run("UPDATE hosts SET last_heartbeat = last_heartbeat + 3.0e8")  # type: ignore[attr-defined]
        return seeded


def wait(driver: webdriver.Chrome, check: Callable[[webdriver.Chrome], T], what: str, timeout: float = WAIT) -> T:
    # The live view replaces parts of the page while it is read: an element found a moment ago may be gone.
    waiting = WebDriverWait(driver, timeout, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,))
    return waiting.until(check, f"timed out waiting for {what}")


def shot(driver: webdriver.Chrome, folder: Path, name: str) -> Path:
    """Save a screenshot and check it shows something: many colours, light and dark pixels."""
    png = driver.get_screenshot_as_png()
    path = folder / f"{name}.png"
    path.write_bytes(png)
    image = Image.open(io.BytesIO(png)).convert("RGB")
    low, high = image.convert("L").getextrema()
    colours = image.getcolors(maxcolors=1 << 20) or []
    assert high - low > 100 and len(colours) > 30, f"screenshot {path} looks blank"
    return path


def texts(driver: webdriver.Chrome, css: str) -> list[str]:
    """The text of every element ``css`` selects (read in the page: nothing goes stale mid-read)."""
    return list(driver.execute_script(
        "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent)", css))


def text(driver: webdriver.Chrome, css: str) -> str:
    """The text of the first element ``css`` selects ("" while there is none, e.g. during a navigation)."""
    found = texts(driver, css)
    return found[0] if found else ""


def test_every_page_renders_its_states(browser: webdriver.Chrome, site: tuple[ServeProcess, Seeded],
                                       tmp_path: Path) -> None:
    node, seeded = site
    browser.get(node.url + "/")
    assert browser.title == "CI health - Solstice CI"
    repos = texts(browser, "table.repos tbody th")
    assert repos[0].startswith("acme/widgets") and repos[1].startswith("acme/gadgets")
    assert "test_widget ... FAILED: expected 3, got 4" in text(browser, "section.fails")
    shot(browser, tmp_path, "summary")

    browser.get(node.url + "/github/acme/widgets")
    cells = browser.execute_script("""
        const out = {};
        const names = [...document.querySelectorAll('table.matrix thead th .col')].map(e => e.textContent);
        for (const row of document.querySelectorAll('table.matrix tbody tr')) {
          const sha = row.querySelector('th code').textContent;
          row.querySelectorAll('td.cell').forEach((td, i) => {
            out[sha + ' ' + names[i]] = [...td.classList].find(c => c.startsWith('st-')).slice(3);
          });
        }
        return out;""")
    assert {k: v for k, v in cells.items() if not k.endswith(" greenness")} == {
        f"{sha[:10]} {name}": state for (sha, name), state in MATRIX.items()}
    # hovering (or focusing) a cell tells its duration and reason
    failing = browser.find_element(By.CSS_SELECTOR, f'td.cell a[href^="/jobs/{seeded.jobs[(C2, "test")]}"]')
    browser.execute_script("arguments[0].focus()", failing)
    tip = failing.find_element(By.CSS_SELECTOR, ".tip")
    assert tip.is_displayed() and "test: failed" in tip.text and "expected 3, got 4" in tip.text
    shot(browser, tmp_path, "matrix")

    browser.get(node.url + "/github/acme/widgets/pull/7")
    assert [h.split()[0] for h in texts(browser, "section.commit h3")] == ["Attempt", "Attempt", "Attempt"]
    assert "External CI (0)" in text(browser, "main")
    shot(browser, tmp_path, "pull")

    # a permalink opens its (closed) step, and the log's search finds lines
    job = seeded.jobs[(C2, "test")]
    browser.get(f"{node.url}/jobs/{job}#L3")
    line = browser.find_element(By.ID, "L3")
    assert line.is_displayed() and browser.execute_script("return arguments[0].closest('details').open", line)
    search = browser.find_element(By.ID, "q")
    search.send_keys("expected 3")
    wait(browser, lambda d: text(d, "#search-count") == "1 line", "the search to count")
    search.submit()
    assert "hit-on" in browser.find_element(By.ID, f"L{seeded.error_line}").get_attribute("class")
    shot(browser, tmp_path, "job")

    # phone width: the page fits, the matrix scrolls in its own box
    browser.set_window_size(390, 844)
    try:
        browser.get(node.url + "/github/acme/widgets")
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1")
        shot(browser, tmp_path, "matrix-phone")
    finally:
        browser.set_window_size(1280, 900)


def test_log_bytes_cannot_inject_markup(browser: webdriver.Chrome, site: tuple[ServeProcess, Seeded]) -> None:
    node, seeded = site
    browser.get(f"{node.url}/jobs/{seeded.jobs[(C2, 'test')]}")
    log = browser.find_element(By.ID, "log")
    assert browser.execute_script("return document.querySelectorAll('#log script, #log img').length") == 0
    shown = HOSTILE.decode("utf-8", "replace").replace("\x1b[31m", "").replace("\x1b[0m", "")
    assert shown in log.text  # shown as text, every character
    coloured = log.find_element(By.CSS_SELECTOR, "span.f1")
    assert coloured.text == "<img src=x onerror=alert(1)>"


def _submit(node: ServeProcess, repo: Path) -> str:
    [job] = node.ciadm_json("submit", cwd=repo)
    return str(job["job_id"])


def test_a_live_log_grows_and_ends_without_a_reload(browser: webdriver.Chrome, site: tuple[ServeProcess, Seeded],
                                                    tmp_path: Path) -> None:
    node, _ = site
    job = _submit(node, git_repo(tmp_path / "ticks", TICKS))
    browser.get(f"{node.url}/jobs/{job}")
    browser.execute_script("window.__sameDocument = true")
    counts: list[int] = []

    def grown(d: webdriver.Chrome) -> bool:
        n = len(d.find_elements(By.CSS_SELECTOR, "#step-0 ol.log > li"))
        if not counts or n > counts[-1]:
            counts.append(n)
        return len([c for c in counts if c > 0]) >= 4

    wait(browser, grown, "the log to grow while the job runs")
    wait(browser, lambda d: "finished: succeeded" in text(d, "#live-status"), "the end")
    head = text(browser, "#job-head")
    assert "succeeded" in head and "running" not in head
    assert browser.execute_script("return window.__sameDocument") is True  # never reloaded
    lines = texts(browser, "#step-0 ol.log > li")
    # each line: its number (its sequence in the log, one after the other), then its text
    ticks = [re.fullmatch(r"(\d+)(tick \d+)", t) for t in lines if "tick" in t]
    assert [m.group(2) for m in ticks if m] == [f"tick {i}" for i in range(1, 31)]
    numbers = [int(m.group(1)) for m in ticks if m]
    assert numbers == list(range(numbers[0], numbers[0] + 30))
    assert "all done" in browser.find_element(By.ID, "step-1").get_attribute("textContent")
    assert browser.find_element(By.CSS_SELECTOR, "#step-1").get_attribute("data-state") == "succeeded"
    shot(browser, tmp_path, "live-finished")


def _token(node: ServeProcess, name: str, role: str) -> str:
    done = subprocess.run([str(BIN / "solstice"), "token", "create", "--data-dir", str(node.data_dir), "--name", name,
                           "--role", role, "--json"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return str(json.loads(done.stdout)["token"])


def _sign_in(browser: webdriver.Chrome, node: ServeProcess, token: str) -> None:
    browser.get(node.url + "/signin")
    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.CSS_SELECTOR, "form.signin button").click()
    wait(browser, lambda d: "signed in as" in text(d, ".account"), "the sign-in")


def test_the_cancel_button_works_for_an_operator_only(browser: webdriver.Chrome, site: tuple[ServeProcess, Seeded],
                                                      tmp_path: Path) -> None:
    node, _ = site
    job = _submit(node, git_repo(tmp_path / "long", FOREVER))
    node.wait_state(job, "running")
    page = f"{node.url}/jobs/{job}"
    browser.get(page)
    assert not browser.find_elements(By.ID, "cancel")  # nobody signed in
    _sign_in(browser, node, _token(node, "reader", "read"))
    browser.get(page)
    assert not browser.find_elements(By.ID, "cancel")  # a reader
    _sign_in(browser, node, _token(node, "operator", "operate"))
    browser.get(page)
    browser.find_element(By.ID, "cancel").click()
    wait(browser, lambda d: "Cancel requested." in text(d, "main"), "the cancel")
    wait(browser, lambda d: "cancelled" in text(d, "#job-head h1"), "cancelled shown")
    assert browser.find_elements(By.ID, "retry") and not browser.find_elements(By.ID, "cancel")
    node.wait_state(job, "cancelled")
    shot(browser, tmp_path, "cancelled")
    browser.delete_all_cookies()


def test_a_running_seeded_job_is_shown_running(browser: webdriver.Chrome, site: tuple[ServeProcess, Seeded]) -> None:
    node, seeded = site
    browser.get(f"{node.url}/jobs/{seeded.jobs[(C3, 'build')]}")
    assert "running" in text(browser, "#job-head h1")
    wait(browser, lambda d: text(d, "#live-status") == "following live", "the live view")
    assert texts(browser, "#step-0 ol.log > li")[-1] == "2compiling 2"


def test_the_matrix_shows_each_commits_degree_and_the_last_green(browser: webdriver.Chrome,
                                                                  site: tuple[ServeProcess, Seeded],
                                                                  tmp_path: Path) -> None:
    node, _ = site
    browser.get(node.url + "/github/acme/widgets")
    notes = texts(browser, "p.ref-note")
    assert notes[0] == f"Last green of main: {C1[:12]} (not green now)"
    # the hook's delivery log in brief: the node does not know the hook, so transition 1 waits with the reason
    assert notes[1].startswith("Hook deploy: transition 2 pending; transition 1 waits after"), notes
    cells = browser.execute_script("""
        const names = [...document.querySelectorAll('table.matrix thead th .col')].map(e => e.textContent);
        const column = names.indexOf('greenness');
        const out = {};
        for (const row of document.querySelectorAll('table.matrix tbody tr')) {
          const td = row.querySelectorAll('td.cell')[column];
          const label = td.querySelector('[aria-label]');
          const shown = td.querySelector('.lbl');
          out[row.querySelector('th code').textContent] = [
            [...td.classList].find(c => c.startsWith('st-')).slice(3), label ? label.getAttribute('aria-label') : '',
            shown ? shown.textContent : ''];
        }
        return out;""")
    assert set(cells) == {sha[:10] for sha in GREENNESS}
    for sha, (state, degree) in GREENNESS.items():
        shown_state, label, shown = cells[sha[:10]]
        assert shown_state == state and f"degree {degree}" in label, (sha, cells[sha[:10]])
        assert shown == ("" if degree == "not yet" else degree)  # the degree itself, in the cell
    assert "test failed: expected 3, got 4" in cells[C2[:10]][1]
    # focusing the cell shows the degree
    cell = browser.find_elements(By.CSS_SELECTOR, "td.cell.ext [aria-label]")[1]
    browser.execute_script("arguments[0].focus()", cell)
    assert "degree" in cell.find_element(By.CSS_SELECTOR, ".tip").text
    shot(browser, tmp_path, "matrix-greenness")
    # the badge and the JSON the cells link to
    status, body = node.get("/api/v1/queues/github/acme/widgets/main/last-green")
    assert status == 200 and json.loads(body)["last_green"]["sha"] == C1
