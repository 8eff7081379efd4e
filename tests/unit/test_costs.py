"""Rate card parsing and call pricing, checked against figures computed by hand."""

from decimal import Decimal
from pathlib import Path

import pytest

from esl_controller.observe.costs import (
    CallFacts,
    RateCardError,
    UsageItem,
    load_rate_card,
    parse_rate_card,
    price_call,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "rate-card.example.yaml"


@pytest.fixture
def card():
    return load_rate_card(EXAMPLE.read_text())


def known_call_usage():
    return [
        {"kind": "stt", "provider": "deepgram", "model": "nova-2", "audioSeconds": 60},
        UsageItem(kind="stt", provider="deepgram", model="nova-2", audio_seconds=45.0),
        UsageItem(
            "llm",
            "openai",
            "gpt-4o-mini",
            prompt_tokens=1200,
            completion_tokens=150,
            cached_prompt_tokens=1000,
        ),
        {
            "kind": "llm",
            "provider": "openai",
            "model": "gpt-4o-mini",
            "prompt_tokens": 1800,
            "completion_tokens": 250,
        },
        UsageItem("llm", "openai", "gpt-4o", prompt_tokens=10000, completion_tokens=2000),
        UsageItem("tts", "11labs", "eleven_turbo_v2", characters=1500, voice_id="rachel"),
        UsageItem("tts", "11labs", "eleven_turbo_v2", characters=700, voice_id="rachel"),
    ]


def test_example_card_parses(card):
    assert card.currency == "USD"
    assert card.label == "2026-01"
    assert card.transport[("inbound", "carrier-a")] == Decimal("0.004")
    assert card.model[("openai", "gpt-4o")].cached_prompt == Decimal("0.0025")  # defaults to prompt
    assert card.platform_per_minute == Decimal("0.05")
    assert card.card_id.startswith("2026-01@") and len(card.card_id) == len("2026-01@") + 12


def test_known_call_to_the_cent(card):
    # 150 s inbound on carrier-a:
    #   transport 2.5 min * 0.004            = 0.010000
    #   stt 105 s = 1.75 min * 0.0043        = 0.007525
    #   gpt-4o-mini: (3000-1000)*0.00015/1k + 1000*0.000075/1k + 400*0.0006/1k = 0.000615
    #   gpt-4o: 10000*0.0025/1k + 2000*0.01/1k = 0.045000
    #   tts 2200 chars * 0.09/1k             = 0.198000
    #   platform 2.5 min * 0.05              = 0.125000
    #   total                                = 0.386140 -> 0.39
    facts = CallFacts(duration_seconds=150, direction="inbound", trunk="carrier-a")
    report = price_call(known_call_usage(), facts, card)
    assert report.missing == ()
    amounts = {(line.type, line.model): line.amount for line in report.lines}
    assert amounts == {
        ("transport", None): Decimal("0.010000"),
        ("transcriber", "nova-2"): Decimal("0.007525"),
        ("model", "gpt-4o-mini"): Decimal("0.000615"),
        ("model", "gpt-4o"): Decimal("0.045000"),
        ("voice", "eleven_turbo_v2"): Decimal("0.198000"),
        ("vapi", None): Decimal("0.125000"),
    }
    assert report.total == Decimal("0.386140")
    fields = report.call_fields()
    assert fields["cost"] == 0.39
    assert fields["costBreakdown"] == {
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
    assert report.call_fields(places=6)["cost"] == 0.38614


def test_costs_items_have_vapi_shapes(card):
    facts = CallFacts(duration_seconds=150, direction="inbound", trunk="carrier-a")
    costs = price_call(known_call_usage(), facts, card).call_fields()["costs"]
    by_type = {}
    for item in costs:
        by_type.setdefault(item["type"], []).append(item)
    assert by_type["transport"] == [
        {"type": "transport", "provider": "vapi.sip", "minutes": 2.5, "cost": 0.01}
    ]
    assert by_type["transcriber"] == [
        {
            "type": "transcriber",
            "transcriber": {"provider": "deepgram", "model": "nova-2"},
            "minutes": 1.75,
            "cost": 0.007525,
        }
    ]
    mini = next(i for i in by_type["model"] if i["model"]["model"] == "gpt-4o-mini")
    assert mini == {
        "type": "model",
        "model": {"provider": "openai", "model": "gpt-4o-mini"},
        "promptTokens": 3000,
        "completionTokens": 400,
        "cachedPromptTokens": 1000,
        "cost": 0.000615,
    }
    assert by_type["voice"] == [
        {
            "type": "voice",
            "voice": {"provider": "11labs", "model": "eleven_turbo_v2", "voiceId": "rachel"},
            "characters": 2200,
            "cost": 0.198,
        }
    ]
    assert by_type["vapi"] == [{"type": "vapi", "subType": "normal", "minutes": 2.5, "cost": 0.125}]


def test_missing_price_is_reported_not_guessed(card):
    usage = [UsageItem("tts", "azure", "neural", characters=1000)]
    facts = CallFacts(duration_seconds=60, direction="outbound")
    report = price_call(usage, facts, card)
    assert [m.key for m in report.missing] == ["tts.per_1k_characters.azure.neural"]
    voice = [line for line in report.lines if line.type == "voice"][0]
    assert voice.amount == 0 and voice.priced is False
    body = report.to_dict()
    assert body["complete"] is False
    assert body["missing"][0]["usage"] == {"characters": 1000}
    assert [i for i in body["costs"] if i["type"] == "voice"][0]["priceMissing"] is True
    # outbound wildcard transport 0.013 + platform 0.05 for one minute
    assert report.total == Decimal("0.063000")


def test_wildcards_and_missing_sections():
    card = parse_rate_card(
        {
            "transport": {"per_minute": {"outbound": {"*": "0.01"}}},
            "stt": {"per_minute": {"*": {"*": 0.006}}},
        }
    )
    report = price_call(
        [UsageItem("stt", "whatever", "m", audio_seconds=30)],
        CallFacts(duration_seconds=30, direction="inbound"),
        card,
    )
    keys = [m.key for m in report.missing]
    assert keys == ["transport.per_minute.inbound.*", "platform.per_minute"]
    assert report.total == Decimal("0.003000")


def test_card_id_changes_with_prices_not_with_formatting():
    a = parse_rate_card({"platform": {"per_minute": 0.05}})
    b = parse_rate_card({"platform": {"per_minute": "0.050"}})
    c = parse_rate_card({"platform": {"per_minute": 0.06}})
    assert a.digest == b.digest
    assert a.digest != c.digest


def test_stored_report_is_not_repriced_by_a_new_card(card):
    facts = CallFacts(duration_seconds=60, direction="outbound")
    before = price_call([], facts, card)
    newer = parse_rate_card(
        {"transport": {"per_minute": {"outbound": {"*": 1}}}, "platform": {"per_minute": 1}}
    )
    after = price_call([], facts, newer)
    assert before.rate_card_id != after.rate_card_id
    assert before.total == Decimal("0.063000") and after.total == Decimal("2.000000")


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"platform": {"per_minute": -1}}, "platform.per_minute"),
        ({"platform": {"per_minute": "abc"}}, "platform.per_minute"),
        ({"platform": {"per_hour": 1}}, "platform.per_hour"),
        ({"stt": {"per_minute": {"deepgram": {"nova-2": True}}}}, "stt.per_minute.deepgram.nova-2"),
        (
            {"model": {"per_1k_tokens": {"openai": {"gpt-4o": {"prompt": 1}}}}},
            "model.per_1k_tokens.openai.gpt-4o.completion",
        ),
        (
            {
                "model": {
                    "per_1k_tokens": {"openai": {"gpt-4o": {"prompt": 1, "completion": 1, "x": 1}}}
                }
            },
            "model.per_1k_tokens.openai.gpt-4o.x",
        ),
        ({"transport": {"per_minute": {"sideways": {"*": 1}}}}, "transport.per_minute.sideways"),
        ({"currency": "EUR"}, "currency"),
        ({"tts": []}, "tts"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_validation_errors_name_the_key(data, key):
    with pytest.raises(RateCardError) as info:
        parse_rate_card(data)
    assert str(info.value).startswith(key + ":")


def test_bad_yaml_and_bad_inputs(card):
    with pytest.raises(RateCardError):
        load_rate_card("platform: [unclosed")
    with pytest.raises(ValueError):
        price_call([], CallFacts(duration_seconds=1, direction="sideways"), card)
    with pytest.raises(ValueError):
        price_call(
            [{"kind": "video", "provider": "x"}],
            CallFacts(duration_seconds=1, direction="web"),
            card,
        )
