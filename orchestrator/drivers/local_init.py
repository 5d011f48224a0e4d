"""PID 1 of a contained local job: join its cgroups, set up its mounts, run the runner, reap.

The local driver starts ``unshare --pid --fork --mount-proc ... -- python -I -S
local_init.py ARGS -- RUNNER ARGV`` (orchestrator/drivers/local_contain.py);
this script is the forked child, the first process of the job's fresh PID and
mount namespaces. In order, before anything of the job runs:

1. it joins the job's control groups (writes ``0`` to each ``--join`` file),
   so every process the job ever starts is counted, limited and killable;
2. it mounts, in the job's own mount namespace only: ``--bind SRC DST`` (the
   job's directory at a neutral path its user can reach, ``nosuid,nodev``)
   and a fresh ``--tmpfs DIR`` for each private scratch directory;
3. it sets ``no_new_privs``: no process of the job gains privileges through a
   setuid program (the runner drops to the job user itself, which needs none);
4. it starts the runner in a session of its own and reaps every process the
   namespace hands it (orphans of double forks end up here) until the runner
   exits; then it exits with the runner's status, and the kernel SIGKILLs
   whatever is left in the namespace.

SIGTERM, SIGINT and SIGHUP are passed on to the runner. Being PID 1, this
process cannot be signalled from inside the job at all (the kernel drops
signals to a namespace's init that it has no handler for, and no process of
the job may signal root's).

Standard library only, run with ``-I -S``: it starts in a few milliseconds
and nothing from the job's environment or the working directory is imported.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

MS_NOSUID = 2
MS_NODEV = 4
MS_REMOUNT = 32
MS_BIND = 4096
PR_SET_NO_NEW_PRIVS = 38
FAILED = 125  # like env(1)/nsenter: the job itself never ran


class InitError(Exception):
    pass


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _mount(libc: ctypes.CDLL, source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    args = [source.encode(), target.encode(), fstype.encode() if fstype else None, ctypes.c_ulong(flags),
            data.encode() if data else None]
    if libc.mount(*args) != 0:
        err = ctypes.get_errno()
        raise InitError(f"mount {source} on {target}: {os.strerror(err)}")


def parse(argv: list[str]) -> tuple[list[str], list[tuple[str, str]], list[str], list[str]]:
    """(cgroup.procs files, (source, target) binds, tmpfs dirs, runner argv)."""
    joins: list[str] = []
    binds: list[tuple[str, str]] = []
    tmpfs: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            command = argv[i + 1:]
            if not command:
                raise InitError("no runner command after --")
            return joins, binds, tmpfs, command
        if arg == "--join" and i + 1 < len(argv):
            joins.append(argv[i + 1])
            i += 2
        elif arg == "--tmpfs" and i + 1 < len(argv):
            tmpfs.append(argv[i + 1])
            i += 2
        elif arg == "--bind" and i + 2 < len(argv):
            binds.append((argv[i + 1], argv[i + 2]))
            i += 3
        else:
            raise InitError(f"unexpected argument {arg!r}")
    raise InitError("no -- before the runner command")


def setup(joins: list[str], binds: list[tuple[str, str]], tmpfs: list[str]) -> None:
    for path in joins:
        try:
            with open(path, "w") as procs:
                procs.write("0\n")
        except OSError as err:
            raise InitError(f"cannot join the control group {path}: {err.strerror}") from err
    libc = _libc()
    for source, target in binds:
        _mount(libc, source, target, None, MS_BIND, None)
        # Flags of a bind mount only take effect on a remount.
        _mount(libc, source, target, None, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV, None)
    for target in tmpfs:
        _mount(libc, "tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise InitError(f"prctl(PR_SET_NO_NEW_PRIVS): {os.strerror(ctypes.get_errno())}")


def run(command: list[str]) -> int:
    """Start ``command`` and reap children until it exits; its exit status (128 + signal if killed)."""
    try:
        runner = os.fork()
    except OSError as err:
        raise InitError(f"cannot fork the runner: {err.strerror}") from err
    if runner == 0:
        try:
            os.setsid()
            for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                signal.signal(sig, signal.SIG_DFL)
            os.execvp(command[0], command)
        except OSError as err:
            os.write(2, f"solstice-init: cannot start {command[0]}: {err.strerror}\n".encode())
        os._exit(127)

    def forward(sig: int, _frame: object) -> None:
        try:
            os.kill(runner, sig)
        except ProcessLookupError:
            pass

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, forward)
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            return FAILED
        if pid == runner:
            code = os.waitstatus_to_exitcode(status)
            return code if code >= 0 else 128 - code


def main(argv: list[str]) -> int:
    try:
        joins, binds, tmpfs, command = parse(argv)
        setup(joins, binds, tmpfs)
        return run(command)
    except InitError as err:
        os.write(2, f"solstice-init: {err}\n".encode())
        return FAILED


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
