"""Golden images: build time and size, the runner artefact's start time, qemu per-VM overhead.

Run: .venv/bin/python bench/bench_images.py [--cache DIR] [--skip-build] [--skip-vm] [--runs N]

1. Build: images/recipes/debian-12.yaml built into a temporary directory;
   each stage's time, the raw disk's size, what it stores (sparse), and the
   runner artefact's size. With a warm cache (the default cache is the test
   suite's, /var/cache/solstice-tests/build) the base system is reused and
   the figure is a rebuild's; ``--cache`` an empty directory for a cold one.
2. Runner artefact start: ``solstice-runner --help`` from the unpacked tree
   (what the image holds) against a zipapp-style bundle that must unpack
   grpcio's native modules before it can import them (what shiv/pex do on a
   first start - and in a throw-away VM every start is the first).
3. In a VM (qemu driver, the cached test image): boot to runner call-in,
   the job's run, teardown; and the artefact's start time inside the guest
   (a step times ``solstice-runner --help``). KVM if it works here, else TCG.

Not part of the test suite; prints figures and ratios only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from common.bootstrap import RunnerBootstrap  # noqa: E402
from common.logbatch import STDOUT  # noqa: E402
from common.rpc import jobs_pb2  # noqa: E402
from images.build import BuiltImage, build  # noqa: E402
from images.bundle import build_bundle  # noqa: E402
from images.progress import Progress  # noqa: E402
from images.recipe import RunnerSpec, load_recipe  # noqa: E402
from orchestrator.catalog import QemuConfig, QemuImage  # noqa: E402
from orchestrator.drivers.base import VmSpec  # noqa: E402
from orchestrator.drivers.qemu import QemuDriver  # noqa: E402
from tests.images.conftest import CACHE, RECIPE, cached_guest_image  # noqa: E402
from tests.images.support import served_repo  # noqa: E402
from tests.protocol.harness import assigned, orchestrator  # noqa: E402

MIB = 1 << 20


def timed(argv: list[str], runs: int, env: dict[str, str] | None = None) -> list[float]:
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=env)
        out.append(time.perf_counter() - started)
    return out


def bench_build(cache: Path) -> None:
    recipe = load_recipe(RECIPE)
    with tempfile.TemporaryDirectory(prefix="bench-image-") as tmp:
        progress = Progress(6, out=sys.stderr, tty=False)
        built = asyncio.run(build(recipe, Path(tmp), cache, progress))
        print("\n== image build (images/recipes/debian-12.yaml)")
        for title, seconds in progress.timings:
            print(f"  {seconds:7.1f}s  {title}")
        print(f"  {built.seconds:7.1f}s  total")
        print(f"  disk {built.size / MIB:.0f} MiB, stored {built.stored / MIB:.0f} MiB "
              f"({built.stored / built.size:.0%} of the disk)")
        bases = sorted((cache / "base").glob("base-*.tar"))
        if bases:
            print(f"  base system tarball {bases[-1].stat().st_size / MIB:.0f} MiB (cached: {cache / 'base'})")


def bench_artefact(runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-runner-") as tmp:
        work = Path(tmp)
        bundle = asyncio.run(build_bundle(RunnerSpec(), work / "out", work / "work"))
        tree = work / "tree"
        tree.mkdir()
        with tarfile.open(bundle.path) as tar:
            tar.extractall(tree, filter="data")
        unpacked = sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())
        launcher = str(tree / "bin" / "solstice-runner")
        tree_times = timed([launcher, "--help"], runs)
        # The zipapp alternative: the same lib/ in one zip; its launcher unpacks it (as shiv
        # does into ~/.shiv on a first start) because grpcio's .so cannot load from a zip.
        pyz = work / "runner.pyz"
        with zipfile.ZipFile(pyz, "w", zipfile.ZIP_DEFLATED) as z:
            for path in (tree / "lib").rglob("*"):
                if path.is_file() and "__pycache__" not in path.parts:
                    z.write(path, path.relative_to(tree / "lib"))
        unzip_start = (
            "import sys, tempfile, zipfile; d = tempfile.mkdtemp(); zipfile.ZipFile(sys.argv[1]).extractall(d); "
            "sys.path.insert(0, d); sys.argv = ['solstice-runner', '--help']; from runner.cli import main; main()")
        pyz_times = timed([sys.executable, "-c", unzip_start, str(pyz)], runs)
        print("\n== runner artefact")
        print(f"  {bundle.path.name}: {bundle.size / MIB:.1f} MiB packed, {unpacked / MIB:.1f} MiB unpacked; "
              f"built in {bundle.seconds:.1f}s")
        print(f"  zipapp of the same code: {pyz.stat().st_size / MIB:.1f} MiB")
        print(f"  start (--help), median of {runs}: unpacked tree {statistics.median(tree_times) * 1000:.0f} ms; "
              f"zipapp unpacking first {statistics.median(pyz_times) * 1000:.0f} ms "
              f"({statistics.median(pyz_times) / statistics.median(tree_times):.1f}x)")


async def bench_vm(tmp: Path, image: BuiltImage) -> None:
    config = QemuConfig(images={"debian-12": QemuImage(path=Path(image.path), vcpus=2, ram="1G")},
                        state_dir=tmp / "vms")
    driver = QemuDriver(config)
    step = ('for i in 1 2 3; do s=$(date +%s%N); /usr/local/bin/solstice-runner --help >/dev/null; '
            'e=$(date +%s%N); echo "start-ms=$(( (e - s) / 1000000 ))"; done')
    with served_repo(tmp / "repo") as (url, sha):
        await _bench_vm(tmp, image, driver, step, url, sha)


async def _bench_vm(tmp: Path, image: BuiltImage, driver: QemuDriver, step: str, url: str, sha: str) -> None:
    async with orchestrator(tmp / "logs") as orch:
        session = orch.gateway.assign(assigned("bench-vm", [jobs_pb2.Step(name="time the runner", run=step)],
                                               clone_url=url, sha=sha))
        spec = VmSpec.for_job("bench-vm", 1, "debian-12", RunnerBootstrap(orch.server.address, session.token))
        marks = {"start": time.monotonic()}
        try:
            await driver.prepare(spec)
            marks["prepared"] = time.monotonic()
            await driver.boot(spec)
            marks["booted"] = time.monotonic()
            await driver.wait_ready(spec, session.connected, 1800)
            marks["called in"] = time.monotonic()
            outcome = await asyncio.wait_for(session.wait_finished(), 600)
            marks["job done"] = time.monotonic()
            lines = [ln.text() for ln in await (await session.log()).read_all() if ln.stream == STDOUT]
        finally:
            await driver.destroy(spec.name)
            marks["torn down"] = time.monotonic()
            await orch.gateway.release("bench-vm", 1)
            await driver.aclose()
    print(f"\n== qemu driver, one VM (accel {driver.accel}, image {image.image_id})")
    names = list(marks)
    for before, after in zip(names, names[1:], strict=False):
        print(f"  {marks[after] - marks[before]:7.1f}s  {before} -> {after}")
    print(f"  {marks['called in'] - marks['start']:7.1f}s  per-VM overhead: prepare to runner call-in")
    print(f"  job: {jobs_pb2.JobState.Name(outcome.state)}; in the guest: "
          + (", ".join(line for line in lines if line.startswith("start-ms=")) or "no timing line"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", type=Path, default=CACHE / "build", help="build cache (base systems, wheels)")
    parser.add_argument("--skip-build", action="store_true")
    parser.add_argument("--skip-vm", action="store_true")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}")
    if not args.skip_build:
        bench_build(args.cache)
    bench_artefact(args.runs)
    if not args.skip_vm:
        with tempfile.TemporaryDirectory(prefix="bench-vm-") as tmp:
            asyncio.run(bench_vm(Path(tmp), cached_guest_image()))


if __name__ == "__main__":
    main()
