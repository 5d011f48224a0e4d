"""Pieces every Solstice command-line program shares.

``run_cli`` turns a Solstice error into one ``ERROR: ...`` line and exit code
1 instead of a traceback; ``logging_options`` adds ``--log-level`` and
``--log-format`` to a click command and sets logging up from them.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click

from common.errors import SolsticeError
from common.log import LEVELS, setup_logging

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one ``ERROR:`` line to stderr and exit with ``code``."""
    click.echo(f"ERROR: {message}", err=True)
    sys.exit(code)


def run_cli(main: click.Command) -> Callable[[], None]:
    """Wrap a click command so user errors end as one line, never a traceback."""

    def entry() -> None:
        try:
            main(standalone_mode=True)
        except SolsticeError as err:
            fail(str(err))
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    entry.__doc__ = main.help
    return entry


def logging_options(func: F) -> F:
    """Add ``--log-level`` / ``--log-format`` and configure logging before ``func``."""

    @click.option(
        "--log-level",
        type=click.Choice(LEVELS, case_sensitive=False),
        default=None,
        help="Log level (default: $SOLSTICE_LOG_LEVEL or info).",
    )
    @click.option(
        "--log-format",
        type=click.Choice(["auto", "human", "json"]),
        default="auto",
        show_default=True,
        help="human on a terminal, JSON lines otherwise when auto.",
    )
    @functools.wraps(func)
    def wrapper(*args: Any, log_level: str | None, log_format: str, **kwargs: Any) -> Any:
        setup_logging(log_level, log_format)  # type: ignore[arg-type]
        return func(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
