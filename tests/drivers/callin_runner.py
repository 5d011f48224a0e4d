"""A stand-in runner that "calls in" to the test gateway over TCP.

Reads the bootstrap from ``--env-file`` (bhyve: cloud-init's runcmd) or the
environment (local driver), as solstice-runner does, prints a few console lines,
connects to the orchestrator address, sends its token and
waits until the gateway closes the connection (the job is over), then exits.
``--silent`` never calls in (and says so every 0.2 s); ``--crash`` says so
for a second (bhyve drops console output nobody reads yet, so a line printed
once at start may never reach a capture), then exits with status 3;
``--tick`` never calls in and prints ``runner: tick N`` every 50 ms, writing N
to the file ``ticks`` in its working directory after each line (so a test
knows which lines were printed before it looked).
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path

from common.bootstrap import parse_env_file


def main(argv: list[str]) -> int:
    print("runner: booted", flush=True)
    if "--tick" in argv:
        for n in range(1_000_000):
            print(f"runner: tick {n}", flush=True)
            Path("ticks").write_text(str(n))
            time.sleep(0.05)
    if "--crash" in argv:
        for _ in range(5):
            print("runner: crashing on purpose", flush=True)
            time.sleep(0.2)
        return 3
    if "--env-file" in argv:  # as cloud-init's runcmd starts it on bhyve
        boot = parse_env_file(Path(argv[argv.index("--env-file") + 1]).read_text())
        orch, token = boot.orchestrator, boot.token
    else:  # as the local driver starts it
        orch, token = os.environ["SOLSTICE_RUNNER_ORCHESTRATOR"], os.environ["SOLSTICE_RUNNER_TOKEN"]
    if "--orchestrator" in argv and argv[argv.index("--orchestrator") + 1] != orch:
        print("runner: --orchestrator and the environment disagree", flush=True)
        return 4
    if "--silent" in argv:
        while True:
            print("runner: not calling in", flush=True)
            time.sleep(0.2)
    host, port = orch.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=30) as conn:
        conn.sendall(token.encode() + b"\n")
        print("runner: called in", flush=True)
        conn.settimeout(None)
        reply = conn.makefile().readline().strip()
    print(f"runner: job over ({reply or 'closed'})", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
