"""Deepgram's pure parts: the listen URL, message parsing, utterance assembly."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import pytest

from esl_controller.pipeline.providers.stt.deepgram import (
    DeepgramMessage,
    UtteranceAssembler,
    listen_params,
    listen_url,
    parse_message,
)
from esl_controller.pipeline.providers.stt.openai_compat import iso_language


def test_listen_url_carries_the_stream_parameters():
    config = {
        "model": "nova-3",
        "language": "en-US",
        "endpointing": 250,
        "smartFormat": True,
        "keyterm": ["Acme", "booking"],
    }
    url = listen_url("wss://api.deepgram.com/", listen_params(config, 8000))
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.path) == ("wss", "api.deepgram.com", "/v1/listen")
    q = parse_qs(parts.query)
    assert q["encoding"] == ["linear16"] and q["sample_rate"] == ["8000"] and q["channels"] == ["1"]
    assert q["interim_results"] == ["true"] and q["smart_format"] == ["true"]
    assert q["endpointing"] == ["250"] and q["model"] == ["nova-3"] and q["language"] == ["en-US"]
    assert q["keyterm"] == ["Acme", "booking"] and "utterance_end_ms" not in q


def results(text, is_final=False, speech_final=False, **extra):
    return json.dumps(
        {
            "type": "Results",
            "is_final": is_final,
            "speech_final": speech_final,
            "channel": {"alternatives": [{"transcript": text, "confidence": 0.9}]},
            "metadata": {"request_id": "r"},
            **extra,
        }
    )


def test_parse_message_kinds():
    m = parse_message(results(" hello ", True, True, from_finalize=True))
    assert m == DeepgramMessage("Results", "hello", 0.9, True, True, True, "r")
    assert parse_message('{"type": "Metadata", "request_id": "abc"}').request_id == "abc"
    assert parse_message('{"type": "Error", "description": "bad audio"}').error == "bad audio"
    assert parse_message('{"type": "SpeechStarted"}').type == "SpeechStarted"
    for bad in (
        "{",
        "[]",
        '{"no": "type"}',
        '{"type": "Results", "channel": {"alternatives": [{"transcript": 5}]}}',
    ):
        with pytest.raises(ValueError):
            parse_message(bad)


def test_assembler_joins_final_segments_into_one_utterance():
    a = UtteranceAssembler()
    out = []
    for raw in (
        results("I would"),
        results("I would like a"),
        results("I would like a table", is_final=True),
        results("for two"),
        results("for two tonight", is_final=True, speech_final=True),
        results("thanks"),
    ):
        out += a.feed(parse_message(raw))
    assert [(t.text, t.is_final) for t in out] == [
        ("I would", False),
        ("I would like a", False),
        ("I would like a table", False),
        ("I would like a table for two", False),
        ("I would like a table for two tonight", True),
        ("thanks", False),
    ]
    assert (
        a.feed(parse_message('{"type": "UtteranceEnd"}')) == []
    )  # interim only: nothing committed
    assert a.feed(parse_message(results("", is_final=True, from_finalize=True))) == []


def test_iso_language():
    assert [iso_language(x) for x in ("en-US", "en", "pt_BR", "multi", "")] == [
        "en",
        "en",
        "pt",
        "",
        "",
    ]
