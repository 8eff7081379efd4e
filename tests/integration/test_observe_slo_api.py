"""/slo states at the thresholds over seeded rows and real API requests; /metrics parses and agrees."""

import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest
from prometheus_client.parser import text_string_to_metric_families


@pytest.fixture
def settings(tmp_path, db_url):
    from esl_controller.config import load_settings

    return load_settings(
        None,
        environ={},
        overrides={
            "data_dir": str(tmp_path / "data"),
            "database": {"url": db_url},
            "observe": {
                "slo": {
                    "turn_latency_p95_seconds": 1.0,
                    "pipeline_error_rate": 0.25,
                    "webhook_success_rate": 0.75,
                    "api_availability": 0.5,
                    "audio_warning_rate": 0.5,
                }
            },
        },
    )


@pytest.fixture
def app(settings, database):
    from flask import jsonify

    from api import create_app
    from api.auth import public

    app = create_app(settings)

    @public
    def boom():
        return jsonify({"statusCode": 500}), 500

    app.add_url_rule("/test-boom", "test_boom", boom)
    return app


def seed(database):
    from esl_controller.db.models import Call, CallEvent, WebhookJob

    now = datetime.now(timezone.utc)

    def ago(**kw):
        return now - timedelta(**kw)

    with database.connection_context():

        def call(created, ended, reason):
            return Call.create(
                org_id="o",
                type="inboundPhoneCall",
                status="ended",
                created_at=created,
                started_at=created,
                ended_at=ended,
                ended_reason=reason,
            )

        recent = [
            call(ago(minutes=3), ago(minutes=2), r)
            for r in (
                "pipeline-error-openai-llm-failed",
                "customer-ended-call",
                "customer-ended-call",
                "silence-timed-out",
            )  # fmt: skip
        ]
        call(ago(minutes=25), ago(minutes=20), "pipeline-error-custom-llm-llm-failed")
        for _ in range(5):
            call(ago(hours=3, minutes=5), ago(hours=3), "customer-ended-call")

        def turns(when, latency, n):
            for i in range(n):
                CallEvent.create(
                    call=recent[0].id,
                    at=when,
                    kind="turn-timing",
                    source="pipeline",
                    data={"turn": i, "endOfSpeech": 2.0, "firstAudioOut": 2.0 + latency},
                )

        turns(ago(minutes=1), 1.0, 3)  # 5m: p95 exactly at the 1.0 s target
        turns(ago(minutes=30), 2.0, 3)  # 1h: p95 2.0 -> breached
        turns(ago(hours=5), 0.125, 100)  # 24h: p95 between 0.125 and 1.0 -> ok

        def jobs(when, status, n):
            for _ in range(n):
                WebhookJob.create(
                    org_id="o",
                    message_type="status-update",
                    target_url="http://127.0.0.1:9/",
                    payload={},
                    ordering_key=str(uuid.uuid4()),
                    status=status,
                    created_at=when,
                    updated_at=when,
                )

        jobs(ago(minutes=1), "delivered", 3)
        jobs(ago(minutes=1), "failed", 1)  # 5m: 3/4 = the 0.75 target
        jobs(ago(minutes=40), "failed", 1)  # 1h: 3/5
        jobs(ago(hours=10), "delivered", 15)  # 24h: 18/20
        jobs(ago(minutes=1), "skipped", 4)  # counts for neither

        def audio(c, kind, when):
            CallEvent.create(call=c.id, at=when, kind=kind, level="WARN", data={"frames": 3})

        audio(recent[0], "frames-dropped", ago(minutes=1))
        audio(recent[0], "underrun", ago(minutes=1))
        audio(recent[0], "underrun", ago(minutes=1))
        audio(recent[1], "one-way-audio", ago(hours=2))


