"""SLO grading at the thresholds, percentiles, and the rolling API request window."""

import pytest

from esl_controller.config import SloSettings
from esl_controller.observe import slo
from esl_controller.observe.slo import (
    AT_RISK,
    BREACHED,
    NO_DATA,
    OK,
    RequestWindow,
    WindowFigures,
    evaluate,
    latency_bounds,
    percentile_cont,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.5, AT_RISK),  # exactly at the target: met, but inside the band
        (1.500001, BREACHED),  # just over
        (1.4, AT_RISK),  # within 10% below the target
        (1.35, OK),  # the band's lower edge belongs to ok
        (1.3499, OK),
        (0.0, OK),
        (None, NO_DATA),
    ],
)
def test_lower_is_better(value, expected):
    assert evaluate(value, 1.5, higher_is_better=False, at_risk_fraction=0.1) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (0.99, AT_RISK),  # exactly at the target: the whole error budget is used
        (0.9899, BREACHED),  # just under
        (0.9905, AT_RISK),  # 95% of the budget used
        (0.991, OK),  # 90% of the budget used: the edge belongs to ok
        (1.0, OK),
        (None, NO_DATA),
    ],
)
def test_higher_is_better_uses_the_error_budget(value, expected):
    assert evaluate(value, 0.99, higher_is_better=True, at_risk_fraction=0.1) == expected


def test_ratios_from_counts_grade_exactly_at_the_target():
    targets = SloSettings(pipeline_error_rate=0.05, webhook_success_rate=0.95)
    fig = WindowFigures(calls_ended=20, pipeline_errors=1, webhooks_delivered=19, webhooks_failed=1)
    objs = slo.objectives(fig, targets)
    assert objs["voice.pipelineErrorRate"].value == 0.05
    assert objs["voice.pipelineErrorRate"].status == AT_RISK
    assert objs["webhooks.successRate"].status == AT_RISK
    fig = WindowFigures(calls_ended=20, pipeline_errors=2, webhooks_delivered=18, webhooks_failed=2)
    objs = slo.objectives(fig, targets)
    assert objs["voice.pipelineErrorRate"].status == BREACHED
    assert objs["webhooks.successRate"].status == BREACHED
    fig = WindowFigures(calls_ended=100, pipeline_errors=0, webhooks_delivered=100)
    objs = slo.objectives(fig, targets)
    assert objs["voice.pipelineErrorRate"].status == OK
    assert objs["webhooks.successRate"].status == OK


def test_percentile_cont_matches_hand_figures():
    values = [30, 60, 120, 300]
    assert percentile_cont(values, 0.5) == 90.0
    assert percentile_cont(values, 0.95) == pytest.approx(273.0)
    assert percentile_cont(values, 0.0) == 30.0
    assert percentile_cont(values, 1.0) == 300.0
    assert percentile_cont([7], 0.95) == 7.0
    assert percentile_cont([], 0.5) is None


def test_request_window_counts_errors_and_forgets_old_slots():
    w = RequestWindow(latency_bounds((0.5, 0.45)), span=3600, resolution=10)
    for i in range(90):
        w.record(1000.0 + i, 200, 0.01)
    for i in range(10):
        w.record(1095.0 + i, 503 if i < 3 else 404, 0.02)
    count, errors, p95 = w.figures(1105.0, 300)
    assert (count, errors) == (100, 3)
    assert p95 == pytest.approx(0.02)  # never above the slowest request
    # a minute later, the 5-minute window still holds them; 10 minutes later it does not
    assert w.figures(1165.0, 300)[0] == 100
    assert w.figures(1500.0, 300) == (0, 0, None)
    # recording past the span drops the old slots
    w.record(1000.0 + 7200, 200, 0.01)
    assert w.figures(8200.0, 86400)[0] == 1


@pytest.mark.parametrize(
    ("latency", "expected"),
    [(0.5, AT_RISK), (0.5001, BREACHED), (0.47, AT_RISK), (0.45, OK), (0.2, OK)],
)
def test_api_latency_p95_grades_exactly_at_the_target(latency, expected):
    targets = SloSettings(api_latency_p95_seconds=0.5)
    w = RequestWindow(latency_bounds((0.5, 0.45)))
    for _i in range(95):
        w.record(100.0, 200, latency)
    for _i in range(5):
        w.record(100.0, 200, 9.0)  # the slowest 5% do not move the p95
    requests, errors, p95 = w.figures(100.0, 300)
    fig = WindowFigures(api_requests=requests, api_errors=errors, api_latency_p95=p95)
    assert slo.objectives(fig, targets)["api.latencyP95"].status == expected


def test_snapshot_shape_and_worst_status():
    targets = SloSettings()
    figures = {
        "5m": WindowFigures(),
        "1h": WindowFigures(api_requests=1000, api_errors=0, api_latency_p95=0.1),
        "24h": WindowFigures(
            api_requests=1000,
            api_errors=5,
            api_latency_p95=0.1,
            calls_active=10,
            calls_with_audio_warnings=1,
            audio_warnings={"underrun": 4},
        ),
    }
    snap = slo.snapshot(figures, targets, "2025-01-01T00:00:00.000Z")
    assert snap["windows"]["5m"]["status"] == NO_DATA
    assert snap["windows"]["1h"]["status"] == OK
    assert snap["windows"]["24h"]["api"]["availability"] == {
        "target": 0.999,
        "value": 0.995,
        "status": BREACHED,
        "samples": 1000,
        "unit": "ratio",
    }
    assert snap["windows"]["24h"]["audio"]["underruns"] == 4
    assert snap["windows"]["24h"]["audio"]["warningRate"]["status"] == BREACHED
    assert snap["status"] == BREACHED
