"""The README's transcripts are what the commands print today, run as written.

Every ```text block of README.md preceded by ``<!-- transcript: NAME -->``
is a terminal session: ``$ `` lines are commands, the lines after each are
its output. The test runs the commands in order in one bash per block, from
the top of the checkout, against a real ``solstice serve`` started from the
``serve`` block, and compares each command's output with the README's after
blanking what differs from run to run (ids, shas, times, ports) and ignoring
line order (jobs run side by side). Only two things are changed: the demo's
root ``/tmp/solstice-demo`` becomes a directory of the test (runs on one
machine must not share it), and ``bash scripts/serve.sh`` becomes the
``solstice serve`` it runs after installing (the suite runs from that install).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.waiting import wait_until

REPO_ROOT = Path(__file__).resolve().parent.parent
README = REPO_ROOT / "README.md"
DEMO_ROOT = "/tmp/solstice-demo"
SERVE_SCRIPT = "bash scripts/serve.sh"
MARK = "@@@ solstice readme command "
_BLOCK = re.compile(r"<!-- transcript: (?P<name>[\w-]+) -->\n```text\n(?P<body>.*?)```", re.DOTALL)
_LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR|CRITICAL) ")
_BLANKS = [  # what differs from run to run, in this order
    (re.compile(r"\bjob-[0-9a-f]{32}\b"), "job-<id>"),
    (re.compile(r"\brun-[0-9a-f]{32}\b"), "run-<id>"),
    (re.compile(r"\b[0-9a-f]{10,40}\b"), "<sha>"),
    (re.compile(r"\b127\.0\.0\.1:\d+"), "127.0.0.1:<port>"),
    (re.compile(r"\b\d+m\d\ds\b|\b\d+(\.\d+)?s\b"), "<time>"),
    (re.compile(r"\s+"), " "),
]


@dataclass(frozen=True)
class Command:
    line: str
    output: tuple[str, ...]


def transcripts(text: str | None = None) -> dict[str, list[Command]]:
    """Each marked block of the README as its commands and their outputs."""
    found: dict[str, list[Command]] = {}
    for block in _BLOCK.finditer(text if text is not None else README.read_text()):
        commands: list[Command] = []
        for line in block["body"].splitlines():
            if line.startswith("$ "):
                commands.append(Command(line[2:], ()))
            else:
                assert commands, f"transcript {block['name']}: output before the first command: {line!r}"
                commands[-1] = Command(commands[-1].line, (*commands[-1].output, line))
        found[block["name"]] = commands
    return found


def blank(line: str, root: Path) -> str:
    line = line.replace(str(root), DEMO_ROOT)
    for pattern, replacement in _BLANKS:
        line = pattern.sub(replacement, line)
    return line.strip()


def comparable(lines: tuple[str, ...] | list[str], root: Path) -> list[str]:
    # Log lines carry what other changes move (the list of migrations applied): the banner is what counts.
    return sorted(blank(line, root) for line in lines if line.strip() and not _LOG_LINE.match(line))


def run_session(commands: list[Command], root: Path, env: dict[str, str]) -> list[str]:
    """Run ``commands`` in one bash from the top of the checkout; each one's output (stdout and stderr)."""
    script = ["exec 2>&1"]
    for n, command in enumerate(commands):
        # The marker keeps $? of the command before it, for an `echo $?` in the transcript.
        script += [f"s=$?; echo '{MARK}{n}'; (exit $s)", command.line.replace(DEMO_ROOT, str(root))]
    done = subprocess.run(["bash", "-c", "\n".join(script)], cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                          text=True, timeout=300)
    parts = re.split(rf"^{re.escape(MARK)}\d+\n", done.stdout, flags=re.MULTILINE)
    assert len(parts) == len(commands) + 1, done.stdout
    return parts[1:]


def check(name: str, commands: list[Command], outputs: list[str], root: Path) -> None:
    for command, output in zip(commands, outputs, strict=True):
        got = output.splitlines()
        assert comparable(got, root) == comparable(command.output, root), (
            f"README transcript {name!r}: `{command.line}` now prints:\n" + "\n".join(got))


