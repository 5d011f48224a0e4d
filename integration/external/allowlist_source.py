"""The allowlist in force: read from a file or an https URL, kept, refreshed, bad versions kept out.

``start()`` reads the allowlist; when that fails (the URL is down, the file
is invalid) the last valid version kept in the store is used, so a restart
never runs with less than before. ``refresh()`` reads it again: a changed,
valid version takes effect at once (a repository removed or demoted stops
receiving and reporting with the next request); an invalid one is logged
with its line and kept out, and the previous version stays in force.
``run()`` refreshes forever: a file is checked for a change every few
seconds (size and mtime), a URL is fetched every ``allowlist_refresh``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from integration.errors import ForgeError, IntegrationError
from integration.external.allowlist import Allowlist, AllowlistInvalid, parse_allowlist
from integration.external.records import CachedAllowlist
from integration.external.store import ExternalStore
from integration.forges.github_app import USER_AGENT
from integration.forges.http import ForgeHttp

log = logging.getLogger(__name__)

FILE_CHECK_INTERVAL = 5.0


class AllowlistUnreadable(IntegrationError):
    """The allowlist could not be read (file missing, URL down)."""


@dataclass(frozen=True, slots=True)
class AllowlistStatus:
    """What the operator (and the dashboard) should know about the allowlist."""

    source: str
    digest: str  # of the version in force; "" when none
    loaded_at: float | None  # when that version took effect
    checked_at: float | None  # the last read, successful or not
    error: str  # why the last read was not taken; "" when it was


class AllowlistSource:
    """The current ``Allowlist`` of ``location`` (a path, or an http(s) URL read with ``http``)."""

    def __init__(self, location: str, store: ExternalStore, http: ForgeHttp | None, allow_http: bool = False,
                 refresh_every: float = 300.0, clock: Callable[[], float] = time.time) -> None:
        self.location = location
        self.is_url = location.startswith(("https://", "http://"))
        if location.startswith("http://") and not allow_http:
            raise AllowlistUnreadable(f"the allowlist URL {location} must be https (external.allow_http is off)")
        if self.is_url and http is None:
            raise AllowlistUnreadable("an allowlist URL needs an HTTP client")
        self.store = store
        self.http = http
        self.allow_http = allow_http
        self.refresh_every = refresh_every
        self._clock = clock
        self.current = Allowlist()
        self._loaded_at: float | None = None
        self._checked_at: float | None = None
        self._error = ""
        self._file_stamp: tuple[int, int] | None = None
        self.versions = 0  # versions taken since start

    @property
    def status(self) -> AllowlistStatus:
        return AllowlistStatus(self.location, self.current.digest, self._loaded_at, self._checked_at, self._error)

    async def _read(self) -> bytes:
        if self.is_url:
            assert self.http is not None
            try:
                answer = await self.http.request("GET", self.location, what="read the allowlist",
                                                 headers={"User-Agent": USER_AGENT, "Accept": "*/*"})
            except ForgeError as err:
                raise AllowlistUnreadable(str(err)) from err
            return answer.text.encode()
        try:
            return await asyncio.to_thread(Path(self.location).read_bytes)
        except OSError as err:
            raise AllowlistUnreadable(f"cannot read the allowlist {self.location}: {err.strerror}") from err

    def _take(self, allowlist: Allowlist) -> None:
        changed = allowlist.digest != self.current.digest
        self.current = allowlist
        self._error = ""
        if changed:
            self._loaded_at = self._clock()
            self.versions += 1
            count = sum(len(entries) for entries in allowlist.upstreams.values())
            log.info("allowlist version taken", extra={"fields": {
                "source": self.location, "digest": allowlist.digest[:12], "upstreams": len(allowlist.upstreams),
                "downstreams": count}})

    async def refresh(self) -> bool:
        """Read the allowlist once; True when a new version took effect."""
        self._checked_at = self._clock()
        try:
            raw = await self._read()
            allowlist = parse_allowlist(raw, self.location, self.allow_http)
        except AllowlistInvalid as err:
            self._error = str(err)
            log.error("allowlist version not taken, the previous one stays in force: %s", err)
            return False
        except AllowlistUnreadable as err:
            self._error = str(err)
            log.warning("allowlist not read, the previous version stays in force: %s", err)
            return False
        if allowlist.digest == self.current.digest:
            self._error = ""
            return False
        self._take(allowlist)
        try:
            await self.store.save_allowlist(CachedAllowlist(self.location, raw.decode(), allowlist.digest,
                                                            self._clock()))
        except IntegrationError as err:
            log.warning("the allowlist took effect but could not be kept in the store: %s", err)
        return True

    async def start(self) -> None:
        """Read the allowlist, or fall back to the last valid version kept in the store."""
        self._file_stamp = self._stamp()
        if await self.refresh():
            return
        kept = await self.store.load_allowlist(self.location)
        if kept is None:
            log.warning("no allowlist in force yet: nothing is relayed and no results are taken until %s is valid",
                        self.location)
            return
        try:
            allowlist = parse_allowlist(kept.body, f"{self.location} (kept copy)", self.allow_http)
        except AllowlistInvalid as err:  # written by an older version with other rules
            log.error("the kept allowlist is not valid either: %s", err)
            return
        error = self._error
        self._take(allowlist)
        self._error = error
        log.warning("using the allowlist kept from %s", time.strftime("%Y-%m-%d %H:%M:%S",
                                                                       time.localtime(kept.loaded_at)))

    def _stamp(self) -> tuple[int, int] | None:
        if self.is_url:
            return None
        try:
            stat = os.stat(self.location)
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    async def run(self) -> None:
        """Forever (owned by ``ExternalCI``): refresh when the file changes, and every ``refresh_every`` s."""
        next_full = time.monotonic() + self.refresh_every
        while True:
            await asyncio.sleep(min(self.refresh_every, FILE_CHECK_INTERVAL) if not self.is_url else self.refresh_every)
            stamp = self._stamp()
            if self.is_url or stamp != self._file_stamp or time.monotonic() >= next_full:
                self._file_stamp = stamp
                next_full = time.monotonic() + self.refresh_every
                await self.refresh()
