"""``solstice``: the all-in-one single node."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import click

from common.cli import logging_options, run_cli


@click.group(
    epilog="""\b
Examples:
  solstice serve                       # state in ~/.local/state/solstice, local driver
  solstice serve --data-dir /var/lib/solstice --listen 0.0.0.0:8080
  solstice token create --name alice --role operate --expires 90d
"""
)
def cli() -> None:
    """Solstice CI on one machine: webhooks, orchestrator and runners together.

    Single-node mode needs no configuration: state lives in SQLite, jobs go
    through an in-process queue, and the local driver runs every job.
    """


@cli.command(
    epilog="""\b
Examples:
  solstice serve
  solstice serve --data-dir ./ci-data --listen 0.0.0.0:8080 --grpc 127.0.0.1:50051
  SOLSTICE_GITHUB_WEBHOOK_SECRET=... SOLSTICE_GITHUB_APP_ID=12345 \\
    SOLSTICE_GITHUB_PRIVATE_KEY_FILE=app.pem solstice serve
  solstice serve --config solstice.yaml     # restrict labels, choose a driver, ...

\b
Every setting also comes from SOLSTICE_* variables (README: SOLSTICE_DATA_DIR,
SOLSTICE_LISTEN, SOLSTICE_GRPC, SOLSTICE_ADMIN_*, SOLSTICE_GITHUB_*,
SOLSTICE_FORGEJO_*); flags win. --grpc serves runners only; ciadm uses
<data-dir>/admin.sock (found by itself on this host; this user and root need
no token). Remote ciadm: admin.listen with admin.tls_cert/tls_key, and a token
from `solstice token create`. GET /healthz answers 200 once everything is up.
Ctrl-C (or SIGTERM) stops taking jobs, lets running ones finish for
shutdown_grace, requeues the rest.
"""
)
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="State, queue, logs and runner directories (default $SOLSTICE_DATA_DIR or ~/.local/state/solstice).")
@click.option("--listen", default=None, metavar="HOST:PORT",
              help="HTTP: webhooks, job pages, /healthz (default $SOLSTICE_LISTEN or 127.0.0.1:8080).")
@click.option("--grpc", "grpc_address", default=None, metavar="HOST:PORT",
              help="gRPC for runners only (default $SOLSTICE_GRPC or 127.0.0.1:50051).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              envvar="SOLSTICE_CONFIG", default=None, help="YAML settings for anything else (see README).")
@logging_options
def serve(data_dir: Path | None, listen: str | None, grpc_address: str | None, config_path: Path | None) -> None:
    """Run webhooks, the orchestrator and the local driver in this one process.

    State lives in SQLite under the data directory, so a restart keeps every
    job; with no configuration the local driver runs every runs_on label.
    """
    from common.config import load_config
    from orchestrator.singlenode.server import serve as run_serve
    from orchestrator.singlenode.settings import ServeSettings

    settings = load_config(ServeSettings, config_path)
    flags = {k: v for k, v in (("data_dir", data_dir), ("listen", listen), ("grpc", grpc_address)) if v is not None}
    settings = dataclasses.replace(settings, **flags)  # type: ignore[arg-type]

    def say(line: str) -> None:
        click.echo(line)

    raise SystemExit(asyncio.run(run_serve(settings, say)))


@cli.group(epilog="""\b
Examples:
  solstice token create --name alice --role operate --expires 90d
  solstice token create --name dashboard --role read --data-dir /var/lib/solstice
  solstice token list
  solstice token revoke alice
""")
def token() -> None:
    """Operator tokens for remote ciadm and the web sign-in: create, list, revoke.

    Roles: read (list, status, logs, hosts), operate (+ submit, cancel, retry),
    admin (+ drain, tokens). Written into the node's state.sqlite (running or
    not); a token is printed once and only its hash is kept. ciadm on this
    host needs none.
    """


def _token_commands() -> None:
    from orchestrator.operators.cli import add_token_commands

    def locate(data_dir: Path | None) -> str:
        from common.config import load_config
        from common.errors import ConfigError
        from orchestrator.singlenode.settings import ServeSettings

        settings = load_config(ServeSettings)
        if data_dir is not None:
            settings = dataclasses.replace(settings, data_dir=data_dir)
        if not settings.data_dir.is_dir():  # a mistyped --data-dir must not mint tokens nobody checks
            raise ConfigError(f"no data directory {settings.data_dir}: run `solstice serve` there once first, "
                              "or give --data-dir / $SOLSTICE_DATA_DIR")
        return settings.prepared_store_url()

    where = click.option("--data-dir", "where", type=click.Path(file_okay=False, path_type=Path), default=None,
                         help="The node's data directory (default $SOLSTICE_DATA_DIR or ~/.local/state/solstice).")
    add_token_commands(token, "solstice", where, locate)


_token_commands()
main = run_cli(cli)