class Serve:
    """The README's server: its ``serve`` transcript run with the install step left out."""

    def __init__(self, commands: list[Command], root: Path) -> None:
        [serve] = [c for c in commands if c.line.startswith(SERVE_SCRIPT)]
        script = [c.line.replace(DEMO_ROOT, str(root)) for c in commands if c is not serve]
        script.append("exec .venv/bin/solstice serve" + serve.line.removeprefix(SERVE_SCRIPT))
        # Free ports instead of 8080/50051 (other runs share this machine); the README's host name.
        env = {**os.environ, "SOLSTICE_LISTEN": "127.0.0.1:0", "SOLSTICE_GRPC": "127.0.0.1:0",
               "SOLSTICE_HOST": "vm", "SOLSTICE_LOG_FORMAT": "human"}
        self.serve = serve
        self.lines: list[str] = []
        self.proc = subprocess.Popen(["bash", "-c", "\n".join(script)], cwd=REPO_ROOT, env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.grpc = wait_until(self._grpc, 60, "solstice serve to print its gRPC address")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def _grpc(self) -> str | None:
        assert self.proc.poll() is None, "solstice serve exited:\n" + "\n".join(self.lines)
        for line in list(self.lines):
            if m := re.match(r"^\s+gRPC:\s+(\S+)", line):
                return m.group(1)
        return None

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(90) == 0, "\n".join(self.lines)
        self._reader.join(10)


@pytest.fixture
def demo_root(tmp_path: Path) -> Path:
    root = tmp_path / "solstice-demo"
    root.mkdir()
    assert (REPO_ROOT / ".venv" / "bin" / "activate").is_file(), \
        "the README's second terminal sources .venv/bin/activate: run the suite with scripts/test.sh"
    return root


def test_every_transcript_is_checked():
    assert sorted(transcripts()) == ["cidev-failing", "cidev-pipeline", "second-terminal", "serve"]


def test_the_readme_demo_runs_as_written(demo_root: Path) -> None:
    sessions = transcripts()
    server = Serve(sessions["serve"], demo_root)
    try:
        # Nothing tells ciadm where to go but the transcript's own SOLSTICE_DATA_DIR (the node's socket).
        env = {k: v for k, v in os.environ.items() if k not in ("SOLSTICE_ORCHESTRATOR", "SOLSTICE_TOKEN")}
        outputs = run_session(sessions["second-terminal"], demo_root, env)
        check("second-terminal", sessions["second-terminal"], outputs, demo_root)
        for name in ("cidev-pipeline", "cidev-failing"):
            check(name, sessions[name], run_session(sessions[name], demo_root, dict(os.environ)), demo_root)
    finally:
        server.stop()
    banner = [line for line in server.lines if not _LOG_LINE.match(line)]
    expected = [line for line in server.serve.output if not _LOG_LINE.match(line)]
    # The banner as printed up to the stop (the lines after it say how it stopped).
    assert comparable(banner[:len(expected)], demo_root) == comparable(expected, demo_root), "\n".join(server.lines)


def test_blanking_keeps_what_matters() -> None:
    root = Path("/x/demo")
    assert (blank("job-0123456789abcdef0123456789abcdef  lint  queued  0.0s ago", root)
            == "job-<id> lint queued <time> ago")
    assert (blank("[unit] step 1/1 Unit tests: succeeded in 12.5s", root)
            == "[unit] step 1/1 Unit tests: succeeded in <time>")
    assert blank("/x/demo/pipeline b62ac2f7e532 took 1m05s", root) == "/tmp/solstice-demo/pipeline <sha> took <time>"
    # A changed word is still a difference.
    assert blank("job failed", root) != blank("job succeeded", root)


def test_the_settings_table_names_every_log_level_and_format() -> None:
    import click

    from common.cli import logging_options
    from common.log import LEVELS

    rows = {line.split("|")[1].strip(" `"): line for line in README.read_text().splitlines()
            if line.startswith("| `SOLSTICE_")}
    assert all(f"`{level}`" in rows["SOLSTICE_LOG_LEVEL"] for level in LEVELS)
    assert "`--log-format`" in rows["SOLSTICE_LOG_FORMAT"]
    command = logging_options(lambda: None)
    [choice] = [p.type for p in click.command()(command).params if p.name == "log_format"]
    assert all(f"`{name}`" in rows["SOLSTICE_LOG_FORMAT"] for name in choice.choices)
