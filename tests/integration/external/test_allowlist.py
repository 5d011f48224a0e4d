"""The allowlist: strict parsing with line numbers; reloads that take valid versions and keep invalid ones out."""

from __future__ import annotations

import logging
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from integration.events import Forge
from integration.external.allowlist import AllowlistInvalid, Downstream, RepoKey, parse_allowlist
from integration.external.allowlist_source import AllowlistSource, AllowlistUnreadable
from integration.external.levels import Level
from integration.external.store import open_external_store
from integration.forges.http import ForgeHttp, RetryPolicy
from tests.fakes.serving import serve_on_loopback
from tests.integration.external.conftest import ALLOWLIST

UP = RepoKey.parse("octo-org/octo-repo")


def test_levels_and_both_forges_are_read():
    allowlist = parse_allowlist(ALLOWLIST + """\
  forgejo:lab/upstream:
    forgejo:lab/riscv-ci:
      level: l3
      webhook_url: https://ci.lab.example/hooks/solstice
    acme/l2-ci: {level: L2}
""", "test.yaml")
    assert [(str(e.repo), e.level) for e in allowlist.downstreams_of(UP)] == [
        ("github:acme/l1-ci", Level.L1), ("github:acme/l2-ci", Level.L2), ("github:acme/l3-ci", Level.L3),
        ("github:acme/l4-ci", Level.L4)]
    lab = RepoKey(Forge.FORGEJO, "lab/upstream")
    riscv = RepoKey(Forge.FORGEJO, "lab/riscv-ci")
    assert allowlist.entry(lab, riscv) == Downstream(riscv, Level.L3, "https://ci.lab.example/hooks/solstice")
    assert allowlist.level(lab, RepoKey.parse("acme/l2-ci")) == Level.L2
    assert allowlist.level(lab, RepoKey.parse("acme/l4-ci")) is None  # levels are per upstream
    assert allowlist.best_level(RepoKey.parse("acme/l2-ci")) == Level.L2
    assert allowlist.best_level(RepoKey.parse("acme/unknown")) is None
    assert parse_allowlist("version: 1\n", "empty.yaml").upstreams == {}


@pytest.mark.parametrize(("text", "line", "problem"), [
    ("version: 1\nupstreams:\n  octo/repo:\n    acme/ci: L5\n", 4, "'L5' is not a level: use L1, L2, L3 or L4"),
    ("version: 2\n", 1, "version '2' is not supported: use version: 1"),
    ("upstreams: {}\n", 1, "the allowlist has no 'version'"),
    ("version: 1\nextra: true\n", 2, "unknown key 'extra' at the top"),
    ("version: 1\nupstreams:\n  octo/repo:\n    acme/ci: L1\n    acme/ci: L2\n", 5,
     "'acme/ci' appears twice in github:octo/repo (first on line 4)"),
    ("version: 1\nupstreams:\n  octo/repo:\n    acme/ci: L1\n    github:acme/ci: L2\n", 3,
     "downstream github:acme/ci appears twice under github:octo/repo"),
    ("version: 1\nupstreams:\n  octo/repo:\n    forgejo:lab/ci: L1\n", 4,
     "Forgejo downstream forgejo:lab/ci needs a webhook_url"),
    ("version: 1\nupstreams:\n  octo/repo:\n    lab/ci:\n      level: L1\n      url: https://x\n", 6,
     "unknown key 'url' for downstream github:lab/ci"),
    ("version: 1\nupstreams:\n  octo/repo:\n    forgejo:lab/ci:\n      level: L1\n      webhook_url: ftp://x\n", 6,
     "webhook_url 'ftp://x' must be an https URL"),
    ("version: 1\nupstreams:\n  octo/repo:\n    not a repo: L1\n", 4, "is not a github repository"),
    ("version: 1\nupstreams:\n  gitlab:octo/repo: {}\n", 3, "'gitlab' is not a forge"),
    ("version: 1\nupstreams:\n  octo/repo:\n    octo/repo: L1\n", 4, "cannot be its own downstream"),
    ("version: 1\nupstreams:\n  octo/repo: [a, b]\n", 3, "must be a mapping"),
    ("version: 1\nupstreams:\n  octo/repo:\n    acme/ci: L1\n   bad indent: x\n", 5, "not valid YAML"),
])
def test_every_mistake_names_its_line(text: str, line: int, problem: str):
    with pytest.raises(AllowlistInvalid) as caught:
        parse_allowlist(text, "allow.yaml")
    assert caught.value.line == line, caught.value
    assert problem in caught.value.problem
    assert str(caught.value).startswith(f"allowlist allow.yaml:{line}: ")


