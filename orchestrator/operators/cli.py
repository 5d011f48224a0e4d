"""The ``token`` command group of ``solstice`` and ``solstice-orchestrator``: operator tokens,
written straight into the state store (how the first token is made, node running or not).

    solstice token create --name alice --role operate --expires 90d
    solstice-orchestrator token list --config /etc/solstice/orchestrator.yaml

``ciadm token ...`` does the same remotely through AdminService (admin role).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from common.durations import parse_duration
from common.errors import DurationError
from common.tokenview import created_note, token_json, tokens_table
from orchestrator.admin.token_rpcs import token_info
from orchestrator.operators.roles import ROLE_NAMES, Role
from orchestrator.operators.tokens import OperatorTokens
from orchestrator.store import open_store

T = TypeVar("T")
Locate = Callable[[Any], str]  # the location option's value -> the state store's URL


def _with_tokens(url: str, work: Callable[[OperatorTokens], Awaitable[T]]) -> T:
    async def go() -> T:
        async with open_store(url) as store:
            return await work(OperatorTokens(store))

    return asyncio.run(go())


def _json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


def add_token_commands(group: click.Group, program: str, where: Callable[[Callable[..., Any]], Callable[..., Any]],
                       locate: Locate) -> None:
    """Give ``group`` create / list / revoke; ``where`` is the option naming the store
    (``--config``, ``--data-dir``: its parameter is ``where``), ``locate`` turns its value into a URL."""

    @group.command(epilog=f"""\\b
Examples:
  {program} token create --name alice --role operate --expires 90d
  {program} token create --name ops --role admin --json | jq -r .token
""")
    @click.option("--name", required=True, help="Who the token is for (jobs it submits show it).")
    @click.option("--role", type=click.Choice(ROLE_NAMES), required=True,
                  help="read: look; operate: + submit, cancel, retry; admin: + drain, tokens.")
    @click.option("--expires", default=None, metavar="DURATION", help="Lifetime, like 90d or 12h [default: never].")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON (with the token) instead.")
    @where
    def create(where: Any, name: str, role: str, expires: str | None, as_json: bool) -> None:
        """Make an operator token and print it once; the store keeps only its hash."""
        try:
            seconds = parse_duration(expires) if expires and expires != "never" else None
        except DurationError as err:
            raise click.BadParameter(str(err), param_hint="--expires") from None
        text, record = _with_tokens(locate(where), lambda tokens: tokens.create(name, Role.parse(role), seconds))
        info = token_info(record)
        if as_json:
            _json({**token_json(info), "token": text})
            return
        click.echo(text)
        click.echo(created_note(info), err=True)

    @group.command(name="list", epilog=f"""\\b
Examples:
  {program} token list
  {program} token list --json
""")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
    @where
    def list_tokens(where: Any, as_json: bool) -> None:
        """Every token: name, role, live/expired/revoked, id, created, expires (never the token)."""
        infos = [token_info(r) for r in _with_tokens(locate(where), lambda tokens: tokens.list())]
        if as_json:
            _json([token_json(i) for i in infos])
            return
        for line in tokens_table(infos) if infos else ["no tokens"]:
            click.echo(line)

    @group.command(epilog=f"""\\b
Examples:
  {program} token revoke alice
""")
    @click.argument("name")
    @where
    def revoke(where: Any, name: str) -> None:
        """Revoke a live token by name or id: it is refused from the next call on."""
        record = _with_tokens(locate(where), lambda tokens: tokens.revoke(name))
        click.echo(f"token {record.name!r} ({record.token_id}) revoked")
