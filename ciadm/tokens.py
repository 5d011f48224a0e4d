"""``ciadm token create|list|revoke``: operator tokens through AdminService (the admin role).

The same commands exist on the servers (``solstice token``, ``solstice-orchestrator
token``), which write the state store directly: that is how the first token is made.
"""

from __future__ import annotations

from typing import cast

import click

from ciadm.session import echo_json, json_option, run, show
from common.durations import parse_duration
from common.errors import DurationError
from common.rpc import admin_pb2
from common.tokenview import created_note, token_json, tokens_table

ROLES = ("read", "operate", "admin")


def role_value(name: str) -> admin_pb2.OperatorRole:
    # The stubs type Value() as a plain int.
    return cast(admin_pb2.OperatorRole, admin_pb2.OperatorRole.Value(f"OPERATOR_ROLE_{name.upper()}"))


def expiry_seconds(text: str | None) -> float:
    """``--expires 90d`` in seconds; 0 for none (the token never expires)."""
    if not text or text == "never":
        return 0.0
    try:
        return parse_duration(text)
    except DurationError as err:
        raise click.BadParameter(str(err), param_hint="--expires") from None


@click.group(epilog="""\b
Examples:
  ciadm token create --name alice --role operate --expires 90d
  ciadm token list
  ciadm token revoke alice
""")
def token() -> None:
    """Operator tokens (needs the admin role): a token is shown once, the server keeps a hash."""


@token.command(epilog="""\b
Examples:
  ciadm token create --name alice --role operate --expires 90d
  ciadm token create --name dashboard --role read --json | jq -r .token
""")
@click.option("--name", required=True, help="Who the token is for (shown in `ciadm status` of jobs it submits).")
@click.option("--role", type=click.Choice(ROLES), required=True,
              help="read: look; operate: + submit, cancel, retry; admin: + drain, tokens.")
@click.option("--expires", default=None, metavar="DURATION", help="Lifetime, like 90d or 12h [default: never].")
@json_option
@click.pass_context
def create(ctx: click.Context, name: str, role: str, expires: str | None, as_json: bool) -> None:
    """Make a token and print it once (on stdout; a note on stderr)."""
    seconds = expiry_seconds(expires)
    made = run(ctx, lambda client: client.create_token(name, role_value(role), seconds))
    if as_json:
        echo_json({**token_json(made.info), "token": made.token})
        return
    click.echo(made.token)
    click.echo(created_note(made.info), err=True)


@token.command(name="list", epilog="""\b
Examples:
  ciadm token list
  ciadm token list --json | jq '.[] | select(.state == "live")'
""")
@json_option
@click.pass_context
def list_tokens(ctx: click.Context, as_json: bool) -> None:
    """Every token: name, role, live/expired/revoked, id, created, expires (never the token)."""
    tokens = run(ctx, lambda client: client.list_tokens())
    show(as_json, [token_json(t) for t in tokens], tokens_table(tokens) if tokens else [], empty="no tokens")


@token.command(epilog="""\b
Examples:
  ciadm token revoke alice
  ciadm token revoke 0123456789ab      # by id
""")
@click.argument("name")
@json_option
@click.pass_context
def revoke(ctx: click.Context, name: str, as_json: bool) -> None:
    """Revoke a live token by name or id: it is refused from the next call on."""
    info = run(ctx, lambda client: client.revoke_token(name))
    show(as_json, token_json(info), [f"token {info.name!r} ({info.token_id}) revoked"])