async def test_a_file_reload_takes_valid_versions_and_keeps_invalid_ones_out(tmp_path: Path, caplog):
    path = tmp_path / "allowlist.yaml"
    path.write_text(ALLOWLIST)
    store = open_external_store(str(tmp_path / "x.sqlite"))
    await store.open()
    try:
        source = AllowlistSource(str(path), store, None)
        await source.start()
        assert source.current.best_level(RepoKey.parse("acme/l4-ci")) == Level.L4
        first = source.current.digest
        # Demote acme/l4-ci and drop acme/l1-ci: the next refresh takes it at once.
        path.write_text(ALLOWLIST.replace("acme/l4-ci: L4", "acme/l4-ci: L2").replace("    acme/l1-ci: L1\n", ""))
        assert await source.refresh() is True
        assert source.current.best_level(RepoKey.parse("acme/l4-ci")) == Level.L2
        assert source.current.best_level(RepoKey.parse("acme/l1-ci")) is None
        demoted = source.current
        # An invalid version is kept out, with its line in the log and in the status.
        path.write_text(ALLOWLIST.replace("acme/l2-ci: L2", "acme/l2-ci: L9"))
        with caplog.at_level(logging.ERROR, logger="integration.external.allowlist_source"):
            assert await source.refresh() is False
        assert source.current is demoted
        assert "allowlist.yaml:5: downstream github:acme/l2-ci: 'L9' is not a level" in source.status.error
        assert any("previous one stays in force" in r.getMessage() and ":5:" in r.getMessage() for r in caplog.records)
        # A missing file changes nothing either.
        path.unlink()
        assert await source.refresh() is False
        assert source.current is demoted and "cannot read the allowlist" in source.status.error
        assert source.current.digest != first and source.versions == 2
    finally:
        await store.close()


async def test_a_restart_with_an_invalid_file_uses_the_kept_version(tmp_path: Path):
    path = tmp_path / "allowlist.yaml"
    path.write_text(ALLOWLIST)
    store = open_external_store(str(tmp_path / "x.sqlite"))
    await store.open()
    try:
        await AllowlistSource(str(path), store, None).start()
        path.write_text("version: 1\nupstreams: [\n")
        again = AllowlistSource(str(path), store, None)
        await again.start()
        assert again.current.best_level(RepoKey.parse("acme/l3-ci")) == Level.L3
        assert "not valid YAML" in again.status.error
    finally:
        await store.close()


async def test_an_allowlist_url_is_read_and_refreshed(tmp_path: Path):
    served = {"text": ALLOWLIST, "status": 200}

    async def allowlist(request: web.Request) -> web.Response:
        return web.Response(text=served["text"], status=served["status"], content_type="text/yaml")

    app = web.Application()
    app.router.add_get("/octo-org/octo-repo/main/.solstice/allowlist.yaml", allowlist)
    runner, url = await serve_on_loopback(app)
    store = open_external_store(str(tmp_path / "x.sqlite"))
    await store.open()
    try:
        async with aiohttp.ClientSession() as session:
            http = ForgeHttp(session, "allowlist", RetryPolicy(1, 0.01, 0.01, 5))
            location = f"{url}/octo-org/octo-repo/main/.solstice/allowlist.yaml"
            with pytest.raises(AllowlistUnreadable, match="must be https"):
                AllowlistSource(location, store, http)
            source = AllowlistSource(location, store, http, allow_http=True)
            await source.start()
            assert source.current.best_level(RepoKey.parse("acme/l1-ci")) == Level.L1
            served["text"] = ALLOWLIST.replace("acme/l1-ci: L1", "acme/l1-ci: L3")
            assert await source.refresh() is True
            assert source.current.best_level(RepoKey.parse("acme/l1-ci")) == Level.L3
            served["status"] = 502
            assert await source.refresh() is False
            assert source.current.best_level(RepoKey.parse("acme/l1-ci")) == Level.L3
            assert "502" in source.status.error
    finally:
        await store.close()
        await runner.cleanup()
