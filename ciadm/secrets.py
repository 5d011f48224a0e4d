"""``ciadm secret``: set, list and remove secrets; show who was given which.

A value is read from standard input (piped or redirected: one trailing
newline is dropped) or, on a terminal, from a prompt that does not echo -
never from the command line, where ``ps`` and shell histories would keep it.
"""

from __future__ import annotations

import sys

import click

from ciadm import format as fmt
from ciadm.cli import cli
from ciadm.session import json_option as _json_option
from ciadm.session import run as _run
from ciadm.session import show as _show
from common.cli import fail
from common.workflow.names import ENV_NAME_RULE, is_env_name

SCOPE_HELP = "FORGE/OWNER/REPO (a repository) or FORGE/OWNER (every repository of that owner)"


def read_value() -> str:
    """The secret value from stdin or a no-echo prompt; exits 2 when it is empty."""
    if sys.stdin.isatty():
        value = click.prompt("Secret value", hide_input=True, confirmation_prompt=True, err=True, default="",
                             show_default=False)
    else:
        value = sys.stdin.read()
        value = value.removesuffix("\n").removesuffix("\r")
    if not value:
        fail("the secret value is empty (give it on standard input)", 2)
    return value


@cli.group(epilog=f"""\b
Examples:
  ciadm secret set github/acme/widgets DEPLOY_TOKEN < token.txt
  ciadm secret set github/acme/widgets SIGNING_KEY --ref refs/heads/main --ref 'refs/tags/*' < key.pem
  printf %s "$NPM_TOKEN" | ciadm secret set github/acme NPM_TOKEN
  ciadm secret list github/acme/widgets
  ciadm secret rm github/acme/widgets DEPLOY_TOKEN
  ciadm secret audit --repo github/acme/widgets

\b
SCOPE is {SCOPE_HELP}. Values are never shown: list prints names,
restrictions and dates only. See docs/secrets.md.
""")
def secret() -> None:
    """Manage the secrets jobs receive (trusted jobs only, by the names they declare)."""


@secret.command(name="set", epilog="""\b
Examples:
  ciadm secret set github/acme/widgets DEPLOY_TOKEN          # prompts, without echo
  ciadm secret set github/acme/widgets DEPLOY_TOKEN < token.txt
  ciadm secret set forgejo/infra/site SSH_KEY --ref refs/heads/main < id_ed25519
""")
@click.argument("scope")
@click.argument("name")
@click.option("--ref", "refs", multiple=True, metavar="PATTERN",
              help="Only jobs building a matching ref get it (refs/heads/main, 'refs/tags/*'); repeatable.")
@_json_option
@click.pass_context
def set_secret(ctx: click.Context, scope: str, name: str, refs: tuple[str, ...], as_json: bool) -> None:
    """Create or replace secret NAME of SCOPE; the value comes from standard input.

    Setting a secret again replaces its value and its ref restrictions.
    """
    if not is_env_name(name):
        fail(f"invalid secret name {name!r}: use {ENV_NAME_RULE} (it becomes an environment variable)", 2)
    value = read_value()
    info = _run(ctx, lambda client: client.set_secret(scope, name, value, refs))
    _show(as_json, fmt.secret_json(info),
          [f"secret {info.name} set for {info.scope} ({', '.join(info.refs) or 'every ref'}; {info.store} store)"])


@secret.command(name="list", epilog="""\b
Examples:
  ciadm secret list github/acme/widgets
  ciadm secret list github/acme --json | jq -r '.[].name'
""")
@click.argument("scope")
@_json_option
@click.pass_context
def list_secrets(ctx: click.Context, scope: str, as_json: bool) -> None:
    """List the secrets of SCOPE: names, ref restrictions, last update - never values."""
    answer = _run(ctx, lambda client: client.list_secrets(scope))
    found = list(answer.secrets)
    _show(as_json, [fmt.secret_json(i) for i in found], fmt.secrets_table(found) if found else [],
          empty=f"no secrets in {scope} ({answer.store} store)")


@secret.command(name="rm", epilog="""\b
Examples:
  ciadm secret rm github/acme/widgets DEPLOY_TOKEN
""")
@click.argument("scope")
@click.argument("name")
@click.pass_context
def remove_secret(ctx: click.Context, scope: str, name: str) -> None:
    """Delete secret NAME of SCOPE."""
    _run(ctx, lambda client: client.delete_secret(scope, name))
    click.echo(f"secret {name} removed from {scope}")


@secret.command(name="audit", epilog="""\b
Examples:
  ciadm secret audit --job job-0f3c...
  ciadm secret audit --repo github/acme --json | jq '.[] | select(.outcome == "refused")'
""")
@click.option("--job", "job_id", metavar="JOB", default="", help="Only this job's attempts.")
@click.option("--repo", "scope", metavar="SCOPE", default="", help="Only this repository (or owner's repositories).")
@click.option("--limit", type=click.IntRange(1, 1000), default=50, show_default=True, help="At most this many.")
@_json_option
@click.pass_context
def audit(ctx: click.Context, job_id: str, scope: str, limit: int, as_json: bool) -> None:
    """Show secret deliveries, newest first: job attempt, repository, ref, names, outcome."""
    found = _run(ctx, lambda client: client.secret_audit(job_id, scope, limit))
    _show(as_json, [fmt.delivery_json(r) for r in found], fmt.deliveries_table(found) if found else [],
          empty="no secret deliveries recorded")
