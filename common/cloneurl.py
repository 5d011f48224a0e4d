"""Credentials in clone URLs (``https://user:password@host/repo.git``): cut out, put back, hidden.

AdminService keeps a submitted URL's credentials apart from the job record
(``orchestrator.admin.admission``) and only the runner gets them back
(``with_userinfo``); ``runner.checkout`` then moves them into a header.
"""

from __future__ import annotations

import urllib.parse


def split_userinfo(url: str) -> tuple[str, str]:
    """``url`` without ``user[:password]@``, and that part ("" when there is none).

    For ssh URLs a bare user name is the login, not a secret: only a password is cut.
    """
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return url, ""
    if not parts.netloc or "@" not in parts.netloc:
        return url, ""
    userinfo, _, hostport = parts.netloc.rpartition("@")
    if parts.scheme not in ("http", "https") and ":" not in userinfo:
        return url, ""
    return urllib.parse.urlunsplit(parts._replace(netloc=hostport)), userinfo


def with_userinfo(url: str, userinfo: str) -> str:
    """``url`` with ``userinfo@`` put back in front of its host (what the runner is given)."""
    if not userinfo:
        return url
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{userinfo}@{parts.netloc}"))


def redact_url(url: str) -> str:
    """``url`` as shown to operators: any credentials left in it (records from before) cut out."""
    return split_userinfo(url)[0]
