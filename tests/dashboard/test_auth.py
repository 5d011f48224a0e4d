"""Sign-in with operator tokens, the cookie, CSRF and origin checks, and the buttons they guard."""

from __future__ import annotations

import re
from pathlib import Path

from dashboard.settings import DashboardSettings
from orchestrator.operators import OperatorTokens, Role
from orchestrator.store import JobState
from tests.dashboard.conftest import Served, serve_dashboard
from tests.dashboard.support import C1, C3


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', page)
    assert found, "no CSRF token on the page"
    return found.group(1)


async def test_sign_in_keeps_the_token_in_a_strict_http_only_cookie(served: Served) -> None:
    token = await served.token("alice", Role.OPERATE)
    answer = await served.client.post("/signin", data={"token": token, "next": "/jobs/job-01-build"},
                                      headers={"Origin": served.origin}, allow_redirects=False)
    assert answer.status == 303 and answer.headers["Location"] == "/jobs/job-01-build"
    cookie = answer.headers["Set-Cookie"]
    assert cookie.startswith(f"solstice_session={token};")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie and "Secure" not in cookie
    assert "signed in as <strong>alice</strong> (operate)" in await (await served.client.get("/")).text()
    # the next page must be on this site
    again = await served.client.post("/signin", data={"token": token, "next": "//evil.example/x"},
                                     headers={"Origin": served.origin}, allow_redirects=False)
    assert again.headers["Location"] == "/"


async def test_a_secure_cookie_when_asked(tmp_path: Path) -> None:
    async with serve_dashboard(tmp_path, DashboardSettings(secure_cookie="always")) as served:
        token = await served.token("alice", Role.READ)
        answer = await served.client.post("/signin", data={"token": token}, headers={"Origin": served.origin},
                                          allow_redirects=False)
        assert "Secure" in answer.headers["Set-Cookie"]


async def test_bad_tokens_and_foreign_forms_are_refused(served: Served) -> None:
    answer = await served.client.post("/signin", data={"token": "solstice_0123456789ab_" + "x" * 43},
                                      headers={"Origin": served.origin})
    assert answer.status == 401 and "Not signed in: the token is not valid." in await answer.text()
    assert "Set-Cookie" not in answer.headers
    token = await served.token("bob", Role.OPERATE)
    for headers in ({}, {"Origin": "https://evil.example"}, {"Origin": "null"},
                    {"Referer": "https://evil.example/page"}):
        refused = await served.client.post("/signin", data={"token": token}, headers=headers)
        assert refused.status == 403, headers
    # a Referer of this site will do when a browser sends no Origin
    ok = await served.client.post("/signin", data={"token": token}, allow_redirects=False,
                                  headers={"Referer": served.origin + "/signin"})
    assert ok.status == 303
    await OperatorTokens(served.store).revoke("bob")
    assert "sign in</a>" in await (await served.client.get("/")).text()  # revoked: signed out at once


async def test_the_cancel_button_is_for_operators_only(served: Served) -> None:
    running = served.seeded.jobs[(C3, "build")]
    path = f"/jobs/{running}"
    assert 'id="cancel"' not in await (await served.client.get(path)).text()  # anonymous
    await served.sign_in(await served.token("reader", Role.READ))
    page = await (await served.client.get(path)).text()
    assert 'id="cancel"' not in page
    # a reader's well-formed form is still refused
    refused = await served.client.post(f"{path}/cancel", data={"csrf": csrf_of(page)},
                                       headers={"Origin": served.origin})
    assert refused.status == 403
    assert (await served.store.get_job(running)).state is JobState.RUNNING

    await served.sign_in(await served.token("olga", Role.OPERATE))
    page = await (await served.client.get(path)).text()
    assert 'id="cancel"' in page and 'id="retry"' not in page
    csrf = csrf_of(page)
    for data, headers in (({}, {"Origin": served.origin}), ({"csrf": "0" * 64}, {"Origin": served.origin}),
                          ({"csrf": csrf}, {"Origin": "https://evil.example"}), ({"csrf": csrf}, {})):
        assert (await served.client.post(f"{path}/cancel", data=data, headers=headers)).status == 403
    assert (await served.store.get_job(running)).state is JobState.RUNNING
    done = await served.client.post(f"{path}/cancel", data={"csrf": csrf}, headers={"Origin": served.origin},
                                    allow_redirects=False)
    assert done.status == 303 and done.headers["Location"] == f"{path}?done=cancelled"
    job = await served.store.get_job(running)
    assert job.state is JobState.CANCELLED and job.reason == "cancelled by olga from the dashboard"
    after = await (await served.client.get(f"{path}?done=cancelled")).text()
    assert "Cancel requested." in after and 'id="retry"' in after and 'id="cancel"' not in after
    again = await served.client.post(f"{path}/cancel", data={"csrf": csrf}, headers={"Origin": served.origin})
    assert again.status == 409 and "already ended cancelled" in await again.text()


async def test_re_run_starts_a_new_attempt(served: Served) -> None:
    finished = served.seeded.jobs[(C1, "lint")]
    await served.sign_in(await served.token("olga", Role.OPERATE))
    page = await (await served.client.get(f"/jobs/{finished}")).text()
    done = await served.client.post(f"/jobs/{finished}/retry", data={"csrf": csrf_of(page)},
                                    headers={"Origin": served.origin}, allow_redirects=False)
    assert done.status == 303
    job = await served.store.get_job(finished)
    assert (job.attempt, job.state) == (2, JobState.QUEUED)
    page = await (await served.client.get(f"/jobs/{finished}?done=retried")).text()
    assert "A new attempt is queued." in page and 'id="cancel"' in page
    refused = await served.client.post(f"/jobs/{finished}/retry", data={"csrf": csrf_of(page)},
                                       headers={"Origin": served.origin})
    assert refused.status == 409 and "only a finished job can be retried" in await refused.text()


async def test_sign_out_forgets_the_cookie(served: Served) -> None:
    await served.sign_in(await served.token("alice", Role.ADMIN))
    page = await (await served.client.get("/")).text()
    assert (await served.client.post("/signout", data={}, headers={"Origin": served.origin})).status == 403
    out = await served.client.post("/signout", data={"csrf": csrf_of(page)}, headers={"Origin": served.origin},
                                   allow_redirects=False)
    assert out.status == 303 and 'solstice_session=""' in out.headers["Set-Cookie"]
    assert "sign in</a>" in await (await served.client.get("/")).text()
