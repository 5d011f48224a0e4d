"""The runner as one artefact a guest runs with nothing but a Python 3 interpreter.

Layout (a ``.tar.gz`` unpacked at the recipe's ``runner.prefix``)::

    bin/solstice-runner        launcher: ``/usr/bin/python3 -I``, puts lib/ first on sys.path
    bin/solstice-runner-smf    the SMF start method (illumos guests)
    lib/                       common/ and runner/ from this build, plus their
                               dependencies' wheels for the guest's Python and
                               platform (grpcio and PyYAML are native), compiled
    MANIFEST.json              version, python, platform, dependency versions

Why not a zipapp (shiv/pex style): grpcio is a C extension, and extension
modules cannot be imported from a zip, so such a bundle unpacks itself on
its first start - and in a throw-away VM every start is the first. The
unpacked tree costs nothing at boot (docs/images.md has the figures from
bench/bench_images.py). The dependencies are the versions installed where
the build runs, so a guest runs what the tests ran.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import shutil
import sys
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import common
import runner
from common.errors import SolsticeError
from common.version import VERSION
from images.recipe import RunnerSpec
from orchestrator.commands import run_command
from orchestrator.drivers.errors import CommandFailed

DISTRIBUTION = "solstice-ci"
SERVICES = Path(__file__).parent / "services"
PIP_TIMEOUT = 600.0

LAUNCHER = '''#!/usr/bin/python3 -I
"""solstice-runner {version} (Python {python}, {platform}); built by solstice-image."""
import sys
from pathlib import Path

if sys.version_info[:2] != ({major}, {minor}):
    sys.exit("ERROR: this solstice-runner was built for Python {python}, "
             "but %s is %d.%d: rebuild the image" % (sys.executable, *sys.version_info[:2]))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "lib"))
from runner.cli import main

main()
'''


class BundleError(SolsticeError):
    """The runner artefact could not be built."""


@dataclass(frozen=True)
class Bundle:
    """A built runner artefact."""

    path: Path  # the .tar.gz
    version: str
    python: str
    platform: str
    dependencies: dict[str, str]
    seconds: float

    @property
    def size(self) -> int:
        return self.path.stat().st_size


def runner_dependencies() -> list[str]:
    """What the runner imports beyond the standard library: pyproject's base set.

    The base ``dependencies`` are the runner's by definition (the orchestrator's
    are behind the ``server`` extra), so the guest gets exactly what
    tests/runner/test_guest_install.py runs a job with.
    """
    try:
        requires = importlib.metadata.requires(DISTRIBUTION) or []
    except importlib.metadata.PackageNotFoundError as err:
        raise BundleError(f"{DISTRIBUTION} is not installed here (scripts/bootstrap.sh): "
                          "its metadata names the runner's dependencies") from err
    names = []
    for requirement in requires:
        if "extra ==" in requirement:
            continue
        match = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement)
        if match:
            names.append(match.group(0))
    return names


def dependency_pins() -> dict[str, str]:
    """The installed version of each runner dependency on this build host."""
    return {name: importlib.metadata.version(name) for name in runner_dependencies()}


def artefact_name(spec: RunnerSpec) -> str:
    return f"solstice-runner-{VERSION}-py{spec.python.replace('.', '')}-{spec.platform}.tar.gz"


async def build_bundle(spec: RunnerSpec, out_dir: Path, work: Path) -> Bundle:
    """Build the runner artefact for ``spec`` into ``out_dir`` (reused if already built)."""
    started = time.monotonic()
    pins = dependency_pins()
    out = out_dir / artefact_name(spec)
    tree = work / "runner-bundle"
    shutil.rmtree(tree, ignore_errors=True)
    lib = tree / "lib"
    lib.mkdir(parents=True)
    argv = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
            "--no-warn-script-location", "--target", str(lib), "--only-binary=:all:"]
    if spec.platform != "native":
        argv += ["--platform", spec.platform, "--python-version", spec.python,
                 "--implementation", "cp", "--abi", f"cp{spec.python.replace('.', '')}"]
    argv += [f"{name}=={version}" for name, version in pins.items()]
    try:
        await run_command(argv, timeout=PIP_TIMEOUT)
    except CommandFailed as err:
        raise BundleError(f"cannot fetch the runner's dependencies for Python {spec.python} on "
                          f"{spec.platform}: {err}") from err
    shutil.rmtree(lib / "bin", ignore_errors=True)  # console scripts of the deps: unused
    for package in (common, runner):
        source = Path(package.__file__).parent
        shutil.copytree(source, lib / source.name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    major, minor = spec.python.split(".")
    bin_dir = tree / "bin"
    bin_dir.mkdir()
    launcher = bin_dir / "solstice-runner"
    launcher.write_text(LAUNCHER.format(version=VERSION, python=spec.python, platform=spec.platform,
                                        major=major, minor=minor))
    launcher.chmod(0o755)
    smf = bin_dir / "solstice-runner-smf"
    smf.write_text((SERVICES / "solstice-runner-smf").read_text().replace("@PREFIX@", spec.prefix))
    smf.chmod(0o755)
    if spec.python == f"{sys.version_info[0]}.{sys.version_info[1]}":
        # Bytecode for the guest's Python, so no start pays for compiling.
        await run_command([sys.executable, "-m", "compileall", "-q", "-j", "0", str(lib)], timeout=PIP_TIMEOUT)
    manifest = {"version": VERSION, "python": spec.python, "platform": spec.platform, "dependencies": pins}
    (tree / "MANIFEST.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".part")
    with tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
        for child in sorted(tree.iterdir()):
            tar.add(child, arcname=child.name, filter=_root_owned)
    tmp.replace(out)
    shutil.rmtree(tree, ignore_errors=True)
    return Bundle(out, VERSION, spec.python, spec.platform, pins, time.monotonic() - started)


def install_bundle(bundle: Path, root: Path, prefix: str) -> None:
    """Unpack ``bundle`` at ``root/prefix`` (``root`` is the guest's file system tree)."""
    target = root / prefix.lstrip("/")
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    with tarfile.open(bundle) as tar:
        tar.extractall(target, filter="data")


def read_manifest(prefix_dir: Path) -> dict[str, object]:
    return json.loads((prefix_dir / "MANIFEST.json").read_text())


def _root_owned(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    return info
