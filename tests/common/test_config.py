from dataclasses import dataclass, field
from pathlib import Path

import pytest

from common.config import ConfigError, Seconds, env_name, load_config


@dataclass(frozen=True)
class Github:
    webhook_secret: str | None = None
    api_url: str = "https://api.github.com"
    app_id: int | None = None


@dataclass(frozen=True)
class Image:
    dataset: str = ""
    vcpus: int = 1


@dataclass(frozen=True)
class Settings:
    listen: str = "127.0.0.1:8080"
    data_dir: Path = Path("data")
    boot_timeout: Seconds = Seconds(120)
    labels: tuple[str, ...] = ()
    debug: bool = False
    github: Github = field(default_factory=Github)
    images: dict[str, Image] = field(default_factory=dict)
    orchestrator: str = field(default="127.0.0.1:50051", metadata={"env": "SOLSTICE_ORCHESTRATOR"})


def test_defaults_need_no_file():
    s = load_config(Settings, env={})
    assert s == Settings()


def test_yaml_then_env(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "listen: 0.0.0.0:9000\nboot_timeout: 2m\nlabels: [a, b]\n"
        "github: {api_url: http://ghe.local/api/v3}\n"
        "images: {illumos: {dataset: rpool/x@y, vcpus: 4}}\n"
    )
    s = load_config(
        Settings,
        cfg,
        env={"SOLSTICE_LISTEN": "127.0.0.1:1", "SOLSTICE_GITHUB_WEBHOOK_SECRET": "x", "SOLSTICE_LABELS": "c, d",
             "SOLSTICE_DEBUG": "yes"},
    )
    assert s.listen == "127.0.0.1:1"
    assert s.boot_timeout == 120
    assert s.labels == ("c", "d")
    assert s.debug is True
    assert s.github == Github(webhook_secret="x", api_url="http://ghe.local/api/v3")
    assert s.images == {"illumos": Image(dataset="rpool/x@y", vcpus=4)}


def test_env_names_follow_field_paths():
    assert env_name("github.webhook_secret") == "SOLSTICE_GITHUB_WEBHOOK_SECRET"
    s = load_config(Settings, env={"SOLSTICE_ORCHESTRATOR": "h:1"})
    assert s.orchestrator == "h:1"


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("lisen: x\n", "unknown setting lisen"),
        ("github: {secret: x}\n", "unknown setting github.secret"),
        ("boot_timeout: soon\n", "boot_timeout: invalid duration 'soon'"),
        ("debug: maybe\n", "debug: expected true or false, got 'maybe'"),
        ("images: {x: {vcpus: many}}\n", "images.x.vcpus: expected a number"),
        ("- a\n", "the top level must be a mapping"),
        ("listen: [1\n", "not valid YAML"),
    ],
)
def test_bad_files_name_the_setting(tmp_path, yaml_text, message):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml_text)
    with pytest.raises(ConfigError) as err:
        load_config(Settings, cfg, env={})
    assert message in str(err.value)


def test_bad_env_names_the_variable():
    with pytest.raises(ConfigError, match=r"SOLSTICE_GITHUB_APP_ID \(environment\): expected a number"):
        load_config(Settings, env={"SOLSTICE_GITHUB_APP_ID": "abc"})


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(Settings, tmp_path / "nope.yaml", env={})
