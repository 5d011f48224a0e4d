"""Links to the forges' own pages (repository, commit, pull request) for what the dashboard shows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import quote

GITHUB_WEB = "https://github.com"


def github_web_url(api_url: str) -> str:
    """The web address of a GitHub whose API is ``api_url`` (github.com, or an Enterprise server)."""
    api = api_url.rstrip("/")
    if api in ("https://api.github.com", ""):
        return GITHUB_WEB
    return api.removesuffix("/api/v3")


@dataclass(frozen=True)
class ForgeLinks:
    """Web base URL per forge name (``github``, ``forgejo``); a forge without one gets no links."""

    web: Mapping[str, str] = field(default_factory=lambda: {"github": GITHUB_WEB})

    def _base(self, forge: str, repo: str) -> str:
        base = self.web.get(forge, "")
        if not base or not repo or repo.startswith("/") or repo.count("/") != 1:
            return ""  # local paths and unknown forges have no web page
        owner, name = repo.split("/")
        return f"{base.rstrip('/')}/{quote(owner, safe='')}/{quote(name, safe='')}"

    def repo(self, forge: str, repo: str) -> str:
        return self._base(forge, repo)

    def commit(self, forge: str, repo: str, sha: str) -> str:
        base = self._base(forge, repo)
        return f"{base}/commit/{quote(sha, safe='')}" if base and sha else ""

    def file(self, forge: str, repo: str, sha: str, path: str, line: int = 0) -> str:
        """A file of the repository at ``sha`` (at ``line`` when given): where a failing test is."""
        base = self._base(forge, repo)
        if not base or not sha or not path:
            return ""
        kind = "blob" if forge == "github" else "src/commit"
        anchor = f"#L{line}" if line > 0 else ""
        return f"{base}/{kind}/{quote(sha, safe='')}/{quote(path)}{anchor}"

    def pull(self, forge: str, repo: str, number: int) -> str:
        base = self._base(forge, repo)
        kind = "pull" if forge == "github" else "pulls"
        return f"{base}/{kind}/{number}" if base and number > 0 else ""
