"""``solstice-integration``: the webhook receiver and forge reporter (multi-host)."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

import click

from common.cli import logging_options, run_cli
from common.config import load_config
from common.errors import ConfigError
from common.lifecycle import first_to_end
from common.queue import EventConsumer, RabbitJobPublisher, Topology
from common.validation import RequestInvalid
from dashboard.columns import ColumnSource
from integration.admin_link import AdminLink
from integration.app import make_app
from integration.dashboard import open_dashboard
from integration.errors import IntegrationError
from integration.external.allowlist import RepoKey
from integration.external.columns import ExternalColumns
from integration.external.senders import relay_secret
from integration.httpserver import GuardedSite, app_runner
from integration.runtime import Integration
from integration.schedules import schedule_lines
from integration.settings import IntegrationSettings

log = logging.getLogger("integration")


@click.group(
    epilog="""\b
Examples:
  solstice-integration serve --config /etc/solstice/integration.yaml
  SOLSTICE_GITHUB_WEBHOOK_SECRET=... solstice-integration serve --listen 0.0.0.0:8081
"""
)
def cli() -> None:
    """Receive GitHub and Forgejo webhooks and report job results back.

    Runs next to the forge; publishes one job request per workflow job.
    """


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ConfigError(f"listen address {text!r} must be HOST:PORT")
    return host or "127.0.0.1", int(port)


@cli.command(
    epilog="""\b
Examples:
  solstice-integration serve
  solstice-integration serve --config integration.yaml --listen 0.0.0.0:8081
  SOLSTICE_FORGEJO_URL=https://codeberg.example SOLSTICE_FORGEJO_TOKEN=... \\
  SOLSTICE_FORGEJO_WEBHOOK_SECRET=... solstice-integration serve
"""
)
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="YAML settings file (see docs/forges.md); SOLSTICE_* variables override it.")
@click.option("--listen", default=None, help="HOST:PORT for webhooks (default: settings 'listen', 127.0.0.1:8081).")
@logging_options
def serve(config_path: Path | None, listen: str | None) -> None:
    """Serve the webhook endpoints, publish job requests to RabbitMQ and report job events to the forges.

    POST /webhooks/github and /webhooks/forgejo take the forges' deliveries;
    job events from the solstice.events exchange become GitHub check runs and
    Forgejo commit statuses.
    """
    settings = load_config(IntegrationSettings, config_path)
    host, port = parse_listen(listen or settings.listen)
    asyncio.run(_serve(settings, host, port))


def dashboard_columns(integration: Integration) -> list[ColumnSource]:
    """The matrix's columns beyond Solstice's own jobs: out-of-tree CI results, when received here."""
    return [ExternalColumns(integration.external.read)] if integration.external is not None else []


async def _serve(settings: IntegrationSettings, host: str, port: int) -> None:
    topology = Topology(settings.queue_prefix)
    link = AdminLink(settings.admin) if settings.admin.address else None
    if link is None:
        log.warning("admin.address is not set: closed pull requests, superseded heads and 'Re-run' are only logged "
                    "(give an orchestrator's AdminService address and an operate token to act on them)")
    publisher = RabbitJobPublisher(settings.amqp_url, topology)
    await publisher.start()
    try:
        async with Integration(settings, publisher, canceller=link, retrier=link) as integration, \
                open_dashboard(settings, dashboard_columns(integration), integration.store) as (dashboard, metrics):
            consumer = EventConsumer(
                settings.amqp_url, "integration", integration.reporter.handle, topology, bindings=("job.#",)
            )
            await consumer.start()
            greenness_consumer = None
            if integration.greenness is not None:
                # A queue of its own: the last-green record never waits for (or on) a forge report.
                greenness_consumer = EventConsumer(settings.amqp_url, "greenness",
                                                   integration.greenness.recorder.handle, topology, bindings=("job.#",))
                await greenness_consumer.start()
            app = make_app(integration.service, settings.http, metrics, dashboard)
            if integration.external is not None:
                integration.external.add_routes(app)  # out-of-tree CI: the results API and its read side
            if integration.greenness is not None:
                integration.greenness.add_routes(app)  # last-green JSON, badges, the hooks' delivery log
                if dashboard is not None:
                    dashboard.add_column(integration.greenness.column)
            runner = app_runner(app, settings.http)
            try:
                await runner.setup()
                await GuardedSite(runner, settings.http, host=host, port=port).start()
                log.info("listening for webhooks", extra={"fields": {"address": f"http://{host}:{port}/webhooks/"}})
                await _run_until_signal(integration)
            finally:
                await runner.cleanup()
                await consumer.stop()
                if greenness_consumer is not None:
                    await greenness_consumer.stop()
    finally:
        await publisher.close()


@cli.command(
    epilog="""\b
Examples:
  solstice-integration schedules --config /etc/solstice/integration.yaml
""",
)
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="YAML settings file (its 'store' is read); SOLSTICE_* variables override it.")
def schedules(config_path: Path | None) -> None:
    """List the workflows' schedules: repository, branch, cron (UTC), last and next run.

    A branch's schedules are those of the workflow at its head (each push
    to it replaces them); see docs/workflow.md#schedules.
    """
    settings = load_config(IntegrationSettings, config_path)
    for line in asyncio.run(schedule_lines(settings)):
        click.echo(line)


@cli.command(
    "relay-secret",
    epilog="""\b
Examples:
  SOLSTICE_RELAY_WEBHOOK_SECRET=... solstice-integration relay-secret forgejo:lab/riscv-ci
""",
)
@click.argument("repository")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="YAML settings file; SOLSTICE_RELAY_WEBHOOK_SECRET overrides it.")
def relay_secret_command(repository: str, config_path: Path | None) -> None:
    """Print the key a Forgejo downstream checks the relay's webhooks with.

    REPOSITORY is forgejo:owner/name as in the allowlist. Each downstream
    gets a key of its own, derived from SOLSTICE_RELAY_WEBHOOK_SECRET: give
    it to that downstream's receiver (it checks X-Solstice-Signature-256).
    """
    settings = load_config(IntegrationSettings, config_path)
    if not settings.external.webhook_secret:
        raise ConfigError("SOLSTICE_RELAY_WEBHOOK_SECRET is not set: there is nothing to derive the key from")
    try:
        repo = RepoKey.parse(repository, "REPOSITORY")
    except RequestInvalid as err:
        raise ConfigError(str(err)) from None
    click.echo(relay_secret(settings.external.webhook_secret, repo))


async def _run_until_signal(integration: Integration) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    ended = await first_to_end({"signal": stop.wait(), "the dedupe purge task": integration.maintain()})
    if ended.name != "signal":
        raise IntegrationError(ended.message)
    log.info("stopping")


main = run_cli(cli)
