"""What every ``ciadm`` command shares: the connection settings, running one client, showing answers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

import click

from ciadm.client import AdminClient, OrchestratorUnreachable
from ciadm.target import CiadmSettings, NoOrchestrator, resolve
from common.cli import fail

EXIT_UNREACHABLE = 3
T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Session:
    """The group's options (``ctx.obj``): where to connect and how long to wait for each answer."""

    settings: CiadmSettings
    timeout: float


def run(ctx: click.Context, work: Callable[[AdminClient], Awaitable[T]]) -> T:
    """Open a client on the group's orchestrator, run ``work`` with it, map unreachable to exit 3."""
    session: Session = ctx.obj

    async def go() -> T:
        async with AdminClient(resolve(session.settings), session.timeout) as client:
            return await work(client)

    try:
        return asyncio.run(go())
    except (OrchestratorUnreachable, NoOrchestrator) as err:
        fail(str(err), EXIT_UNREACHABLE)
        raise  # unreachable: fail exits


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")(func)


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2))


def show(as_json: bool, value: Any, lines: Iterable[str], empty: str = "") -> None:
    """``value`` as JSON, else ``lines`` (or ``empty`` when there are none)."""
    if as_json:
        echo_json(value)
        return
    shown = list(lines)
    for line in shown or ([empty] if empty else []):
        click.echo(line)
