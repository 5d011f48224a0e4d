"""Signing in to the dashboard with an operator token, and guarding its forms.

An operator pastes a token once (``/signin``); it is checked with
``OperatorTokens.verify`` - the same check as AdminService's - and kept in a
cookie the page's scripts cannot read (``HttpOnly``), that no other site's
page or form sends (``SameSite=Strict``), over https only when the page came
over https (``dashboard.secure_cookie``). Every request with the cookie is
checked again, so an expired or revoked token signs its holder out at once.

Every POST (sign-in, sign-out, cancel, re-run) must come from a page of this
dashboard: its ``Origin`` (or ``Referer``) must be this site, and - once
signed in - its form must carry the CSRF token of the page, an HMAC of the
session under a key of this process.

Read-only pages are open to anyone unless ``dashboard.require_signin``; then
every page but the sign-in page, the static files, ``/healthz``,
``/metrics`` and the webhooks needs a signed-in operator (any role).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from collections.abc import Awaitable, Callable
from urllib.parse import quote, urlsplit

from aiohttp import web
from aiohttp.typedefs import Middleware

from dashboard.settings import DashboardSettings
from orchestrator.operators import OperatorTokens, Principal, TokenRefused
from orchestrator.store import Store, StoreError

log = logging.getLogger(__name__)

COOKIE = "solstice_session"
COOKIE_MAX_AGE = 30 * 86400  # the browser forgets it after this; the token's own expiry still applies
# Paths anyone reaches even when sign-in is required.
OPEN_PREFIXES = ("/signin", "/static/", "/healthz", "/metrics", "/webhooks/")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_PRINCIPAL: web.RequestKey[Principal | None] = web.RequestKey("dashboard_principal", object)  # type: ignore[arg-type]


def safe_next(target: str) -> str:
    """A path on this site to go back to after signing in ("/" for anything else)."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target or any(c < " " for c in target):
        return "/"
    return target


class Auth:
    """Sign-in state of requests; ``store`` is read when a request needs it (None while starting)."""

    def __init__(self, settings: DashboardSettings, store: Callable[[], Store | None], public_url: str = "") -> None:
        self.settings = settings
        self._store = store
        self._key = os.urandom(32)  # CSRF tokens of this process (a restart asks for a reload)
        self._origins = {_origin(public_url)} if public_url else set()

    async def principal(self, request: web.Request) -> Principal | None:
        """The signed-in operator of ``request``, or None (no cookie, or a token no longer valid)."""
        if _PRINCIPAL in request:
            return request[_PRINCIPAL]
        found: Principal | None = None
        token = request.cookies.get(COOKIE, "")
        store = self._store()
        if token and store is not None:
            try:
                found = await OperatorTokens(store).verify(token)
            except TokenRefused:
                found = None
            except StoreError as err:
                log.error("cannot check a dashboard session: %s", err)
                raise web.HTTPServiceUnavailable(text=f"the state store failed: {err}\n") from None
        request[_PRINCIPAL] = found
        return found

    def csrf(self, request: web.Request) -> str:
        """The CSRF token forms of this session carry ("" when not signed in)."""
        token = request.cookies.get(COOKIE, "")
        return hmac.new(self._key, token.encode(), hashlib.sha256).hexdigest() if token else ""

    def check_origin(self, request: web.Request) -> None:
        """Refuse a POST that did not come from a page of this site."""
        sent = request.headers.get("Origin") or request.headers.get("Referer") or ""
        here = f"{request.scheme}://{request.host}".lower()
        if not sent or sent == "null" or _origin(sent) not in self._origins | {here}:
            raise web.HTTPForbidden(text="this form must be sent from a page of this dashboard\n")

    def check_form(self, request: web.Request, form: dict[str, str]) -> None:
        """``check_origin`` and the form's CSRF token."""
        self.check_origin(request)
        expected = self.csrf(request)
        if not expected or not hmac.compare_digest(expected, form.get("csrf", "")):
            raise web.HTTPForbidden(text="this form has expired; reload the page and try again\n")

    def sign_in(self, request: web.Request, response: web.StreamResponse, token: str) -> None:
        secure = self.settings.secure_cookie == "always" or (
            self.settings.secure_cookie == "auto" and request.scheme == "https")
        response.set_cookie(COOKIE, token, max_age=COOKIE_MAX_AGE, path="/", httponly=True, samesite="Strict",
                            secure=secure)

    def sign_out(self, response: web.StreamResponse) -> None:
        response.del_cookie(COOKIE, path="/")

    def middleware(self) -> Middleware:
        """Sends anonymous visitors to the sign-in page when ``require_signin`` (GET), or refuses (others)."""

        @web.middleware
        async def require_signin(request: web.Request, handler: Handler) -> web.StreamResponse:
            if not self.settings.require_signin or request.path.startswith(OPEN_PREFIXES):
                return await handler(request)
            if await self.principal(request) is None:
                if request.method == "GET":
                    raise web.HTTPSeeOther(f"/signin?next={quote(request.path_qs, safe='')}")
                raise web.HTTPUnauthorized(text="sign in first\n")
            return await handler(request)

        return require_signin


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower() if parts.scheme and parts.netloc else ""
