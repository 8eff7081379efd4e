"""/call/:id/costs: a known call to the cent with the example rate card, stored once and never repriced."""

import shutil
import uuid
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "rate-card.example.yaml"
T0 = datetime(2025, 5, 1, 12, 0, tzinfo=timezone.utc)

# the hand-computed call of tests/unit/test_costs.py, as the pipeline records it (usage CallEvents)
USAGE = [
    {"kind": "stt", "provider": "deepgram", "model": "nova-2", "audioSeconds": 60},
    {"kind": "stt", "provider": "deepgram", "model": "nova-2", "audio_seconds": 45.0},
    {
        "kind": "llm",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "promptTokens": 1200,
        "completionTokens": 150,
        "cachedPromptTokens": 1000,
    },
    {
        "kind": "llm",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "prompt_tokens": 1800,
        "completion_tokens": 250,
    },
    {
        "kind": "llm",
        "provider": "openai",
        "model": "gpt-4o",
        "promptTokens": 10000,
        "completionTokens": 2000,
    },
    {
        "kind": "tts",
        "provider": "11labs",
        "model": "eleven_turbo_v2",
        "characters": 1500,
        "voiceId": "rachel",
    },
    {
        "kind": "tts",
        "provider": "11labs",
        "model": "eleven_turbo_v2",
        "characters": 700,
        "voice_id": "rachel",
    },
]
BREAKDOWN = {
    "transport": 0.01,
    "stt": 0.01,
    "llm": 0.05,
    "tts": 0.2,
    "vapi": 0.13,
    "total": 0.39,
    "llmPromptTokens": 13000,
    "llmCompletionTokens": 2400,
    "llmCachedPromptTokens": 1000,
    "ttsCharacters": 2200,
}


@pytest.fixture
def card_path(tmp_path):
    path = tmp_path / "rate-card.yaml"
    shutil.copy(EXAMPLE, path)
    return path


@pytest.fixture
def settings(tmp_path, db_url, card_path):
    from esl_controller.config import load_settings

    return load_settings(
        None,
        environ={},
        overrides={
            "data_dir": str(tmp_path / "data"),
            "database": {"url": db_url},
            "observe": {"rate_card_path": str(card_path)},
        },
    )


def make_call(database, usage=(), seconds=150, type_="inboundPhoneCall", status="ended", **data):
    from esl_controller.db.models import Call, CallEvent

    with database.connection_context():
        start = T0 if status == "ended" else datetime.now(timezone.utc) - timedelta(seconds=60)
        call = Call.create(
            org_id="o",
            type=type_,
            status=status,
            started_at=start,
            ended_at=start + timedelta(seconds=seconds) if status == "ended" else None,
            ended_reason="customer-ended-call" if status == "ended" else None,
            data=data,
        )
        for u in usage:
            CallEvent.create(call=call.id, kind="usage", source="pipeline", data=u)
        CallEvent.create(call=call.id, kind="usage", source="pipeline", data={"kind": "video"})
        return call.id


def stored(database, call_id):
    from esl_controller.db.models import CostItem

    with database.connection_context():
        return CostItem.select().where(CostItem.call == call_id).count()


def costs(client, call_id):
    r = client.get(f"/call/{call_id}/costs")
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def test_known_call_to_the_cent_stored_once(client, database, card_path):
    call_id = make_call(database, USAGE, trunk="carrier-a")
    body = costs(client, call_id)
    assert body["cost"] == 0.39 and body["costExact"] == "0.386140"
    assert body["costBreakdown"] == BREAKDOWN
    assert body["missing"] == [] and body["complete"] is True
    assert body["final"] is True and body["stored"] is True and body["message"] is None
    assert body["rateCard"].startswith("2026-01@")
    by_type = [(i["type"], i["cost"]) for i in body["costs"]]
    assert by_type == [
        ("transport", 0.01),
        ("transcriber", 0.007525),
        ("model", 0.045),  # gpt-4o
        ("model", 0.000615),  # gpt-4o-mini
        ("voice", 0.198),
        ("vapi", 0.125),
    ]
    assert body["costs"][0] == {
        "type": "transport",
        "provider": "vapi.sip",
        "minutes": 2.5,
        "cost": 0.01,
    }
    assert body["costs"][4]["voice"] == {
        "provider": "11labs",
        "model": "eleven_turbo_v2",
        "voiceId": "rachel",
    }
    assert stored(database, call_id) == 6
    call = client.get(f"/call/{call_id}").get_json()
    assert call["cost"] == 0.39 and call["costBreakdown"] == BREAKDOWN
    assert [i["type"] for i in call["costs"]] == [t for t, _c in by_type]

    # a new card: the stored call keeps its price and its card id; a new call gets the new card
    card_path.write_text(EXAMPLE.read_text().replace("per_minute: 0.05", "per_minute: 1.0"))
    again = costs(client, call_id)
    assert again == body
    assert stored(database, call_id) == 6
    newer = costs(client, make_call(database, seconds=60, type_="outboundPhoneCall"))
    assert newer["cost"] == 1.01  # 1 min outbound 0.013 + platform 1.0
    assert newer["rateCard"] != body["rateCard"] and newer["rateCard"].startswith("2026-01@")


