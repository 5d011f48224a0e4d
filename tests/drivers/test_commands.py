"""orchestrator.commands.run_command: argv only, timeouts kill, errors keep stderr, calls are logged."""

from __future__ import annotations

import logging
import sys

import pytest

from common.log import masker
from orchestrator.commands import run_command
from orchestrator.drivers.errors import CommandFailed, CommandTimeout
from orchestrator.drivers.local import process_start_time


async def test_success_captures_output_and_exit():
    script = "import sys; print('out'); print('err', file=sys.stderr)"
    result = await run_command([sys.executable, "-c", script], timeout=30)
    assert (result.exit_code, result.stdout, result.stderr) == (0, "out\n", "err\n")
    assert result.ok and result.duration > 0


async def test_failure_raises_with_argv_exit_and_stderr():
    argv = [sys.executable, "-c",
            "import sys; sys.stderr.write('cannot open tank: dataset does not exist\\n'); sys.exit(7)"]
    with pytest.raises(CommandFailed) as info:
        await run_command(argv, timeout=30)
    assert info.value.exit_code == 7
    assert info.value.argv == tuple(argv)
    assert "dataset does not exist" in info.value.stderr
    assert "exit 7" in str(info.value) and "dataset does not exist" in str(info.value)


async def test_check_false_returns_the_failure():
    result = await run_command([sys.executable, "-c", "raise SystemExit(3)"], timeout=30, check=False)
    assert result.exit_code == 3 and not result.ok


async def test_input_is_fed_to_stdin():
    result = await run_command([sys.executable, "-c", "import sys; print(sys.stdin.read().upper())"],
                               timeout=30, input=b"create -b\n")
    assert result.stdout == "CREATE -B\n\n"


async def test_timeout_kills_the_whole_process_group(tmp_path):
    pidfile = tmp_path / "grandchild"
    script = (
        "import subprocess, sys, time\n"
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        f"open({str(pidfile)!r}, 'w').write(str(p.pid))\n"
        "time.sleep(60)\n"
    )
    with pytest.raises(CommandTimeout, match="did not finish within 0.5s"):
        await run_command([sys.executable, "-c", script], timeout=0.5)
    grandchild = int(pidfile.read_text())
    from tests.waiting import async_wait_until

    await async_wait_until(lambda: process_start_time(grandchild) is None, timeout=10, what="grandchild killed")


async def test_a_shell_string_is_refused():
    with pytest.raises(TypeError):
        await run_command("zfs list; reboot", timeout=5)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        await run_command([], timeout=5)


async def test_missing_program_is_a_command_failure():
    with pytest.raises(CommandFailed) as info:
        await run_command(["/nonexistent/zoneadm", "list"], timeout=5)
    assert info.value.exit_code == 127


async def test_each_call_is_logged_with_secrets_masked(caplog: pytest.LogCaptureFixture):
    from common.log import JsonFormatter

    masker.add("hunter2-secret-value")
    with caplog.at_level(logging.INFO, logger="orchestrator.commands"):
        await run_command([sys.executable, "-c", "pass", "hunter2-secret-value"], timeout=30)
    record = caplog.records[-1]
    assert record.fields["exit"] == 0 and "duration_ms" in record.fields
    line = JsonFormatter().format(record)
    assert "hunter2-secret-value" not in line and "***" in line
