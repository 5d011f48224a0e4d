"""What the local driver can wall a job in with on this host, found once at start.

A *contained* job (Linux, the node running as root, util-linux ``unshare``
able to make PID and mount namespaces, cgroups with memory and pids
controllers) runs as::

    unshare --pid --fork --kill-child=SIGTERM --mount-proc [--net] --
        python -I -S local_init.py --join <cgroup.procs>... --bind <vm>/work <job_mount>
                                   --tmpfs /dev/shm --tmpfs /var/tmp -- <runner argv>

so that the job sees only its own processes in ``/proc``, every process it
starts is in its cgroup (memory and task limits; teardown kills the group,
whatever the processes did: ``setsid``, double forks, ignoring SIGTERM), and
its directory is reachable at ``job_mount`` whatever the permissions of the
state directory's parents. With a ``job_user`` that exists, the runner (root
in the namespace, holding the job token) runs each step as that user: the
steps cannot read the runner's environment, the job's private directories
of other jobs, or anything of the node's that an unprivileged user cannot.
Such a job is *isolated*: only then does the driver run untrusted jobs (fork
pull requests), unless ``allow_untrusted`` says to run them anyway.

A host without these (macOS, no namespaces, not root) runs jobs as plain
processes in their own session, as before: trusted jobs only.
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from orchestrator.catalog import LocalConfig, size_bytes
from orchestrator.drivers import local_init
from orchestrator.drivers.cgroups import Cgroups, Limits, detect

log = logging.getLogger(__name__)

REFUSAL = "this node cannot isolate untrusted jobs; see docs/security.md"
INIT_SCRIPT = Path(local_init.__file__).resolve()
PRIVATE_DIRS = ("/dev/shm", "/var/tmp")  # fresh, empty tmpfs in each contained job
# From the node's environment the runner gets only these (and local.pass_env).
RUNNER_ENV = ("PATH", "LANG", "LC_ALL", "LC_CTYPE", "TZ")
PLAIN_ENV = ("HOME", "USER", "LOGNAME")  # outside containment steps run as the node's user: keep its home
CREATE_USER = "useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin"


@dataclass(frozen=True)
class JobUser:
    """The unprivileged user steps run as."""

    name: str
    uid: int
    gid: int


@dataclass(frozen=True)
class Containment:
    """How jobs run on this host: ``cgroups`` set means contained; ``isolated`` adds the job user."""

    cgroups: Cgroups | None
    user: JobUser | None
    unshare: str
    summary: str  # one sentence for the start-up log and `check`
    why_not_isolated: str  # "" when isolated

    @property
    def contained(self) -> bool:
        return self.cgroups is not None

    @property
    def isolated(self) -> bool:
        return not self.why_not_isolated


def find_job_user(name: str) -> tuple[JobUser | None, str]:
    """The job user, or None and what to do about it."""
    if not name:
        return None, "local.job_user is empty: steps would run as root"
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None, f"the job user {name} does not exist (create it: {CREATE_USER} {name})"
    if entry.pw_uid == 0 or entry.pw_gid == 0:
        return None, f"the job user {name} is root (uid or gid 0)"
    return JobUser(name, entry.pw_uid, entry.pw_gid), ""


def probe_namespaces(unshare: str) -> str:
    """"" if ``unshare`` makes PID and mount namespaces here, else why not (runs ``true`` in fresh ones)."""
    path = shutil.which(unshare)
    if path is None:
        return f"{unshare} (util-linux) is not installed"
    try:
        done = subprocess.run([path, "--pid", "--fork", "--mount-proc", "--", "true"], capture_output=True,
                              text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"{unshare} cannot run: {err}"
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return f"{unshare} cannot make PID and mount namespaces: {lines[-1] if lines else done.returncode}"
    return ""


def detect_containment(config: LocalConfig) -> Containment:
    """Probe the host once (a namespace that exits at once; the cgroup parents are created)."""
    def plain(why: str) -> Containment:
        return Containment(None, None, config.unshare, f"jobs run as plain processes: {why}", why)

    if not config.contain:
        return plain("local.contain is off")
    if not sys.platform.startswith("linux"):
        return plain("namespaces and cgroups need Linux")
    if os.geteuid() != 0:
        return plain("the node does not run as root")
    problem = probe_namespaces(config.unshare)
    if problem:
        return plain(problem)
    cgroups, where = detect(config.cgroup_parent)
    if cgroups is None:
        return plain(where)
    try:
        config.job_mount.mkdir(parents=True, exist_ok=True, mode=0o755)
    except OSError as err:
        return plain(f"cannot create the mount point {config.job_mount}: {err.strerror}")
    user, why = find_job_user(config.job_user)
    steps = f"steps as {user.name}" if user else "steps as root"
    summary = f"jobs contained: PID and mount namespaces ({config.unshare}), {where}, {steps}"
    return Containment(cgroups, user, config.unshare, summary, why)


def runner_env(config: LocalConfig, contain: Containment, extra: dict[str, str]) -> dict[str, str]:
    """The runner's whole environment: the allowlist from ours, then ``extra`` (bootstrap, dirs)."""
    names = RUNNER_ENV + config.pass_env + (() if contain.contained else PLAIN_ENV)
    env = {name: os.environ[name] for name in names if name in os.environ}
    env.setdefault("PATH", os.defpath)
    env.update(extra)
    return env


def contained_argv(config: LocalConfig, contain: Containment, vm: str, runner_dir: Path,
                   runner: list[str], network: bool) -> list[str]:
    """``unshare ... local_init.py ... -- runner`` for one job (see the module docstring)."""
    assert contain.cgroups is not None
    argv = [contain.unshare, "--pid", "--fork", "--kill-child=SIGTERM", "--mount-proc"]
    if network:
        argv.append("--net")
    argv += ["--", sys.executable, "-I", "-S", str(INIT_SCRIPT)]
    for procs in contain.cgroups.procs_files(vm):
        argv += ["--join", str(procs)]
    argv += ["--bind", str(runner_dir), str(config.job_mount)]
    for private in PRIVATE_DIRS:
        argv += ["--tmpfs", private]
    return [*argv, "--", *runner]


def cgroup_limits(config: LocalConfig, label: str) -> Limits:
    limits = config.limits_for(label)
    return Limits(memory_bytes=size_bytes(limits.memory), pids=limits.pids)


def announce(config: LocalConfig, contain: Containment) -> None:
    """The start-up log lines: how jobs run, and what that means for untrusted ones."""
    log.info("local driver: %s", contain.summary)
    if contain.isolated:
        return
    if config.allow_untrusted:
        log.warning("local.allow_untrusted is on: untrusted jobs (fork pull requests) run on this node "
                    "although it cannot isolate them (%s); see docs/security.md", contain.why_not_isolated)
    else:
        log.warning("untrusted jobs (fork pull requests) are refused on this node: %s", contain.why_not_isolated)