def test_missing_prices_are_listed_and_stored_as_missing(client, database, card_path):
    usage = [{"kind": "tts", "provider": "azure", "model": "neural", "characters": 1000}]
    call_id = make_call(database, usage, seconds=60, type_="outboundPhoneCall")
    body = costs(client, call_id)
    assert body["complete"] is False
    assert [m["key"] for m in body["missing"]] == ["tts.per_1k_characters.azure.neural"]
    assert body["missing"][0]["usage"] == {"characters": 1000}
    voice = [i for i in body["costs"] if i["type"] == "voice"][0]
    assert voice["priceMissing"] is True and voice["cost"] == 0.0
    assert body["costExact"] == "0.063000"
    # a later card with an azure price does not reprice the stored call
    card_path.write_text(
        EXAMPLE.read_text().replace("    11labs:\n", '    azure:\n      "*": 1\n    11labs:\n')
    )
    assert costs(client, call_id) == body


def test_no_rate_card_reports_every_price_missing(settings, database, api_key, client):
    from api import create_app

    off = replace(settings, observe=replace(settings.observe, rate_card_path=""))
    c = create_app(off).test_client()
    c.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {api_key}"
    call_id = make_call(database, USAGE, trunk="carrier-a")
    body = c.get(f"/call/{call_id}/costs").get_json()
    assert body["rateCard"] is None and body["stored"] is False and body["final"] is False
    assert "observe.rate_card_path" in body["message"]
    assert body["cost"] == 0.0
    assert {m["key"] for m in body["missing"]} == {
        "transport.per_minute.inbound.carrier-a",
        "stt.per_minute.deepgram.nova-2",
        "model.per_1k_tokens.openai.gpt-4o-mini",
        "model.per_1k_tokens.openai.gpt-4o",
        "tts.per_1k_characters.11labs.eleven_turbo_v2",
        "platform.per_minute",
    }
    assert len(body["missing"]) == 6 and all(i.get("priceMissing") for i in body["costs"])
    assert stored(database, call_id) == 0
    # with the card configured the same call is priced and stored
    assert costs(client, call_id)["cost"] == 0.39
    assert stored(database, call_id) == 6


def test_invalid_card_and_running_call_are_not_stored(client, database, card_path):
    running = make_call(database, USAGE[:1], status="in-progress")
    body = costs(client, running)
    assert body["final"] is False and body["stored"] is False and "in-progress" in body["message"]
    assert body["rateCard"].startswith("2026-01@") and body["cost"] > 0
    assert stored(database, running) == 0

    card_path.write_text("platform: {per_minute: -1}\n")
    ended = make_call(database, USAGE[:1])
    body = costs(client, ended)
    assert body["rateCard"] is None and "invalid" in body["message"]
    assert "platform.per_minute" in body["message"]
    assert stored(database, ended) == 0


def test_unknown_and_bad_ids(client, database):
    r = client.get(f"/call/{uuid.uuid4()}/costs")
    assert r.status_code == 404 and r.get_json()["statusCode"] == 404
    assert client.get("/call/nope/costs").status_code == 400


def test_price_if_ended_for_the_session(database, card_path):
    from esl_controller.db.models import Call
    from esl_controller.observe.pricing import RateCardSource, price_if_ended

    call_id = make_call(database, USAGE, trunk="carrier-a")
    with database.connection_context():
        assert price_if_ended(call_id, RateCardSource("")) is None
        assert stored(database, call_id) == 0
        report = price_if_ended(call_id, RateCardSource(str(card_path)))
        assert str(report.total) == "0.386140"
        again = price_if_ended(call_id, RateCardSource(str(card_path)))
        assert again.total == report.total and again.rate_card_id == report.rate_card_id
        assert Call.get_by_id(call_id).cost == 0.39
    assert stored(database, call_id) == 6
