import pytest

from common.bootstrap import (
    BootstrapError,
    RunnerBootstrap,
    parse_env_file,
    read_nocloud_dir,
    read_user_data,
    render_user_data,
)


def test_user_data_round_trip(tmp_path):
    boot = RunnerBootstrap("10.0.0.1:50051", "eyJhbGciOiJIUzI1NiJ9.e30.sig-_")
    text = render_user_data(boot)
    assert text.startswith("#cloud-config\n")
    (tmp_path / "user-data").write_text(text)
    assert read_nocloud_dir(tmp_path) == boot


def test_token_never_in_repr():
    boot = RunnerBootstrap("h:1", "supersecrettoken")
    assert "supersecrettoken" not in repr(boot)


@pytest.mark.parametrize(
    ("address", "token"),
    [("no-port", "t"), ("h:1; rm -rf /", "t"), ("h:1", "a b"), ("h:1", "x\ny")],
)
def test_rejects_malformed(address, token):
    with pytest.raises(BootstrapError):
        RunnerBootstrap(address, token)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("hello", "not a #cloud-config"),
        ("#cloud-config\nwrite_files: []\n", "writes no /etc/solstice/runner.env"),
        ("#cloud-config\n: [\n", "not valid YAML"),
    ],
)
def test_bad_user_data(text, message):
    with pytest.raises(BootstrapError, match=message):
        read_user_data(text)


def test_env_file_missing_key():
    with pytest.raises(BootstrapError, match="lacks SOLSTICE_RUNNER_TOKEN"):
        parse_env_file("SOLSTICE_RUNNER_ORCHESTRATOR=h:1\n")


def test_missing_seed_dir(tmp_path):
    with pytest.raises(BootstrapError, match="cannot read"):
        read_nocloud_dir(tmp_path)
