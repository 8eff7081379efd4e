"""/analytics/summary: figures equal to hand-computed ones over seeded calls (SQLite and PostgreSQL)."""

from dataclasses import replace
from datetime import datetime, timedelta, timezone

import pytest

A1 = "11111111-1111-4111-8111-111111111111"
A2 = "22222222-2222-4222-8222-222222222222"
BASE = datetime(2025, 3, 3, tzinfo=timezone.utc)
RANGE = "start=2025-03-03T00:00:00Z&end=2025-03-03T03:00:00Z"


@pytest.fixture
def settings(tmp_path, db_url):
    from esl_controller.config import load_settings

    return load_settings(
        None,
        environ={},
        overrides={
            "data_dir": str(tmp_path / "data"),
            "database": {"url": db_url},
            "observe": {"analytics_enabled": True},
        },
    )


def seed(database):
    """Six calls in [BASE, BASE+3h), one a day before; cost items; turn timings."""
    from esl_controller.db.models import Call, CallEvent, CostItem

    def call(minutes, type_, status, reason, assistant, duration, cost, started=True):
        created = BASE + timedelta(minutes=minutes)
        start = created + timedelta(seconds=5) if started else None
        end = None
        if status == "ended":
            end = (start or created) + timedelta(seconds=duration or 0)
        return Call.create(
            org_id="o",
            type=type_,
            status=status,
            ended_reason=reason,
            assistant_id=assistant,
            created_at=created,
            updated_at=created,
            started_at=start,
            ended_at=end,
            cost=cost,
        )

    def turn(c, **data):
        CallEvent.create(
            call=c.id, at=c.created_at, kind="turn-timing", source="pipeline", data=data
        )

    with database.connection_context():
        c1 = call(10, "inboundPhoneCall", "ended", "customer-ended-call", A1, 60, 0.10)
        c2 = call(20, "inboundPhoneCall", "ended", "assistant-ended-call", A1, 120, 0.25)
        c3 = call(
            70, "outboundPhoneCall", "ended", "pipeline-error-openai-llm-failed", A2, 30, 0.05
        )
        c4 = call(80, "webCall", "ended", "customer-ended-call", A2, 300, None)
        call(
            130,
            "outboundPhoneCall",
            "ended",
            "customer-did-not-answer",
            A1,
            None,
            None,
            started=False,
        )
        call(140, "inboundPhoneCall", "in-progress", None, None, None, None)
        old = call(-1440, "inboundPhoneCall", "ended", "customer-ended-call", A1, 1000, 9.0)
        for c, t, amount in (
            (c1, "transport", "0.010000"),
            (c1, "vapi", "0.050000"),
            (c1, "voice", None),
            (c2, "transport", "0.020000"),
            (c2, "model", "0.001234"),
            (old, "transport", "5.000000"),
        ):
            CostItem.create(org_id="o", call=c.id, type=t, amount=amount)
        turn(c1, turn=1, endOfSpeech=1.0, firstAudioOut=1.5)
        turn(c1, turn=2, endOfSpeech=2.0, firstAudioOut=2.75, sttFinal=2.2)
        turn(c3, turn=1, endOfSpeech=0.5, firstAudioOut=1.5)
        turn(c3, turn=2, endOfSpeech=3, firstAudioOut=3.25)
        turn(c4, turn=1, end_of_speech=4.0, first_audio_out=6.0)
        turn(c4, turn=2, endOfSpeech="x", firstAudioOut=1)  # not numbers: left out
        turn(c4, turn=3, endOfSpeech=1.0)  # no first audio: left out
        turn(old, turn=1, endOfSpeech=0, firstAudioOut=10.0)  # outside the range


