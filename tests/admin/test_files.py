"""State on disk is its owner's only: private directories and files, the runner-token key file."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from common.errors import ConfigError
from common.files import private_dir, private_file
from orchestrator.node.settings import GrpcConfig, NodeSettings


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_private_dir_and_file_create_and_tighten(tmp_path: Path) -> None:
    made = private_dir(tmp_path / "a" / "b")
    assert mode(made) == 0o700
    loose = tmp_path / "loose"
    loose.mkdir(mode=0o755)
    loose.chmod(0o755)
    assert mode(private_dir(loose)) == 0o700
    db = tmp_path / "state.sqlite"
    db.write_text("kept")
    db.chmod(0o644)
    assert mode(private_file(db)) == 0o600 and db.read_text() == "kept"  # tightened, not truncated
    assert mode(private_file(tmp_path / "new.sqlite")) == 0o600


def test_a_runner_token_key_others_can_read_is_refused(tmp_path: Path) -> None:
    key = tmp_path / "runner.key"
    key.write_bytes(b"k" * 32)
    key.chmod(0o644)
    settings = NodeSettings(grpc=GrpcConfig(token_key_file=key))
    with pytest.raises(ConfigError, match="readable by other users"):
        settings.token_key()
    key.chmod(0o600)
    assert settings.token_key() == b"k" * 32
