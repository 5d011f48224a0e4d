"""HTTP to HashiCorp Vault: one client token, kept alive for the node's life.

Auth is a static **token** (``secrets.vault.token`` or ``token_file``; its
TTL and renewability are read with ``auth/token/lookup-self``) or an
**AppRole** login (``auth/<approle_mount>/login`` with a role id and a secret
id). A token with a TTL is renewed (``auth/token/renew-self``) when two
thirds of its lease have passed; an AppRole token that cannot be renewed any
more is replaced by a new login. A request answered 403 is retried once
after re-authenticating, because a token can expire or be revoked between
renewals; a static token that is no longer valid is reported as such.

Vault's answers are JSON; errors are ``{"errors": [...]}`` with the HTTP
status (403 permission denied, 404 not found, 400 bad request, 5xx). Every
failure becomes ``SecretStoreUnavailable`` with a one-line message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from orchestrator.secrets.errors import SecretStoreUnavailable
from orchestrator.secrets.settings import VaultConfig

log = logging.getLogger(__name__)

RENEW_AT = 2 / 3  # of a lease: renew (or log in again) once this much of it has passed
RETRY_MIN = 0.5  # seconds before the first retry of a failed renewal; doubling up to RETRY_MAX
RETRY_MAX = 30.0


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any  # decoded JSON object, or None

    def errors(self) -> str:
        found = self.body.get("errors") if isinstance(self.body, dict) else None
        text = "; ".join(" ".join(str(e).split()) for e in found) if isinstance(found, list) else ""
        return text or f"HTTP {self.status}"


@dataclass
class _Lease:
    token: str
    obtained: float  # clock() when Vault issued or last renewed it
    duration: float  # seconds; 0 = does not expire
    renewable: bool

    @property
    def expires(self) -> float | None:
        return self.obtained + self.duration if self.duration > 0 else None


class VaultClient:
    """Authenticated JSON requests to one Vault. Lifetime: ``open`` once, ``close`` once."""

    def __init__(self, config: VaultConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.clock = clock
        self.base = config.address.rstrip("/") + "/v1/"
        self._session: aiohttp.ClientSession | None = None
        self._lease: _Lease | None = None
        self._auth_lock = asyncio.Lock()
        self._renewer: asyncio.Task[None] | None = None
        self.renewals = 0  # successful renew-self calls (for operators' logs and tests)
        self.logins = 0

    def __repr__(self) -> str:
        return f"VaultClient({self.config.address}, auth={self.config.auth}, token=***)"

    # -- lifetime -----------------------------------------------------------------
    async def open(self) -> None:
        if self._session is not None:
            raise SecretStoreUnavailable("the Vault client is already open")
        context: ssl.SSLContext | bool = True
        if self.config.ca_file is not None:
            try:
                context = ssl.create_default_context(cafile=str(self.config.ca_file))
            except (OSError, ssl.SSLError) as err:
                raise SecretStoreUnavailable(f"cannot load secrets.vault.ca_file {self.config.ca_file}: {err}") from err
        self._session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=float(self.config.timeout)),
            connector=aiohttp.TCPConnector(ssl=context), raise_for_status=False)
        try:
            await self._authenticate()
        except BaseException:
            await self._session.close()
            self._session = None
            raise
        self._renewer = asyncio.create_task(self._keep_alive(), name="vault token renewal")
        self._renewer.add_done_callback(_report_death)

    async def close(self) -> None:
        task, self._renewer = self._renewer, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        session, self._session = self._session, None
        if session is None:
            return
        if self.config.auth == "approle" and self._lease is not None:
            # The node's own login: revoke it rather than leave a live token behind.
            with contextlib.suppress(SecretStoreUnavailable, aiohttp.ClientError, TimeoutError):
                await self._send(session, "POST", "auth/token/revoke-self", self._lease.token)
        self._lease = None
        await session.close()

    # -- requests ------------------------------------------------------------------
    async def read(self, path: str) -> Answer:
        """GET ``path`` (below /v1/) with the client token; a 403 is retried once after re-authenticating."""
        lease = await self._current()
        answer = await self._call("GET", path, lease.token)
        if answer.status == 403:
            if await self._reauthenticate(lease):
                answer = await self._call("GET", path, (await self._current()).token)
        return answer

    async def _call(self, method: str, path: str, token: str | None, body: dict[str, Any] | None = None) -> Answer:
        if self._session is None:
            raise SecretStoreUnavailable("the Vault client is not open")
        try:
            return await self._send(self._session, method, path, token, body)
        except (aiohttp.ClientError, TimeoutError) as err:
            why = "no answer in time" if isinstance(err, TimeoutError) else str(err) or type(err).__name__
            raise SecretStoreUnavailable(f"cannot reach Vault at {self.config.address}: {why}") from err

    async def _send(self, session: aiohttp.ClientSession, method: str, path: str, token: str | None,
                    body: dict[str, Any] | None = None) -> Answer:
        headers = {"Accept": "application/json"}
        if token is not None:
            headers["X-Vault-Token"] = token
        if self.config.namespace:
            headers["X-Vault-Namespace"] = self.config.namespace
        async with session.request(method, self.base + path, headers=headers,
                                   data=None if body is None else json.dumps(body),
                                   allow_redirects=False) as response:
            text = await response.text()
        try:
            decoded = json.loads(text) if text.strip() else None
        except ValueError:
            decoded = None
        return Answer(response.status, decoded)

    # -- the token's life ------------------------------------------------------------
    async def _current(self) -> _Lease:
        lease = self._lease
        expires = lease.expires if lease is not None else None
        if lease is None or (expires is not None and self.clock() >= expires):
            await self._reauthenticate(lease)
            lease = self._lease
        assert lease is not None
        return lease

    async def _reauthenticate(self, seen: _Lease | None) -> bool:
        """Log in again unless another caller already did; False when a static token is just refused."""
        async with self._auth_lock:
            if self._lease is not seen:
                return True  # someone else got a fresh token meanwhile
            if self.config.auth == "token":
                await self._authenticate()  # raises: a static token that lookup-self refuses is dead
                return False  # the token is alive: the 403 was the policy's answer
            await self._authenticate()
            return True

    async def _authenticate(self) -> None:
        if self.config.auth == "approle":
            await self._login()
        else:
            await self._look_up_token()

    async def _look_up_token(self) -> None:
        token = self._static_token()
        answer = await self._call("GET", "auth/token/lookup-self", token)
        if answer.status == 403:
            raise SecretStoreUnavailable(
                f"Vault at {self.config.address} refused the configured token (permission denied): it is "
                "invalid, expired or revoked; give the node a new one (secrets.vault.token / token_file)")
        data = self._expect(answer, "auth/token/lookup-self", "data")
        ttl = float(data.get("ttl") or 0)
        self._lease = _Lease(token, self.clock(), ttl, bool(data.get("renewable")))
        if ttl and not data.get("renewable"):
            log.warning("the Vault token expires in %ds and cannot be renewed", int(ttl))

    async def _login(self) -> None:
        body = {"role_id": self.config.role_id, "secret_id": self._secret_id()}
        path = f"auth/{self.config.approle_mount}/login"
        answer = await self._call("POST", path, None, body)
        if answer.status in (400, 403):
            raise SecretStoreUnavailable(f"Vault refused the AppRole login at {path}: {answer.errors()}")
        auth = self._expect(answer, path, "auth")
        token = auth.get("client_token")
        if not isinstance(token, str) or not token:
            raise SecretStoreUnavailable(f"Vault's answer to {path} holds no client token")
        self._lease = _Lease(token, self.clock(), float(auth.get("lease_duration") or 0), bool(auth.get("renewable")))
        self.logins += 1
        log.info("logged in to Vault with AppRole", extra={"fields": {"lease": int(self._lease.duration)}})

    async def _renew(self) -> None:
        lease = self._lease
        assert lease is not None
        answer = await self._call("POST", "auth/token/renew-self", lease.token, {})
        if answer.status != 200:
            raise SecretStoreUnavailable(f"Vault refused to renew the token: {answer.errors()}")
        auth = self._expect(answer, "auth/token/renew-self", "auth")
        async with self._auth_lock:
            if self._lease is lease:
                self._lease = _Lease(lease.token, self.clock(), float(auth.get("lease_duration") or 0),
                                     bool(auth.get("renewable")))
        self.renewals += 1

    async def _keep_alive(self) -> None:
        """Renew the token at two thirds of its lease (or log in again); owned by ``open``/``close``."""
        failures = 0
        while True:
            lease = self._lease
            if lease is None or lease.expires is None:
                return  # nothing expires: nothing to keep alive
            if self.config.auth == "token" and (not lease.renewable or lease.expires <= self.clock()):
                if lease.renewable:
                    log.error("the Vault token expired; jobs that declare secrets fail until the node gets a new one")
                return  # nothing can extend it (a non-renewable token was warned about at start)
            due = lease.obtained + lease.duration * RENEW_AT
            # After a failure: back off, from half a second up to RETRY_MAX while Vault stays away.
            await asyncio.sleep(max(0.0, due - self.clock()) if failures == 0 else
                                min(RETRY_MAX, RETRY_MIN * 2 ** (failures - 1)))
            try:
                if lease.renewable:
                    try:
                        await self._renew()
                    except SecretStoreUnavailable:
                        if self.config.auth != "approle":
                            raise
                        await self._reauthenticate(lease)
                else:
                    await self._reauthenticate(lease)
                failures = 0
            except SecretStoreUnavailable as err:
                failures += 1
                log.error("keeping the Vault token alive failed: %s", err)

    # -- helpers ----------------------------------------------------------------------
    def _expect(self, answer: Answer, path: str, member: str) -> dict[str, Any]:
        if answer.status != 200:
            raise SecretStoreUnavailable(f"Vault answered {path} with {answer.errors()}")
        inner = answer.body.get(member) if isinstance(answer.body, dict) else None
        if not isinstance(inner, dict):
            raise SecretStoreUnavailable(f"Vault's answer to {path} has no {member!r} object")
        return inner

    def _static_token(self) -> str:
        if self.config.token:
            return self.config.token
        return _read_secret_file(self.config.token_file, "secrets.vault.token_file")

    def _secret_id(self) -> str:
        if self.config.secret_id:
            return self.config.secret_id
        return _read_secret_file(self.config.secret_id_file, "secrets.vault.secret_id_file")


def _report_death(task: asyncio.Task[None]) -> None:
    """The renewal task ends only when nothing can be renewed, or by ``close``; anything else is a bug."""
    if not task.cancelled() and task.exception() is not None:
        log.error("Vault token renewal stopped: %r", task.exception())


def _read_secret_file(path: Any, setting: str) -> str:
    """Read at each login, so an operator can replace the file without restarting the node."""
    try:
        value = str(path.read_text()).strip() if path is not None else ""
    except OSError as err:
        raise SecretStoreUnavailable(f"cannot read {setting} {path}: {err.strerror}") from err
    if not value:
        raise SecretStoreUnavailable(f"{setting} {path} is empty")
    return value
