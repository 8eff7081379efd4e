"""Service-level objectives: the ``GET /slo`` snapshot and the rules that grade it. Pure: data in, data out.

Three windows (5 min, 1 h, 24 h). Per window, six objectives, each ``{target, value, status, samples,
unit}``:

* ``voice.turnLatencyP95``: p95 of ``firstAudioOut - endOfSpeech`` over the turn-timing events in the window
  (seconds, lower is better);
* ``voice.pipelineErrorRate``: calls ended in the window with an ``endedReason`` starting ``pipeline-error-``
  over calls ended in the window (lower is better);
* ``api.availability``: API answers below 500 over all answers, from this process's counters (higher is
  better); ``api.latencyP95``: p95 of the API request time (seconds);
* ``webhooks.successRate``: webhook jobs that reached ``delivered`` over those that reached ``delivered`` or
  ``failed`` in the window (``skipped`` jobs, for a 410 or a disabled endpoint, count for neither);
* ``audio.warningRate``: calls with a ``frames-dropped``, ``underrun`` or ``one-way-audio`` event in the window
  over calls active in the window (lower is better); the raw event counts are reported beside it.

Grading (``evaluate``), with ``f`` = ``observe.slo.at_risk_fraction`` (0.1 by default):

* lower is better: ``breached`` when value > target; ``at-risk`` when ``target * (1 - f) < value <= target``
  (so exactly at the target is ``at-risk``); ``ok`` below that;
* higher is better (ratios): the band applies to the error budget ``1 - target``: ``breached`` when
  value < target; ``at-risk`` when more than ``(1 - f)`` of the budget is used; ``ok`` otherwise;
* no sample in the window: value ``null`` and status ``no-data``.

Comparisons allow 1e-9 for binary rounding, so a value equal to its target on paper grades as equal.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

OK = "ok"
AT_RISK = "at-risk"
BREACHED = "breached"
NO_DATA = "no-data"
STATUS_ORDER = (NO_DATA, OK, AT_RISK, BREACHED)
EPS = 1e-9

#: window label -> seconds
WINDOWS: tuple[tuple[str, int], ...] = (("5m", 300), ("1h", 3600), ("24h", 86400))
AUDIO_WARNING_KINDS = ("frames-dropped", "underrun", "one-way-audio")
_AUDIO_WIRE = {
    "frames-dropped": "framesDropped",
    "underrun": "underruns",
    "one-way-audio": "oneWayAudio",
}


def evaluate(
    value: float | None, target: float, higher_is_better: bool, at_risk_fraction: float
) -> str:
    """Grade one figure against its target (see the module docstring)."""
    if value is None:
        return NO_DATA
    if higher_is_better:
        budget = 1.0 - target
        used = 1.0 - value
        if used > budget + EPS:
            return BREACHED
        if used > budget * (1.0 - at_risk_fraction) + EPS:
            return AT_RISK
        return OK
    if value > target + EPS:
        return BREACHED
    if value > target * (1.0 - at_risk_fraction) + EPS:
        return AT_RISK
    return OK


def worst(statuses: Iterable[str]) -> str:
    return max(statuses, key=STATUS_ORDER.index, default=NO_DATA)


def percentile_cont(sorted_values: Sequence[float], p: float) -> float | None:
    """PostgreSQL's ``percentile_cont``: linear interpolation between the closest ranks."""
    if not sorted_values:
        return None
    pos = p * (len(sorted_values) - 1)
    lo = math.floor(pos)
    frac = pos - lo
    if frac == 0 or lo + 1 >= len(sorted_values):
        return float(sorted_values[lo])
    return float(sorted_values[lo] + frac * (sorted_values[lo + 1] - sorted_values[lo]))


def ratio(part: int, whole: int) -> float | None:
    return None if whole <= 0 else part / whole


@dataclass(frozen=True)
class Objective:
    target: float
    value: float | None
    samples: int
    higher_is_better: bool
    unit: str
    at_risk_fraction: float

    @property
    def status(self) -> str:
        return evaluate(self.value, self.target, self.higher_is_better, self.at_risk_fraction)

    def wire(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "value": None if self.value is None else round(self.value, 6),
            "status": self.status,
            "samples": self.samples,
            "unit": self.unit,
        }


@dataclass(frozen=True)
class WindowFigures:
    """What one window measured; ``None`` latencies mean no sample."""

    turns: int = 0
    turn_latency_p95: float | None = None
    calls_ended: int = 0
    pipeline_errors: int = 0
    api_requests: int = 0
    api_errors: int = 0
    api_latency_p95: float | None = None
    webhooks_delivered: int = 0
    webhooks_failed: int = 0
    calls_active: int = 0
    calls_with_audio_warnings: int = 0
    audio_warnings: Mapping[str, int] = field(default_factory=dict)


#: (group, name, settings attribute, higher is better, unit)
OBJECTIVES: tuple[tuple[str, str, str, bool, str], ...] = (
    ("voice", "turnLatencyP95", "turn_latency_p95_seconds", False, "seconds"),
    ("voice", "pipelineErrorRate", "pipeline_error_rate", False, "ratio"),
    ("api", "availability", "api_availability", True, "ratio"),
    ("api", "latencyP95", "api_latency_p95_seconds", False, "seconds"),
    ("webhooks", "successRate", "webhook_success_rate", True, "ratio"),
    ("audio", "warningRate", "audio_warning_rate", False, "ratio"),
)


