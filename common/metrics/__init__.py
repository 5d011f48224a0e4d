"""Solstice CI's Prometheus metrics: defined here, recorded by one-line calls from the parts.

Every metric of this process lives in ``REGISTRY`` (with the process
collector's CPU, memory and file descriptors); ``common.metrics.http`` serves
it as ``/metrics``. Names follow Prometheus conventions: ``solstice_`` prefix,
the unit in the name, ``_total`` on counters (added by the client library),
and only bounded label values - never a job id; a ``runs_on`` label (which
workflows choose) goes through ``LABELS`` (``other`` past its first 64).

    solstice_jobs_finished_total{state,label}              node: attempts it ended
    solstice_dispatch_latency_seconds{label}               node: queued -> claimed by this node
    solstice_vm_boot_seconds{driver}                       node: claimed VM prepare -> runner called in
    solstice_vm_phase_duration_seconds{driver,phase}       node: prepare, boot, wait_ready, stop, destroy
    solstice_log_lines_total, solstice_log_bytes_total     node: job log lines/bytes stored
    solstice_runner_reconnects_total                       node: a runner's log stream opened again
    solstice_capacity_slots, solstice_capacity_used_slots  node: job slots, and those in use
    solstice_webhook_deliveries_total{forge,result}        integration
    solstice_forge_api_calls_total{forge,code}             integration: each HTTP answer (code "error": none)
    solstice_jobs{state,label}, solstice_queue_jobs{label},
    solstice_queue_oldest_age_seconds{label}               from the state store when scraped (orchestrator.metrics)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, disable_created_metrics

disable_created_metrics()  # the *_created series only double what a scraper already knows
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)

# Seconds: from a fast local VM (tens of ms) to a slow image clone (tens of minutes).
_LATENCY = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)


class BoundedLabels:
    """The first ``limit`` values of a label as they are; every later one as ``other``."""

    def __init__(self, limit: int = 64) -> None:
        self.limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        value = value or "none"
        with self._lock:
            if value in self._seen:
                return value
            if len(self._seen) < self.limit:
                self._seen.add(value)
                return value
        return "other"


LABELS = BoundedLabels()

JOBS_FINISHED = Counter("solstice_jobs_finished", "Job attempts this node ended, by final state and runs_on label.",
                        ["state", "label"], registry=REGISTRY)
DISPATCH = Histogram("solstice_dispatch_latency_seconds", "From a job attempt queued to its claim by this node.",
                     ["label"], buckets=_LATENCY, registry=REGISTRY)
BOOT = Histogram("solstice_vm_boot_seconds", "From the start of a VM's prepare to its runner calling in.",
                 ["driver"], buckets=_LATENCY, registry=REGISTRY)
VM_PHASE = Histogram("solstice_vm_phase_duration_seconds", "Duration of each driver call on a job's VM.",
                     ["driver", "phase"], buckets=_LATENCY, registry=REGISTRY)
LOG_LINES = Counter("solstice_log_lines", "Job log lines stored by this node.", registry=REGISTRY)
LOG_BYTES = Counter("solstice_log_bytes", "Job log bytes stored by this node.", registry=REGISTRY)
RECONNECTS = Counter("solstice_runner_reconnects", "Log streams a runner opened again for the same attempt.",
                     registry=REGISTRY)
CAPACITY = Gauge("solstice_capacity_slots", "Jobs this node runs at once, at most.", registry=REGISTRY)
CAPACITY_USED = Gauge("solstice_capacity_used_slots", "Job slots of this node in use.", registry=REGISTRY)
WEBHOOKS = Counter("solstice_webhook_deliveries", "Webhook deliveries answered, by forge and result.",
                   ["forge", "result"], registry=REGISTRY)
FORGE_CALLS = Counter("solstice_forge_api_calls", "Forge API requests, by forge and HTTP status (\"error\": none).",
                      ["forge", "code"], registry=REGISTRY)


def job_finished(state: str, label: str) -> None:
    JOBS_FINISHED.labels(state, LABELS(label)).inc()


def job_claimed(label: str, queued_seconds: float | None) -> None:
    """A node claimed an attempt queued ``queued_seconds`` ago (None: not known)."""
    if queued_seconds is not None:
        DISPATCH.labels(LABELS(label)).observe(max(0.0, queued_seconds))


@contextmanager
def vm_phase(driver: str, phase: str) -> Iterator[None]:
    """Time one driver call (recorded whether it succeeds or not)."""
    start = time.monotonic()
    try:
        yield
    finally:
        VM_PHASE.labels(driver, phase).observe(time.monotonic() - start)


def vm_booted(driver: str, seconds: float) -> None:
    BOOT.labels(driver).observe(seconds)


def log_stored(lines: int, size: int) -> None:
    LOG_LINES.inc(lines)
    LOG_BYTES.inc(size)


def runner_reconnected() -> None:
    RECONNECTS.inc()


def slots(total: int, used: int) -> None:
    CAPACITY.set(total)
    CAPACITY_USED.set(used)


_RESULT = str.maketrans(" -", "__")


def webhook_answered(forge: str, result: str) -> None:
    """``result``: the answer's ``result`` (a fixed set of phrases in integration.service/webhooks)."""
    WEBHOOKS.labels(forge, result.translate(_RESULT) or "unknown").inc()


def forge_called(forge: str, status: int | None) -> None:
    FORGE_CALLS.labels(forge, str(status) if status is not None else "error").inc()
