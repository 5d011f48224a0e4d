"""The ``secrets`` settings: every mistake is one ConfigError naming the setting; env overrides work."""

from __future__ import annotations

from pathlib import Path

import pytest

from common.config import load_config
from common.errors import ConfigError
from orchestrator.node.settings import NodeSettings
from orchestrator.secrets import KeyringError
from orchestrator.secrets.open import load_keyring
from orchestrator.secrets.settings import SecretsConfig, VaultConfig
from orchestrator.singlenode.settings import ServeSettings


def test_defaults_and_environment_overrides(tmp_path: Path):
    assert NodeSettings().secrets == SecretsConfig(store="builtin")
    env = {"SOLSTICE_SECRETS_STORE": "vault", "SOLSTICE_SECRETS_VAULT_ADDRESS": "https://vault.example:8200",
           "SOLSTICE_SECRETS_VAULT_TOKEN": "hvs.token-from-env"}
    settings = load_config(NodeSettings, env=env)
    assert settings.secrets.store == "vault" and settings.secrets.vault.token == "hvs.token-from-env"
    assert "hvs.token-from-env" not in repr(settings)
    serve = load_config(ServeSettings, env={"SOLSTICE_SECRETS_KEYS": "k1:" + "A" * 43 + "="})
    assert serve.node_settings().secrets.keys == serve.secrets.keys and "AAAA" not in repr(serve)


@pytest.mark.parametrize(("config", "problem"), [
    (dict(store="gpg"), "secrets.store must be one of builtin, vault"),
    (dict(key_file=Path("/k"), keys="k1:x"), "not both"),
    (dict(store="vault"), "secrets.vault.address must be the Vault URL"),
    (dict(store="vault", vault=VaultConfig(address="https://v", token="t", path="solstice/{forge}/{owner}")),
     "must contain {repo}"),
    (dict(store="vault", vault=VaultConfig(address="https://v", token="t", path="x/{forge}/{owner}/{name}")),
     "unknown placeholder {name}"),
    (dict(store="vault", vault=VaultConfig(address="https://v", token="t", owner_path="o/{forge}/{owner}/{repo}")),
     "owner_path cannot contain {repo}"),
    (dict(store="vault", vault=VaultConfig(address="https://v")), "needs secrets.vault.token"),
    (dict(store="vault", vault=VaultConfig(address="https://v", auth="approle", role_id="r")),
     "needs secrets.vault.role_id and secrets.vault.secret_id"),
    (dict(store="vault", vault=VaultConfig(address="https://v", auth="ldap")), "auth must be one of token, approle"),
])
def test_mistakes_name_the_setting(config, problem):
    with pytest.raises(ConfigError, match=problem.replace("{", r"\{").replace("}", r"\}")):
        SecretsConfig(**config)


def test_the_single_node_key_file_is_made_once_and_a_configured_one_never_made(tmp_path: Path):
    default = tmp_path / "secrets.key"
    first = load_keyring(SecretsConfig(), default_key_file=default)
    assert first is not None and default.stat().st_mode & 0o777 == 0o600
    again = load_keyring(SecretsConfig(), default_key_file=default)
    assert again is not None and list(again.keys) == list(first.keys)
    assert load_keyring(SecretsConfig()) is None  # multi-host without a keyring: none
    with pytest.raises(KeyringError, match="cannot read the secrets key file"):
        load_keyring(SecretsConfig(key_file=tmp_path / "missing.key"), default_key_file=default)
