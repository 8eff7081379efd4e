"""In-process API counters, the SLO snapshot and the Prometheus exposition (I/O: prometheus-client, DB).

One :class:`Observer` per API app (``app.extensions["esl_controller_observe"]``), each with its own
``CollectorRegistry`` so several apps in one process (tests) do not share counters.

Metrics (all prefixed ``esl_controller_``):

* ``api_requests_total{method,code}`` (counter) and ``api_request_duration_seconds`` (histogram): every API
  answer, fed by the ``after_request`` hook;
* ``slo_value{window,objective}``, ``slo_target{objective}``, ``slo_samples{window,objective}`` and
  ``slo_status{window,objective}`` (0 ok, 1 at-risk, 2 breached; absent when the window has no sample):
  the same figures as ``GET /slo``, computed at scrape time;
* ``audio_warnings{window,kind}``: frames-dropped / underrun / one-way-audio events in each window;
* ``calls_active{status}`` and ``webhook_jobs_waiting{status}``: calls not ended and jobs not yet delivered.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from esl_controller.calls.serialize import iso
from esl_controller.db.fields import utcnow
from esl_controller.observe import analytics, slo
from esl_controller.observe.pricing import RateCardSource

PREFIX = "esl_controller_"
_STATUS_VALUE = {slo.OK: 0, slo.AT_RISK: 1, slo.BREACHED: 2}


class Observer:
    """Per-app observability state: API counters, the rolling request window, the rate card source."""

    def __init__(self, observe_settings: Any, clock=time.time) -> None:
        self.settings = observe_settings
        self.targets = observe_settings.slo
        self.clock = clock
        self.rate_cards = RateCardSource(observe_settings.rate_card_path)
        frac = self.targets.at_risk_fraction
        target = self.targets.api_latency_p95_seconds
        self.requests = slo.RequestWindow(slo.latency_bounds((target, target * (1 - frac))))
        self.registry = CollectorRegistry(auto_describe=True)
        self.api_requests = Counter(
            PREFIX + "api_requests",
            "API answers by method and status code",
            ("method", "code"),
            registry=self.registry,
        )
        self.api_latency = Histogram(
            PREFIX + "api_request_duration_seconds",
            "API request time",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
            registry=self.registry,
        )
        self.registry.register(_SnapshotCollector(self))

    def record_request(self, method: str, status: int, seconds: float) -> None:
        self.api_requests.labels(method, str(status)).inc()
        self.api_latency.observe(seconds)
        self.requests.record(self.clock(), status, seconds)

    def figures(self, now: datetime | None = None) -> dict[str, slo.WindowFigures]:
        now = now or utcnow()
        wall = self.clock()
        return {
            label: analytics.window_figures(now, seconds, self.requests.figures(wall, seconds))
            for label, seconds in slo.WINDOWS
        }

    def snapshot(self, now: datetime | None = None) -> dict[str, Any]:
        now = now or utcnow()
        return slo.snapshot(self.figures(now), self.targets, iso(now))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class _SnapshotCollector(Collector):
    def __init__(self, observer: Observer) -> None:
        self.observer = observer

    def describe(self) -> list:
        return []

    def collect(self) -> Iterator[GaugeMetricFamily]:
        figures = self.observer.figures()
        targets = self.observer.targets
        value = GaugeMetricFamily(
            PREFIX + "slo_value", "SLO figure per window", labels=("window", "objective")
        )
        target = GaugeMetricFamily(PREFIX + "slo_target", "SLO target", labels=("objective",))
        samples = GaugeMetricFamily(
            PREFIX + "slo_samples", "samples behind an SLO figure", labels=("window", "objective")
        )
        status = GaugeMetricFamily(
            PREFIX + "slo_status",
            "SLO state: 0 ok, 1 at-risk, 2 breached (absent: no data)",
            labels=("window", "objective"),
        )
        audio = GaugeMetricFamily(
            PREFIX + "audio_warnings", "audio warning events per window", labels=("window", "kind")
        )
        seen_targets = set()
        for label, fig in figures.items():
            for name, obj in slo.objectives(fig, targets).items():
                if name not in seen_targets:
                    target.add_metric([name], obj.target)
                    seen_targets.add(name)
                samples.add_metric([label, name], obj.samples)
                if obj.value is not None:
                    value.add_metric([label, name], obj.value)
                    status.add_metric([label, name], _STATUS_VALUE[obj.status])
            for kind in slo.AUDIO_WARNING_KINDS:
                audio.add_metric([label, kind], fig.audio_warnings.get(kind, 0))
        calls, jobs = analytics.live_counts()
        active = GaugeMetricFamily(PREFIX + "calls_active", "calls not ended", labels=("status",))
        for s in ("queued", "ringing", "in-progress", "forwarding"):
            active.add_metric([s], calls.get(s, 0))
        waiting = GaugeMetricFamily(
            PREFIX + "webhook_jobs_waiting", "webhook jobs not yet delivered", labels=("status",)
        )
        for s in ("pending", "delivering"):
            waiting.add_metric([s], jobs.get(s, 0))
        yield from (value, target, samples, status, audio, active, waiting)
