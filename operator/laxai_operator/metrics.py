"""Prometheus metrics of the operator, on their own registry.

- ``laxai_trainingjobs{phase}``: TrainingJobs by phase, computed at scrape time from kopf's
  in-memory index of the current TrainingJobs, which kopf rebuilds from the initial listing —
  so the figures are right after a restart (unlike counters incremented on transitions).
- ``laxai_operator_reconcile_duration_seconds{trigger}``: one reconcile (read, decide, write).
- ``laxai_operator_errors_total{trigger}``: reconciles that raised.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from laxai_operator.resource import Phase

REGISTRY = CollectorRegistry()
RECONCILE_SECONDS = Histogram(
    "laxai_operator_reconcile_duration_seconds",
    "Duration of one TrainingJob reconcile, by trigger.",
    ["trigger"],
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
ERRORS = Counter(
    "laxai_operator_errors", "TrainingJob reconciles that raised, by trigger.", ["trigger"], registry=REGISTRY
)


class PhaseCollector(Collector):
    """Counts TrainingJobs by phase from a source of phases (kopf's index), at scrape time."""

    def __init__(self) -> None:
        self.source: Callable[[], Iterable[str]] | None = None

    def phases(self) -> list[str]:
        if self.source is None:
            return []
        # The scrape runs in the HTTP server's thread while the event loop updates the index:
        # a concurrent resize makes iteration raise; a retry sees a consistent snapshot.
        for _ in range(5):
            try:
                return list(self.source())
            except RuntimeError:
                continue
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        gauge = GaugeMetricFamily("laxai_trainingjobs", "TrainingJobs by phase.", labels=["phase"])
        counts = collections.Counter(self.phases())
        for phase in Phase:
            gauge.add_metric([phase.value], counts.get(phase.value, 0))
        yield gauge


PHASES = PhaseCollector()
REGISTRY.register(PHASES)

_served: set[int] = set()
_lock = threading.Lock()


def serve(port: int, addr: str = "0.0.0.0") -> None:
    """Serve /metrics on ``port`` (0: off); once per process and port."""
    with _lock:
        if port and port not in _served:
            start_http_server(port, addr=addr, registry=REGISTRY)
            _served.add(port)
