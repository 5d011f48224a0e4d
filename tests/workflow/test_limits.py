"""Every workflow limit is refused with a message that names it; parses happen off the loop, on a deadline."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from common.errors import ConfigError
from common.workflow import WorkflowInvalid, load_workflow, parse_workflow
from common.workflow.limits import WorkflowLimits
from common.workflow.offload import WorkflowParser
from tests.waiting import wait_until

SMALL = WorkflowLimits(max_file_bytes=4096, max_jobs=2, max_steps=2, max_script_bytes=100, max_name_chars=10,
                       max_env_vars=2, max_env_value_bytes=20, max_timeout=3600)  # type: ignore[arg-type]


def errors(text: str, limits: WorkflowLimits = SMALL) -> list[str]:
    with pytest.raises(WorkflowInvalid) as caught:
        parse_workflow(text, "ci.kdl", limits)
    return [str(e) for e in caught.value.errors]


def job(jid: str, steps: str = 'step run="true"', extra: str = "") -> str:
    return f'  job id="{jid}" runs_on="x" {extra}{{\n    {steps}\n  }}\n'


def test_a_file_over_the_size_limit_is_refused_before_it_is_parsed():
    text = "workflow {\n" + job("a") + "}\n" + "// padding\n" * 400 + "{ not even KDL"
    assert errors(text) == ["ci.kdl:1:1: the file is 4.4 KiB; the limit is 4 KiB (workflow_limits.max_file_bytes)"]


def test_too_many_jobs():
    text = "workflow {\n" + job("a") + job("b") + job("c") + "}\n"
    assert errors(text) == ['ci.kdl:8:3: workflow: workflow has more than 2 jobs (workflow_limits.max_jobs)']


def test_too_many_steps():
    text = "workflow {\n" + job("a", 'step run="1"\n    step run="2"\n    step run="3"') + "}\n"
    assert errors(text) == ['ci.kdl:5:5: job "a": job has more than 2 steps (workflow_limits.max_steps)']


def test_a_script_over_the_limit():
    text = "workflow {\n" + job("a", f'step run="{"x" * 101}"') + "}\n"
    assert errors(text) == ['ci.kdl:3:10: job "a" > step #1: run script is 101 bytes; the limit is 100 bytes '
                            "(workflow_limits.max_script_bytes)"]


def test_names_over_the_limit():
    text = 'workflow name="a-very-long-name" {\n' + job("a", 'step name="also much too long" run="true"') + "}\n"
    assert errors(text) == [
        'ci.kdl:1:10: workflow: property "name" is 16 characters long; the limit is 10 '
        "(workflow_limits.max_name_chars)",
        'ci.kdl:3:10: job "a" > step #1: property "name" is 18 characters long; the limit is 10 '
        "(workflow_limits.max_name_chars)",
    ]


def test_env_count_and_values_over_the_limits():
    text = ('workflow {\n  env A="1" B="2" C="3"\n  env D="' + "v" * 21 + '"\n' + job("a") + "}\n")
    assert errors(text) == [
        "ci.kdl:2:19: workflow > env: more than 2 env variables here (workflow_limits.max_env_vars)",
        'ci.kdl:3:9: workflow > env: env "D" is 21 bytes; the limit is 20 bytes (workflow_limits.max_env_value_bytes)',
    ]


def test_timeouts_over_the_limit():
    text = "workflow {\n" + job("a", 'step run="true" timeout="2h"', extra='timeout="1h1s" ') + "}\n"
    assert errors(text) == [
        'ci.kdl:2:26: job "a": timeout "1h1s" is longer than the limit of 3600s (workflow_limits.max_timeout)',
        'ci.kdl:3:21: job "a" > step #1: timeout "2h" is longer than the limit of 3600s (workflow_limits.max_timeout)',
    ]


def test_the_defaults():
    limits = WorkflowLimits()
    assert (limits.max_file_bytes, limits.max_jobs, limits.max_steps, limits.max_script_bytes) == \
        (256 * 1024, 256, 256, 1024 * 1024)
    assert limits.max_timeout == 24 * 3600
    with pytest.raises(ConfigError, match="max_file_bytes must be at most"):
        WorkflowLimits(max_file_bytes=64 * 1024 * 1024)


def test_load_workflow_checks_the_size_before_decoding(tmp_path: Path):
    path = tmp_path / "w.kdl"
    path.write_bytes(b"\xff" * 5000)  # not UTF-8 either: the size is what is reported
    with pytest.raises(WorkflowInvalid, match=r"the file is 4.9 KiB; the limit is 4 KiB"):
        load_workflow(path, SMALL)


def test_deep_nesting_is_an_invalid_workflow_not_a_crash():
    text = "workflow {" + "job {" * 3000 + "}" * 3001
    assert errors(text, WorkflowLimits()) == [
        "ci.kdl:1:1: KDL syntax error: nodes nest too deeply for the parser (a real workflow needs four levels)"]


async def test_the_parser_process_gives_the_same_answers():
    async with WorkflowParser(SMALL) as parser:
        workflow = await parser.parse("workflow {\n" + job("a") + "}\n", "ci.kdl")
        assert [j.id for j in workflow.jobs] == ["a"]
        with pytest.raises(WorkflowInvalid) as caught:
            await parser.parse("workflow {\n" + job("a") + job("b") + job("c") + "}\n", "ci.kdl")
        assert [str(e) for e in caught.value.errors] == [
            "ci.kdl:8:3: workflow: workflow has more than 2 jobs (workflow_limits.max_jobs)"]


async def test_a_parse_past_its_deadline_is_an_invalid_workflow_and_the_loop_kept_running():
    # Big enough to take well over the deadline on any machine: 2000 jobs of 50 steps.
    limits = WorkflowLimits(max_file_bytes=8 * 1024 * 1024, max_jobs=100_000, max_steps=100_000,
                            parse_seconds=0.2)  # type: ignore[arg-type]
    steps = "\n    ".join(f'step name="s{i}" run="echo {i}"' for i in range(50))
    text = "workflow {\n" + "".join(job(f"j{i}", steps) for i in range(2000)) + "}\n"
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    async with WorkflowParser(limits) as parser:
        ticker = asyncio.create_task(tick())
        try:
            with pytest.raises(WorkflowInvalid) as caught:
                await parser.parse(text, "ci.kdl")
        finally:
            ticker.cancel()
        assert [str(e) for e in caught.value.errors] == [
            "ci.kdl:1:1: the file took longer than 0.2s to read (workflow_limits.parse_seconds)"]
        assert ticks > 0  # the loop ran while the file was read elsewhere
        # The worker is still good for the next file.
        assert (await parser.parse("workflow {\n" + job("a") + "}\n", "ci.kdl")).jobs[0].id == "a"


SERVER = """
import asyncio, os, sys
from common.workflow.offload import WorkflowParser

async def main():
    parser = WorkflowParser()
    await parser.start()
    print(" ".join(str(p) for p in parser._pool._processes), flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def test_parse_workers_die_with_a_killed_server(tmp_path: Path):
    """SIGKILL leaves no cleanup to the server: its workers must notice on their own (and let go of its stderr)."""
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              cwd=Path(__file__).resolve().parents[2])
    assert server.stdout is not None and server.stderr is not None
    workers = [int(pid) for pid in server.stdout.readline().split()]
    assert len(workers) == 2 and all(_alive(pid) for pid in workers)
    server.kill()
    server.wait()
    wait_until(lambda: not any(_alive(pid) for pid in workers), 30, "the parse workers to exit")
    # Nothing holds the dead server's stderr open any more (the fork server was the last): EOF.
    ended = threading.Event()
    threading.Thread(target=lambda: (server.stderr.read(), ended.set()), daemon=True).start()  # type: ignore[union-attr]
    wait_until(ended.is_set, 30, "EOF on the killed server's stderr")


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")
