"""The runner installed from the base dependency set alone (what a golden image holds) runs a job.

The checkout is built into a wheel and installed, without extras, into a
fresh venv. Its dependencies are the base ``Requires-Dist`` of that very wheel
(and theirs, markers evaluated): their installed files are copied from this
test's own environment - the same files pip put there, with no index to ask -
and every requirement there is checked as ``pip check`` would. Then that venv's
``solstice-runner`` runs a job from a git repository against a real
RunnerService on loopback, with no PYTHONPATH and outside the checkout: an
import of anything the base set lacks (asyncpg, aiohttp, kdl-py, ...) would
end it.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from common.logbatch import STDOUT
from common.rpc import jobs_pb2
from tests.protocol.harness import assigned, orchestrator
from tests.runner.helpers import ROOT, make_repo, runner_exit, start_runner

PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--no-input"]
LIST = ("import importlib.metadata as m, json; "
        "print(json.dumps([(d.name, d.version, d.requires or []) for d in m.distributions()]))")
SERVER_ONLY = {"asyncpg", "aio-pika", "aiormq", "aiohttp", "aiosqlite", "cryptography", "kdl-py", "zstandard",
               "jsonschema", "defusedxml", "prometheus-client"}


def _build_wheel(out: Path) -> Path:
    """The checkout's wheel, built from a copy (a build writes build/ and *.egg-info next to its sources)."""
    src = out / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    for package in ("common", "orchestrator", "runner", "integration", "ciadm", "cidev", "images", "dashboard"):
        shutil.copytree(ROOT / package, src / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    # What `pip wheel --no-build-isolation` runs (PEP 517), without pip's own start-up.
    built = subprocess.run([sys.executable, "-c", "import setuptools.build_meta as b; print(b.build_wheel('dist'))"],
                           cwd=src, check=True, capture_output=True, text=True)
    return src / "dist" / built.stdout.split()[-1]


def _base_requirements(wheel: Path) -> list[Requirement]:
    """The wheel's own ``Requires-Dist`` outside every extra: the runner's set."""
    with zipfile.ZipFile(wheel) as z:
        (name,) = [n for n in z.namelist() if n.endswith(".dist-info/METADATA")]
        metadata = Parser().parsestr(z.read(name).decode())
    requirements = [Requirement(r) for r in metadata.get_all("Requires-Dist") or []]
    return [r for r in requirements if r.marker is None or r.marker.evaluate({"extra": ""})]


def _closure(requirements: list[Requirement]) -> set[str]:
    """The distributions ``requirements`` need, transitively, as installed here."""
    seen: set[str] = set()
    todo = list(requirements)
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        seen.add(name)
        dist = importlib.metadata.distribution(req.name)
        for sub in dist.requires or []:
            r = Requirement(sub)
            if r.marker is None or r.marker.evaluate({"extra": ""}):
                todo.append(r)
    return seen


def _copy_installed(name: str, site: Path) -> None:
    """Put distribution ``name``'s installed files (RECORD) into the venv's ``site``."""
    dist = importlib.metadata.distribution(name)
    paths = sysconfig.get_paths()
    roots = {Path(paths["purelib"]).resolve(), Path(paths["platlib"]).resolve()}
    for file in dist.files or []:
        source = Path(str(dist.locate_file(file))).resolve()
        here = next((r for r in roots if source.is_relative_to(r)), None)
        if here is None or "__pycache__" in source.parts or not source.is_file():
            continue  # console scripts and byte code: not needed
        target = site / source.relative_to(here)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


@pytest.fixture(scope="module")
def guest(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, set[str]]:
    """A venv holding the checkout (no extras) and the base set only: its bin/ and its distributions."""
    root = tmp_path_factory.mktemp("guest")
    wheel = _build_wheel(root)
    needed = _closure(_base_requirements(wheel))
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    for name in needed:
        _copy_installed(name, site)
    subprocess.run([*PIP, "--python", str(python), "install", "-q", "--no-deps", "--no-index", str(wheel)],
                   check=True, capture_output=True, text=True)
    listed = subprocess.run([str(python), "-I", "-c", LIST], check=True, capture_output=True, text=True).stdout
    installed = {canonicalize_name(name): (version, requires) for name, version, requires in json.loads(listed)}
    # As `pip check` would: every requirement of every distribution there is met there.
    for name, (_, requires) in installed.items():
        for text in requires:
            req = Requirement(text)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            have = installed.get(canonicalize_name(req.name))
            assert have is not None, f"{name} needs {req}, which the guest venv lacks"
            assert req.specifier.contains(have[0], prereleases=True), f"{name} needs {req}, not {have[0]}"
    return venv / "bin", set(installed)


def test_the_base_set_is_the_runners_and_holds_no_server_dependency(guest: tuple[Path, set[str]]) -> None:
    _, installed = guest
    assert {"grpcio", "protobuf", "click", "pyyaml", "pyjwt"} <= installed
    assert installed.isdisjoint(SERVER_ONLY)
    # Every runner module imports there (isolated: nothing from the checkout or this environment).
    code = ("import pkgutil, importlib, runner\n"
            "for m in pkgutil.walk_packages(runner.__path__, 'runner.'): importlib.import_module(m.name)\n"
            "import runner.cli, sys\n"
            "assert 'kdl' not in sys.modules and 'asyncpg' not in sys.modules\n"
            "print(runner.__file__)")
    out = subprocess.run([str(guest[0] / "python"), "-I", "-c", code], capture_output=True, text=True, cwd="/")
    assert out.returncode == 0, out.stderr
    assert "site-packages" in out.stdout  # the installed runner, not the checkout's


async def test_the_guest_runner_runs_a_job(guest: tuple[Path, set[str]], tmp_path: Path) -> None:
    bin_dir, _ = guest
    repo = make_repo(tmp_path / "repo", {"hello.txt": "hello from the repo\n"})
    steps = [jobs_pb2.Step(name="Read", run="cat hello.txt"), jobs_pb2.Step(name="Fail", run="exit 3")]
    async with orchestrator(tmp_path / "logs") as orch:
        session = orch.gateway.assign(assigned("job-1", steps, clone_url=repo.url, sha=repo.sha))
        proc = await start_runner(orch.server.address, session.token, tmp_path / "vm",
                                  program=[str(bin_dir / "solstice-runner")])
        try:
            outcome = await asyncio.wait_for(session.wait_finished(), 90)
        finally:
            code, stderr = await runner_exit(proc)
        lines = await (await session.log()).read_all()
    assert code == 0, stderr
    assert outcome.state == jobs_pb2.JOB_STATE_FAILED and "exit code 3" in outcome.reason
    assert [(s.state, s.exit_code) for s in outcome.steps] == [
        (jobs_pb2.STEP_STATE_SUCCEEDED, 0), (jobs_pb2.STEP_STATE_FAILED, 3)]
    assert [ln.text() for ln in lines if ln.step == 0 and ln.stream == STDOUT] == ["hello from the repo"]
