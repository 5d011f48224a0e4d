"""The orchestrator's side of the metrics (``common.metrics`` defines them).

    TimedDriver(driver)        a driver whose VM calls are timed (phases, boot latency)
    queued_seconds(job)        how long a job attempt waited before this claim
    store_families(store)      the state store's gauges, read when ``/metrics`` is scraped

Every node in a cluster reports the same store gauges (they describe the
shared store): aggregate them with ``max``, not ``sum`` (docs/metrics.md).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric

from common import metrics
from orchestrator.drivers.base import Driver, VmSpec
from orchestrator.store import JobRecord, JobState, Store


class TimedDriver:
    """``Driver`` around ``inner`` that times prepare, boot, wait_ready, stop and destroy."""

    def __init__(self, inner: Driver) -> None:
        self.inner = inner
        self._started: dict[str, float] = {}  # VM name -> when its prepare began

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)  # name, serves, list_owned, console_tail, aclose, ...

    def _driver(self, label: str = "") -> str:
        pick = getattr(self.inner, "driver_for", None)  # a label router: the child that runs the label
        return pick(label).name if pick is not None and label else self.inner.name

    async def prepare(self, spec: VmSpec) -> None:
        self._started[spec.name] = time.monotonic()
        with metrics.vm_phase(self._driver(spec.label), "prepare"):
            await self.inner.prepare(spec)

    async def boot(self, spec: VmSpec) -> None:
        with metrics.vm_phase(self._driver(spec.label), "boot"):
            await self.inner.boot(spec)

    async def wait_ready(self, spec: VmSpec, ready: asyncio.Event, timeout: float) -> None:
        with metrics.vm_phase(self._driver(spec.label), "wait_ready"):
            await self.inner.wait_ready(spec, ready, timeout)
        started = self._started.pop(spec.name, None)
        if started is not None:
            metrics.vm_booted(self._driver(spec.label), time.monotonic() - started)

    async def stop(self, name: str) -> None:
        with metrics.vm_phase(self._driver(), "stop"):
            await self.inner.stop(name)

    async def destroy(self, name: str) -> None:
        self._started.pop(name, None)
        with metrics.vm_phase(self._driver(), "destroy"):
            await self.inner.destroy(name)


def queued_seconds(job: JobRecord) -> float | None:
    """How long the attempt ``job`` describes waited for its claim: since its attempt was queued
    (a queued record's ``updated_at``), or for a job stored already claimed, since it was submitted."""
    now = datetime.now(UTC)
    if job.state is JobState.QUEUED:
        return (now - job.updated_at).total_seconds()
    if job.request.HasField("submitted_at"):
        return (now - job.request.submitted_at.ToDatetime(tzinfo=UTC)).total_seconds()
    return None


def store_families(store: Store) -> Callable[[], Awaitable[list[Metric]]]:
    """A ``MetricsEndpoint`` source: unfinished jobs by state and label, queue depth and age per label."""

    async def read() -> list[Metric]:
        loads = await store.label_loads()  # a StoreError leaves these out of this scrape
        now = time.time()
        jobs = GaugeMetricFamily("solstice_jobs", "Unfinished job attempts in the state store, by state and "
                                 "runs_on label.", labels=["state", "label"])
        depth = GaugeMetricFamily("solstice_queue_jobs", "Job attempts waiting for a node, by runs_on label.",
                                  labels=["label"])
        age = GaugeMetricFamily("solstice_queue_oldest_age_seconds", "How long the oldest waiting job attempt "
                                "of each runs_on label has waited.", labels=["label"])
        queued: dict[str, tuple[int, float]] = {}
        counts: dict[tuple[str, str], int] = {}
        for load in loads:
            label = metrics.LABELS(load.label)
            key = (load.state.name.lower(), label)
            counts[key] = counts.get(key, 0) + load.count
            if load.state is JobState.QUEUED:
                n, oldest = queued.get(label, (0, now))
                queued[label] = (n + load.count, min(oldest, load.oldest.timestamp()))
        for (state, label), n in sorted(counts.items()):
            jobs.add_metric([state, label], n)
        for label, (n, oldest) in sorted(queued.items()):
            depth.add_metric([label], n)
            age.add_metric([label], max(0.0, now - oldest))
        return [jobs, depth, age]

    return read
