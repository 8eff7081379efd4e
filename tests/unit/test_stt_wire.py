"""The worker wire format, the yes/no classifier and the model pin (pure)."""

from __future__ import annotations

import hashlib
import json
import struct

import pytest

from esl_controller.pipeline.providers.stt._worker_main import (
    HEADER,
    MAX_PAYLOAD,
    MessageDecoder,
    ProtocolError,
    SelfTestEngine,
    encode_message,
    handle,
)
from esl_controller.pipeline.providers.stt.sphinx import classify_yes_no
from esl_controller.pipeline.providers.stt.whisper import (
    MODEL_SHA256,
    ModelIntegrityError,
    verify_model,
)

MESSAGES = [
    (
        {"op": "transcribe", "id": 1, "rate": 16000, "options": {"language": "en"}},
        bytes(range(256)) * 3,
    ),
    ({"op": "stream_push", "sid": "s2"}, b"\x01\x02"),
    ({"op": "result", "id": 3, "text": "héllo"}, b""),
]


def test_round_trip_split_at_every_offset():
    wire = b"".join(encode_message(h, p) for h, p in MESSAGES)
    for cut in range(len(wire) + 1):
        decoder = MessageDecoder()
        got = decoder.feed(wire[:cut]) + decoder.feed(wire[cut:])
        assert got == MESSAGES, cut


def test_byte_at_a_time():
    wire = b"".join(encode_message(h, p) for h, p in MESSAGES)
    decoder = MessageDecoder()
    got = []
    for i in range(len(wire)):
        got += decoder.feed(wire[i : i + 1])
    assert got == MESSAGES


def test_oversized_frames_are_refused():
    with pytest.raises(ProtocolError):
        encode_message({"op": "x"}, bytes(MAX_PAYLOAD + 1))
    with pytest.raises(ProtocolError):
        MessageDecoder().feed(HEADER.pack(10, MAX_PAYLOAD + 1))


@pytest.mark.parametrize("head", [b"not json", b"[1, 2]"])
def test_bad_headers_are_refused(head):
    with pytest.raises(ProtocolError):
        MessageDecoder().feed(struct.pack("!II", len(head), 0) + head)


def test_handle_builds_replies():
    engine = SelfTestEngine({})
    ((reply, body),) = handle(
        engine, {"op": "transcribe", "id": 7, "rate": 8000, "options": {"text": "hi"}}, b""
    )
    assert reply["op"] == "result" and reply["id"] == 7 and reply["text"] == "hi" and body == b""
    assert (
        list(handle(engine, {"op": "stream_open", "id": 8, "sid": "a", "rate": 16000}, b""))[0][0][
            "id"
        ]
        == 8
    )
    assert (
        list(handle(engine, {"op": "stream_push", "sid": "a"}, b"1234"))[0][0]["text"] == "4 bytes"
    )
    ((final, _),) = handle(engine, {"op": "stream_finish", "id": 9, "sid": "a"}, b"")
    assert final["text"] == "4 bytes" and final["sid"] == "a"
    assert list(handle(engine, {"op": "stream_close", "sid": "a"}, b"")) == []
    with pytest.raises(ValueError):
        list(handle(engine, {"op": "nope"}, b""))
    json.dumps(reply)  # replies are JSON-able


@pytest.mark.parametrize(
    "text,expected",
    [
        ("yes please", "yes"),
        ("yeah", "yes"),
        ("that is correct", "yes"),
        ("no thank you", "no"),
        ("nope", "no"),
        ("NOT really", "no"),
        ("that is", None),
        ("", None),
    ],
)
def test_classify_yes_no(text, expected):
    assert classify_yes_no(text) == expected


def test_model_hash_check(tmp_path):
    good = tmp_path / "model.bin"
    good.write_bytes(b"weights")
    verify_model(good, hashlib.sha256(b"weights").hexdigest())
    with pytest.raises(ModelIntegrityError):
        verify_model(good, MODEL_SHA256)
