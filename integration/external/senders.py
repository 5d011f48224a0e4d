"""How a dispatch reaches a downstream: GitHub ``repository_dispatch``, or a signed webhook (Forgejo).

Both raise what ``integration.forges.http.ForgeHttp`` raises: ``ForgeUnavailable``
(try again later), ``ForgeRejected`` / ``ForgeAuthError`` / ``UnsafeForgeUrl``
(the same call would fail again).

GitHub: the Solstice App must be installed on the downstream repository;
its installation is looked up once (``GET /repos/{o}/{r}/installation`` with
the App JWT) and its token sends the dispatch (``contents: write``).

Forgejo has no repository_dispatch: the same body is POSTed to the
downstream's ``webhook_url`` with ``X-Solstice-Signature-256: sha256=<hex
HMAC-SHA256 of the body>``. Each downstream has a key of its own, derived
from the relay's secret (``relay_secret``; ``solstice-integration
relay-secret REPO`` prints it), so no downstream can sign dispatches to
another.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Protocol

from integration.errors import ForgeAuthError, ForgeUnavailable
from integration.external.allowlist import Downstream, RepoKey
from integration.external.records import DispatchRecord
from integration.forges.github_app import USER_AGENT, GitHubAppAuth, github_headers
from integration.forges.http import ForgeHttp, api_url
from integration.signature import sign

EVENT_HEADER = "X-Solstice-Event"
DELIVERY_HEADER = "X-Solstice-Delivery"
SIGNATURE_HEADER = "X-Solstice-Signature-256"


class DispatchSender(Protocol):
    async def send(self, record: DispatchRecord, entry: Downstream) -> None:
        """Deliver ``record.body`` to ``entry``'s repository."""


def relay_secret(master: str, downstream: RepoKey) -> str:
    """The key the relay signs ``downstream``'s webhooks with (hex), derived from the relay's secret."""
    return hmac.new(master.encode(), f"solstice-relay:{downstream}".encode(), hashlib.sha256).hexdigest()


class GitHubDispatcher:
    """``repository_dispatch`` as the Solstice App's installation on each downstream repository."""

    def __init__(self, http: ForgeHttp, auth: GitHubAppAuth) -> None:
        self.http = http
        self.auth = auth
        self._installations: dict[str, int] = {}

    async def _installation(self, repo: RepoKey) -> int:
        cached = self._installations.get(repo.name)
        if cached:
            return cached
        owner, _, name = repo.name.partition("/")
        answer = await self.http.request(
            "GET", api_url(self.auth.api_url, "repos", owner, name, "installation"),
            what=f"find the Solstice App's installation on {repo.name}",
            headers=github_headers("Bearer", self.auth.app_jwt()),
        )
        found = answer.body.get("id") if isinstance(answer.body, dict) else None
        if not isinstance(found, int) or isinstance(found, bool):
            raise ForgeUnavailable(f"GitHub answered the installation of {repo.name} without an id")
        self._installations[repo.name] = found
        return found

    async def send(self, record: DispatchRecord, entry: Downstream) -> None:
        owner, _, name = record.downstream.name.partition("/")
        installation = await self._installation(record.downstream)
        token = await self.auth.token(installation)
        await self.http.request(
            "POST", api_url(self.auth.api_url, "repos", owner, name, "dispatches"),
            what=f"dispatch {record.delivery} to {record.downstream.name}",
            headers=github_headers("token", token), body=json.loads(record.body),
        )


class WebhookDispatcher:
    """The dispatch body POSTed to a Forgejo downstream's ``webhook_url``, signed with its own key."""

    def __init__(self, http: ForgeHttp, master_secret: str, event_type: str) -> None:
        self.http = http
        self.master_secret = master_secret
        self.event_type = event_type

    async def send(self, record: DispatchRecord, entry: Downstream) -> None:
        if not self.master_secret:
            raise ForgeAuthError("SOLSTICE_RELAY_WEBHOOK_SECRET is not set: webhooks to Forgejo downstreams "
                                 "cannot be signed")
        body = record.body.encode()
        headers = {
            "Content-Type": "application/json", "User-Agent": USER_AGENT, EVENT_HEADER: self.event_type,
            DELIVERY_HEADER: record.id,
            SIGNATURE_HEADER: "sha256=" + sign(relay_secret(self.master_secret, record.downstream), body),
        }
        await self.http.request("POST", entry.webhook_url, what=f"dispatch {record.delivery} to {record.downstream}",
                                headers=headers, data=body)