def objectives(fig: WindowFigures, targets: Any) -> dict[str, Objective]:
    """``"group.name" -> Objective`` for one window; ``targets`` is an ``SloSettings``."""
    errors_ratio = ratio(fig.api_errors, fig.api_requests)
    values: dict[str, tuple[float | None, int]] = {
        "voice.turnLatencyP95": (fig.turn_latency_p95, fig.turns),
        "voice.pipelineErrorRate": (ratio(fig.pipeline_errors, fig.calls_ended), fig.calls_ended),
        "api.availability": (
            None if errors_ratio is None else 1.0 - errors_ratio,
            fig.api_requests,
        ),
        "api.latencyP95": (fig.api_latency_p95, fig.api_requests),
        "webhooks.successRate": (
            ratio(fig.webhooks_delivered, fig.webhooks_delivered + fig.webhooks_failed),
            fig.webhooks_delivered + fig.webhooks_failed,
        ),
        "audio.warningRate": (
            ratio(fig.calls_with_audio_warnings, fig.calls_active),
            fig.calls_active,
        ),
    }
    out = {}
    for group, name, attr, higher, unit in OBJECTIVES:
        value, samples = values[f"{group}.{name}"]
        out[f"{group}.{name}"] = Objective(
            target=float(getattr(targets, attr)),
            value=value,
            samples=samples,
            higher_is_better=higher,
            unit=unit,
            at_risk_fraction=float(targets.at_risk_fraction),
        )
    return out


def window_wire(fig: WindowFigures, targets: Any) -> dict[str, Any]:
    objs = objectives(fig, targets)
    out: dict[str, Any] = {}
    for key, obj in objs.items():
        group, name = key.split(".")
        out.setdefault(group, {})[name] = obj.wire()
    for kind in AUDIO_WARNING_KINDS:
        out["audio"][_AUDIO_WIRE[kind]] = int(fig.audio_warnings.get(kind, 0))
    out["status"] = worst(o.status for o in objs.values())
    return out


def snapshot(
    figures: Mapping[str, WindowFigures], targets: Any, generated_at: str
) -> dict[str, Any]:
    """The ``GET /slo`` body from each window's figures."""
    windows = {label: window_wire(figures[label], targets) for label, _s in WINDOWS}
    return {
        "generatedAt": generated_at,
        "status": worst(w["status"] for w in windows.values()),
        "windows": windows,
        "thresholds": {
            "atRiskFraction": targets.at_risk_fraction,
            "lowerIsBetter": "breached above the target; at-risk above target*(1-atRiskFraction)",
            "higherIsBetter": (
                "breached below the target; at-risk once more than (1-atRiskFraction) of the "
                "error budget (1-target) is used"
            ),
            "noData": "no sample in the window: value null, status no-data",
        },
    }


# ------------------------------------------------------------------------------- API request window


def latency_bounds(extra: Iterable[float] = ()) -> tuple[float, ...]:
    """Histogram bin upper bounds: 1 ms growing by 5% to two minutes, plus ``extra`` (the targets), so that
    a p95 read from the histogram grades exactly against those targets."""
    bounds = set()
    b = 0.001
    while b < 120.0:
        bounds.add(round(b, 6))
        b *= 1.05
    bounds.update(float(x) for x in extra if x > 0)
    return tuple(sorted(bounds))


class RequestWindow:
    """Rolling API request counts and a latency histogram, in ``resolution``-second slots over ``span``
    seconds. Not thread-safe by itself: under gevent one greenlet runs at a time and no method yields.

    A window's p95 is read from the histogram (nearest rank): the upper bound of the bin that holds it,
    capped by the slowest request seen, so it errs high by at most one bin (5%), and never across a bound
    passed in ``bounds`` (the targets).
    """

    def __init__(self, bounds: Sequence[float], span: int = 86400, resolution: int = 10) -> None:
        self.bounds = tuple(bounds)
        self.span = span
        self.resolution = resolution
        #: slot start -> [count, errors, max seconds, {bin: count}]
        self._slots: dict[int, list[Any]] = {}

    def record(self, now: float, status: int, seconds: float) -> None:
        slot = int(now // self.resolution) * self.resolution
        entry = self._slots.get(slot)
        if entry is None:
            self._expire(slot)
            entry = self._slots[slot] = [0, 0, 0.0, {}]
        entry[0] += 1
        if status >= 500:
            entry[1] += 1
        entry[2] = max(entry[2], seconds)
        idx = bisect_left(self.bounds, seconds)
        entry[3][idx] = entry[3].get(idx, 0) + 1

    def _expire(self, newest: int) -> None:
        oldest = newest - self.span
        for slot in [s for s in self._slots if s < oldest]:
            del self._slots[slot]

    def figures(self, now: float, window: int, p: float = 0.95) -> tuple[int, int, float | None]:
        """(requests, errors >= 500, latency percentile) over the last ``window`` seconds."""
        since = now - window
        count = errors = 0
        slowest = 0.0
        bins: dict[int, int] = {}
        for slot, (n, e, mx, hist) in self._slots.items():
            if slot + self.resolution <= since or slot > now:
                continue
            count += n
            errors += e
            slowest = max(slowest, mx)
            for idx, c in hist.items():
                bins[idx] = bins.get(idx, 0) + c
        if count == 0:
            return 0, 0, None
        rank = max(1, math.ceil(p * count))
        seen = 0
        for idx in sorted(bins):
            seen += bins[idx]
            if seen >= rank:
                upper = self.bounds[idx] if idx < len(self.bounds) else slowest
                return count, errors, min(upper, slowest)
        return count, errors, slowest  # pragma: no cover - the loop always reaches rank