def test_slo_states_over_each_window(client, database, anon):
    seed(database)
    for path in ("/health", "/health", "/test-boom", "/test-boom"):
        anon.get(path)
    r = client.get("/slo")
    assert r.status_code == 200, r.get_json()
    snap = r.get_json()
    w5, w1, w24 = (snap["windows"][k] for k in ("5m", "1h", "24h"))

    assert w5["voice"]["turnLatencyP95"] == {
        "target": 1.0,
        "value": 1.0,
        "status": "at-risk",
        "samples": 3,
        "unit": "seconds",
    }
    assert (w1["voice"]["turnLatencyP95"]["value"], w1["voice"]["turnLatencyP95"]["status"]) == (2.0, "breached")  # fmt: skip
    # 106 turns: 100 x 0.125, 3 x 1.0, 3 x 2.0 -> rank 99.75 -> 0.125 + 0.75 * 0.875
    assert w24["voice"]["turnLatencyP95"]["value"] == 0.78125
    assert w24["voice"]["turnLatencyP95"]["status"] == "ok"

    assert (w5["voice"]["pipelineErrorRate"]["value"], w5["voice"]["pipelineErrorRate"]["status"]) == (0.25, "at-risk")  # fmt: skip
    assert (w1["voice"]["pipelineErrorRate"]["value"], w1["voice"]["pipelineErrorRate"]["status"]) == (0.4, "breached")  # fmt: skip
    assert (w24["voice"]["pipelineErrorRate"]["value"], w24["voice"]["pipelineErrorRate"]["status"]) == (0.2, "ok")  # fmt: skip

    assert (w5["webhooks"]["successRate"]["value"], w5["webhooks"]["successRate"]["status"]) == (0.75, "at-risk")  # fmt: skip
    assert (w1["webhooks"]["successRate"]["value"], w1["webhooks"]["successRate"]["status"]) == (0.6, "breached")  # fmt: skip
    assert (w24["webhooks"]["successRate"]["value"], w24["webhooks"]["successRate"]["status"]) == (0.9, "ok")  # fmt: skip

    # 5m: 4 calls active, 1 with warnings; 24h: 10 calls, 2 with warnings
    assert (
        w5["audio"]["warningRate"]["value"] == 0.25 and w5["audio"]["warningRate"]["status"] == "ok"
    )
    assert (w5["audio"]["framesDropped"], w5["audio"]["underruns"], w5["audio"]["oneWayAudio"]) == (1, 2, 0)  # fmt: skip
    assert w24["audio"]["oneWayAudio"] == 1 and w24["audio"]["warningRate"]["value"] == 0.2

    # API: 2 x 200 and 2 x 500 before this request: availability exactly at the 0.5 target
    assert w5["api"]["availability"]["value"] == 0.5
    assert w5["api"]["availability"]["status"] == "at-risk"
    assert w5["api"]["latencyP95"]["samples"] == 4
    assert w5["api"]["latencyP95"]["value"] is not None

    assert w1["status"] == "breached" and snap["status"] == "breached"
    assert snap["thresholds"]["atRiskFraction"] == 0.1


def test_slo_with_no_data(client, database):
    snap = client.get("/slo").get_json()
    voice = snap["windows"]["5m"]["voice"]["turnLatencyP95"]
    assert voice["value"] is None and voice["status"] == "no-data" and voice["samples"] == 0


def metric_samples(text):
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_parse_and_agree_with_the_snapshot(client, anon, database):
    seed(database)
    anon.get("/test-boom")
    anon.get("/health")
    r = anon.get("/metrics")
    assert r.status_code == 401  # protected by default (this 401 is counted too)
    r = client.get("/metrics")
    assert r.status_code == 200 and r.mimetype == "text/plain"
    m = metric_samples(r.get_data(as_text=True))

    def get(name, **labels):
        return m[(name, tuple(sorted(labels.items())))]

    assert get("esl_controller_api_requests_total", method="GET", code="500") == 1
    assert get("esl_controller_api_requests_total", method="GET", code="200") == 1
    assert get("esl_controller_api_requests_total", method="GET", code="401") == 1
    assert get("esl_controller_api_request_duration_seconds_count") == 3
    obj = "voice.turnLatencyP95"
    assert get("esl_controller_slo_target", objective=obj) == 1.0
    assert get("esl_controller_slo_value", window="5m", objective=obj) == 1.0
    assert get("esl_controller_slo_status", window="5m", objective=obj) == 1  # at-risk
    assert get("esl_controller_slo_status", window="1h", objective=obj) == 2  # breached
    assert get("esl_controller_slo_status", window="24h", objective=obj) == 0  # ok
    assert get("esl_controller_slo_samples", window="24h", objective=obj) == 106
    assert get("esl_controller_slo_value", window="1h", objective="webhooks.successRate") == 0.6
    assert get("esl_controller_audio_warnings", window="5m", kind="underrun") == 2
    assert get("esl_controller_calls_active", status="in-progress") == 0
    assert get("esl_controller_webhook_jobs_waiting", status="pending") == 0


def test_metrics_public_by_config(settings, database):
    from api import create_app

    on = replace(settings, observe=replace(settings.observe, metrics_public=True))
    anon = create_app(on).test_client()
    r = anon.get("/metrics")
    assert r.status_code == 200
    assert any(f.name == "esl_controller_slo_target" for f in text_string_to_metric_families(r.get_data(as_text=True)))  # fmt: skip
    assert anon.get("/slo").status_code == 401  # only /metrics opens up