def get(client, query):
    r = client.get("/analytics/summary?" + query)
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def test_summary_matches_hand_figures(client, database):
    seed(database)
    s = get(client, RANGE + "&step=hour")
    assert s["timeRange"] == {
        "start": "2025-03-03T00:00:00.000Z",
        "end": "2025-03-03T03:00:00.000Z",
        "step": "hour",
    }
    calls = s["calls"]
    assert calls["total"] == 6
    assert calls["byStatus"] == {"ended": 5, "in-progress": 1}
    assert calls["byEndedReason"] == {
        "customer-ended-call": 2,
        "assistant-ended-call": 1,
        "pipeline-error-openai-llm-failed": 1,
        "customer-did-not-answer": 1,
    }
    assert calls["byType"] == {"inboundPhoneCall": 3, "outboundPhoneCall": 2, "webCall": 1}
    assert calls["byDirection"] == {"inbound": 3, "outbound": 2, "web": 1}
    assert calls["byAssistant"] == [
        {"assistantId": A1, "calls": 3},
        {"assistantId": A2, "calls": 2},
        {"assistantId": None, "calls": 1},
    ]
    # durations 30, 60, 120, 300 (the unanswered and the running call have none)
    assert s["durationSeconds"] == {
        "count": 4,
        "total": 510.0,
        "avg": 127.5,
        "p50": 90.0,  # between 60 and 120
        "p95": 273.0,  # 120 + 0.85 * (300 - 120)
        "max": 300.0,
    }
    assert s["cost"] == {
        "total": 0.4,
        "pricedCalls": 3,
        "avgPerPricedCall": 0.133333,
        "byType": {"transport": 0.03, "vapi": 0.05, "model": 0.001234},
        "unpricedItems": 1,
    }
    # latencies 0.25, 0.5, 0.75, 1.0, 2.0
    assert s["turnLatencySeconds"] == {
        "count": 5,
        "avg": 0.9,
        "p50": 0.75,
        "p95": 1.8,
        "p99": 1.96,
    }
    assert s["buckets"] == [
        {
            "start": "2025-03-03T00:00:00.000Z",
            "calls": 2,
            "endedCalls": 2,
            "durationSecondsAvg": 90.0,
            "costTotal": 0.35,
        },
        {
            "start": "2025-03-03T01:00:00.000Z",
            "calls": 2,
            "endedCalls": 2,
            "durationSecondsAvg": 165.0,
            "costTotal": 0.05,
        },
        {
            "start": "2025-03-03T02:00:00.000Z",
            "calls": 2,
            "endedCalls": 1,
            "durationSecondsAvg": None,
            "costTotal": 0.0,
        },
    ]


def test_assistant_filter_day_step_and_defaults(client, database):
    seed(database)
    s = get(client, RANGE + f"&assistantId={A2}")
    assert s["calls"]["total"] == 2 and s["buckets"] == []
    assert s["durationSeconds"]["avg"] == 165.0
    assert s["durationSeconds"]["p50"] == 165.0
    assert s["durationSeconds"]["p95"] == 286.5  # 30 + 0.95 * 270
    assert s["turnLatencySeconds"]["count"] == 3
    day = get(client, "start=2025-03-02T12:00:00Z&end=2025-03-04T00:00:00Z&step=day")
    assert [(b["start"], b["calls"]) for b in day["buckets"]] == [
        ("2025-03-02T00:00:00.000Z", 0),  # aligned to midnight; the old call is before 12:00
        ("2025-03-03T00:00:00.000Z", 6),
    ]
    # no range: the last 7 days, which hold none of the seeded calls
    recent = get(client, "")
    assert recent["calls"]["total"] == 0 and recent["durationSeconds"]["avg"] is None
    assert recent["turnLatencySeconds"]["p95"] is None and recent["cost"]["total"] == 0.0


@pytest.mark.parametrize(
    "query",
    [
        "start=yesterday",
        "end=2025-13-01T00:00:00Z",
        "step=week",
        "start=2025-03-03T00:00:00Z&end=2025-03-03T00:00:00Z",
        "start=2025-03-04T00:00:00Z&end=2025-03-03T00:00:00Z",
        "assistantId=nope",
        "start=2000-01-01T00:00:00Z&end=2025-01-01T00:00:00Z&step=hour",
    ],
)
def test_bad_parameters_are_400(client, database, query):
    r = client.get("/analytics/summary?" + query)
    assert r.status_code == 400, (query, r.get_json())
    assert r.get_json()["statusCode"] == 400


def test_disabled_is_404_with_a_clear_message(settings, database, api_key):
    from api import create_app

    off = replace(settings, observe=replace(settings.observe, analytics_enabled=False))
    c = create_app(off).test_client()
    r = c.get("/analytics/summary", headers={"Authorization": f"Bearer {api_key}"})
    assert r.status_code == 404
    assert "observe.analytics_enabled" in r.get_json()["message"]
    assert c.get("/analytics/summary").status_code == 401
