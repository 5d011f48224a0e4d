"""``solstice-orchestrator secret-key``: make keys for the built-in secret store, rewrap values.

Rotation, on every node of a cluster (docs/secrets.md):

1. ``secret-key new`` prints a key; add it to each node's keyring BEFORE the
   current key (readable everywhere, not used for writing yet);
2. move it last on each node (the last key is current: new writes use it);
3. ``secret-key rewrap`` seals every older value with it; then drop the old key.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

import click

from common.cli import logging_options

if TYPE_CHECKING:
    from orchestrator.node.settings import NodeSettings


@click.group(name="secret-key", epilog="""\b
Examples:
  solstice-orchestrator secret-key new
  solstice-orchestrator secret-key new --file /etc/solstice/secrets.key
  solstice-orchestrator secret-key rewrap --config /etc/solstice/orchestrator.yaml
""")
def secret_key() -> None:
    """Keys of the built-in secret store: make one, re-seal values with the current one."""


@secret_key.command(epilog="""\b
Examples:
  solstice-orchestrator secret-key new                       # prints ID:BASE64
  solstice-orchestrator secret-key new --file /etc/solstice/secrets.key
""")
@click.option("--file", "path", type=click.Path(dir_okay=False, path_type=Path),
              help="Append the key to this keyring file (created mode 0600) as its current key.")
def new(path: Path | None) -> None:
    """Make a new random key (ID:BASE64); print it, or append it to a keyring file."""
    from orchestrator.secrets.keyring import append_key, new_key_entry

    if path is None:
        click.echo(new_key_entry())
        return
    key_id = append_key(path)
    click.echo(f"key {key_id} appended to {path}; it is now the current key there")


@secret_key.command(epilog="""\b
Examples:
  solstice-orchestrator secret-key rewrap --config /etc/solstice/orchestrator.yaml
  SOLSTICE_STORE_URL=sqlite:///var/lib/solstice/state.sqlite \\
    SOLSTICE_SECRETS_KEY_FILE=/var/lib/solstice/secrets.key solstice-orchestrator secret-key rewrap
""")
@click.option("--config", "config_path", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              envvar="SOLSTICE_CONFIG", help="The node's YAML file (store_url and the secrets section).")
@logging_options
def rewrap(config_path: Path | None) -> None:
    """Seal every stored value that an older key sealed with the current key again."""
    from common.config import load_config
    from orchestrator.node.settings import NodeSettings

    settings = load_config(NodeSettings, config_path)
    changed = asyncio.run(_rewrap(settings))
    click.echo(f"{changed} secret value{'s' * (changed != 1)} sealed again with the current key")


async def _rewrap(settings: NodeSettings) -> int:
    from orchestrator.secrets.builtin import BuiltinStore
    from orchestrator.secrets.errors import SecretError
    from orchestrator.secrets.open import load_keyring, sql_backend
    from orchestrator.store import open_store

    if settings.secrets.store != "builtin":
        raise SecretError(f"secrets.store is {settings.secrets.store}: only the built-in store seals values")
    keyring = load_keyring(settings.secrets)
    async with open_store(settings.store_url, pool_size=2) as store:
        return await BuiltinStore(sql_backend(store), keyring).rewrap()
