"""Server message shapes, field by field against api-compat.md section 11 (and section 6 for call data)."""

import json
from datetime import datetime, timezone

import pytest

from esl_controller.webhooks import messages as m

CALL = {
    "id": "call-1",
    "orgId": "org-1",
    "type": "inboundPhoneCall",
    "status": "in-progress",
    "customer": {"number": "+15551230000"},
    "createdAt": "2026-01-01T00:00:00.000Z",
    "updatedAt": "2026-01-01T00:00:00.000Z",
}
ASSISTANT = {"id": "asst-1", "name": "Riley", "serverMessages": ["status-update"]}
NUMBER = {"id": "pn-1", "provider": "byo-phone-number", "number": "+15550001111"}
ARTIFACT = {"messages": [], "transcript": ""}
TS = 1_767_225_600_123
CTX = m.MessageContext(
    call=CALL, assistant=ASSISTANT, phone_number=NUMBER, artifact=ARTIFACT, timestamp_ms=TS
)

ROWS = [
    {"role": "system", "message": "You are Riley.", "time": 1000, "secondsFromStart": 0},
    {
        "role": "bot",
        "message": "Hello, how can I help?",
        "time": 2000,
        "endTime": 3500,
        "secondsFromStart": 1.0,
        "duration": 1500,
    },
    {
        "role": "user",
        "message": "What's the weather in Paris?",
        "time": datetime(1970, 1, 1, 0, 0, 4, tzinfo=timezone.utc),
        "end_time": datetime(1970, 1, 1, 0, 0, 6),
        "seconds_from_start": 3.0,
        "duration": 2000,
    },
    {
        "role": "tool_calls",
        "message": "",
        "time": 6500,
        "secondsFromStart": 5.5,
        "data": {
            "toolCalls": [
                {
                    "id": "tc-1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                }
            ]
        },
    },
    {
        "role": "tool_call_result",
        "time": 7000,
        "secondsFromStart": 6.0,
        "data": {"toolCallId": "tc-1", "name": "weather", "result": {"temp": 21}},
    },
    {
        "role": "bot",
        "message": "It is 21 degrees.",
        "time": 7500,
        "endTime": 9000,
        "secondsFromStart": 6.5,
    },
]


def common(body, type_):
    assert list(body) == ["message"]
    msg = body["message"]
    assert msg["type"] == type_
    assert msg["timestamp"] == TS
    assert msg["call"] == CALL
    assert msg["assistant"] == ASSISTANT
    assert msg["customer"] == CALL["customer"]  # taken from the call when not given
    assert msg["phoneNumber"] == NUMBER
    assert msg["artifact"] == ARTIFACT
    return msg


def test_envelope_omits_absent_parts_and_reads_clock():
    body = m.hang(m.MessageContext(call={"id": "c"}))
    msg = body["message"]
    assert set(msg) == {"type", "timestamp", "call"}
    assert isinstance(msg["timestamp"], int) and msg["timestamp"] > 1_700_000_000_000


def test_status_update():
    msg = common(m.status_update(CTX, "ringing"), "status-update")
    assert msg["status"] == "ringing" and "endedReason" not in msg
    ended = m.status_update(CTX, "ended", ended_reason="customer-ended-call")["message"]
    assert ended["endedReason"] == "customer-ended-call"
    fwd = m.status_update(
        CTX,
        "forwarding",
        destination={"type": "number", "number": "+15559990000"},
        messages=m.call_messages(ROWS),
        transcript="AI: hi",
        summary="s",
    )["message"]
    assert fwd["destination"] == {"type": "number", "number": "+15559990000"}
    assert fwd["messages"][1]["role"] == "bot"
    assert fwd["messagesOpenAIFormatted"][1] == {
        "role": "assistant",
        "content": "Hello, how can I help?",
    }
    assert fwd["transcript"] == "AI: hi" and fwd["summary"] == "s"
    with pytest.raises(ValueError):
        m.status_update(CTX, "ended")
    with pytest.raises(ValueError):
        m.status_update(CTX, "exploded")


def test_transcript():
    msg = common(m.transcript(CTX, "user", "partial", "what's the"), "transcript")
    assert msg["role"] == "user"
    assert msg["transcriptType"] == "partial"
    assert msg["transcript"] == "what's the"
    assert msg["assistantId"] == "asst-1" and msg["assistantName"] == "Riley"
    final = m.transcript(
        CTX, "assistant", "final", "Hello", as_type=m.FINAL_TRANSCRIPT_TYPE, is_filtered=False
    )
    assert final["message"]["type"] == 'transcript[transcriptType="final"]'
    assert final["message"]["isFiltered"] is False
    with pytest.raises(ValueError):
        m.transcript(CTX, "bot", "final", "x")
    with pytest.raises(ValueError):
        m.transcript(CTX, "user", "interim", "x")


def test_call_messages_shapes():
    out = m.call_messages(ROWS)
    assert out[0] == {
        "role": "system",
        "message": "You are Riley.",
        "time": 1000,
        "secondsFromStart": 0,
    }
    assert out[1] == {
        "role": "bot",
        "message": "Hello, how can I help?",
        "time": 2000,
        "endTime": 3500,
        "secondsFromStart": 1.0,
        "duration": 1500,
    }
    # datetimes become epoch ms (naive ones are UTC); snake_case keys are read too
    assert out[2] == {
        "role": "user",
        "message": "What's the weather in Paris?",
        "time": 4000,
        "endTime": 6000,
        "secondsFromStart": 3.0,
        "duration": 2000,
    }
    assert out[3]["toolCalls"][0]["id"] == "tc-1"
    assert set(out[3]) == {"role", "toolCalls", "message", "time", "secondsFromStart"}
    assert out[4] == {
        "role": "tool_call_result",
        "toolCallId": "tc-1",
        "name": "weather",
        "result": {"temp": 21},
        "time": 7000,
        "secondsFromStart": 6.0,
    }


def test_openai_formatted_and_transcript_text():
    msgs = m.call_messages(ROWS)
    assert m.messages_openai_formatted(msgs) == [
        {"role": "system", "content": "You are Riley."},
        {"role": "assistant", "content": "Hello, how can I help?"},
        {"role": "user", "content": "What's the weather in Paris?"},
        {
            "role": "assistant",
            "tool_calls": [
                {
                    "id": "tc-1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "tc-1", "content": '{"temp":21}'},
        {"role": "assistant", "content": "It is 21 degrees."},
    ]
    assert m.transcript_text(msgs) == (
        "AI: Hello, how can I help?\nUser: What's the weather in Paris?\nAI: It is 21 degrees."
    )
    assert m.transcript_text(msgs, assistant_name="Riley", user_name="Caller").startswith(
        "Riley: Hello"
    )


def test_conversation_update():
    msgs = m.call_messages(ROWS)
    msg = common(m.conversation_update(CTX, msgs), "conversation-update")
    assert msg["messages"] == msgs
    assert msg["messagesOpenAIFormatted"] == m.messages_openai_formatted(msgs)


def test_speech_update_interrupted_hang_model_output():
    msg = common(m.speech_update(CTX, "started", "user", 2), "speech-update")
    assert (msg["status"], msg["role"], msg["turn"]) == ("started", "user", 2)
    with pytest.raises(ValueError):
        m.speech_update(CTX, "paused", "user", 0)
    with pytest.raises(ValueError):
        m.speech_update(CTX, "started", "bot", 0)
    assert common(m.user_interrupted(CTX, "turn-3"), "user-interrupted")["turnId"] == "turn-3"
    hang = common(m.hang(CTX), "hang")
    assert set(hang) == {
        "type",
        "timestamp",
        "call",
        "assistant",
        "customer",
        "phoneNumber",
        "artifact",
    }
    out = common(m.model_output(CTX, "Hel", "turn-3"), "model-output")
    assert out["output"] == "Hel" and out["turnId"] == "turn-3"


def test_phone_call_control_and_transfer_update():
    fwd = common(
        m.phone_call_control(CTX, "forward", {"type": "number", "number": "+1555"}),
        "phone-call-control",
    )
    assert fwd["request"] == "forward" and fwd["destination"]["number"] == "+1555"
    assert "destination" not in m.phone_call_control(CTX, "hang-up")["message"]
    with pytest.raises(ValueError):
        m.phone_call_control(CTX, "forward")
    with pytest.raises(ValueError):
        m.phone_call_control(CTX, "mute")
    tu = common(
        m.transfer_update(
            CTX,
            {"type": "assistant", "assistantName": "B"},
            to_assistant={"id": "b"},
            from_assistant={"id": "a"},
        ),
        "transfer-update",
    )
    assert tu["destination"]["assistantName"] == "B"
    assert tu["toAssistant"] == {"id": "b"} and tu["fromAssistant"] == {"id": "a"}


def test_end_of_call_report():
    msgs = m.call_messages(ROWS)
    artifact = {
        "recordingUrl": "https://rec.test/mono.wav",
        "stereoRecordingUrl": "https://rec.test/stereo.wav",
        "recording": {
            "mono": {"combinedUrl": "https://rec.test/mono.wav"},
            "stereoUrl": "https://rec.test/stereo.wav",
        },
        "transcript": m.transcript_text(msgs),
        "messages": msgs,
        "structuredOutputs": {"so-1": {"name": "intent", "result": "weather"}},
        "pcapUrl": None,
        "logUrl": "https://logs.test/call-1",
    }
    costs = {
        "cost": 0.39,
        "costBreakdown": {"total": 0.39},
        "costs": [{"type": "vapi", "cost": 0.125}],
    }
    body = m.end_of_call_report(
        CTX,
        ended_reason="customer-ended-call",
        artifact=artifact,
        analysis={"summary": "Asked for weather.", "structuredData": {"city": "Paris"}},
        cost_fields=costs,
        started_at="2026-01-01T00:00:00.000Z",
        ended_at="2026-01-01T00:02:30.500Z",
    )
    msg = body["message"]
    assert msg["type"] == "end-of-call-report"
    assert msg["endedReason"] == "customer-ended-call"
    art = msg["artifact"]
    for key in (
        "recordingUrl",
        "stereoRecordingUrl",
        "recording",
        "transcript",
        "messages",
        "structuredOutputs",
        "logUrl",
    ):
        assert art[key] == artifact[key]
    assert art["messagesOpenAIFormatted"] == m.messages_openai_formatted(msgs)
    assert msg["analysis"] == {
        "summary": "Asked for weather.",
        "structuredData": {"city": "Paris"},
        "successEvaluation": None,
    }
    assert (msg["cost"], msg["costBreakdown"], msg["costs"]) == (
        0.39,
        {"total": 0.39},
        [{"type": "vapi", "cost": 0.125}],
    )
    assert (
        msg["startedAt"] == "2026-01-01T00:00:00.000Z"
        and msg["endedAt"] == "2026-01-01T00:02:30.500Z"
    )
    assert (msg["durationMs"], msg["durationSeconds"], msg["durationMinutes"]) == (
        150500,
        150.5,
        2.5083,
    )
    # top-level copies, as in Vapi's payloads
    assert msg["summary"] == "Asked for weather."
    assert msg["transcript"] == artifact["transcript"]
    assert msg["recordingUrl"] == artifact["recordingUrl"]
    assert msg["stereoRecordingUrl"] == artifact["stereoRecordingUrl"]
    assert msg["messages"] == msgs
    with pytest.raises(ValueError):
        m.end_of_call_report(CTX, ended_reason="", artifact={})


def test_assistant_request():
    ctx = m.MessageContext(call=CALL, phone_number=NUMBER, timestamp_ms=TS)
    msg = m.assistant_request(ctx)["message"]
    assert msg == {
        "type": "assistant-request",
        "timestamp": TS,
        "call": CALL,
        "customer": CALL["customer"],
        "phoneNumber": NUMBER,
    }


def test_tool_calls_superset_items():
    weather = {
        "type": "function",
        "function": {"name": "weather", "parameters": {"type": "object"}},
        "server": {"url": "https://t"},
    }
    body = m.tool_calls(
        CTX,
        [
            {"id": "tc-1", "name": "weather", "arguments": {"city": "Paris"}},
            {"id": "tc-2", "name": "lookup", "arguments": '{"q": "x"}'},
            {"id": "tc-3", "name": "lookup", "arguments": "not json"},
        ],
        tools={"weather": weather},
    )
    msg = common(body, "tool-calls")
    first = msg["toolCallList"][0]
    assert first == {
        "id": "tc-1",
        "type": "function",
        "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
        "name": "weather",
        "arguments": {"city": "Paris"},
        "parameters": {"city": "Paris"},
    }
    assert isinstance(first["function"]["arguments"], str)
    assert json.loads(first["function"]["arguments"]) == first["arguments"]
    second = msg["toolCallList"][1]
    assert second["function"]["arguments"] == '{"q": "x"}' and second["arguments"] == {"q": "x"}
    third = msg["toolCallList"][2]
    assert third["function"]["arguments"] == "not json" and third["arguments"] == {}
    with_tools = msg["toolWithToolCallList"]
    assert with_tools[0]["server"] == {"url": "https://t"} and with_tools[0]["toolCall"] == first
    assert with_tools[1] == {"type": "function", "function": {"name": "lookup"}, "toolCall": second}
    assert "toolCall" not in weather  # the definition passed in is not modified


@pytest.mark.parametrize(
    ("type_", "server_messages", "transcript_type", "expected"),
    [
        ("status-update", ["status-update"], None, "status-update"),
        ("speech-update", ["status-update"], None, None),
        ("speech-update", None, None, "speech-update"),  # Vapi's default list
        ("transcript", None, "final", None),  # not in the default list
        ("model-output", None, None, None),
        ("transcript", ["transcript"], "partial", "transcript"),
        (
            "transcript",
            ['transcript[transcriptType="final"]'],
            "final",
            'transcript[transcriptType="final"]',
        ),
        ("transcript", ['transcript[transcriptType="final"]'], "partial", None),
        ("tool-calls", [], None, "tool-calls"),  # synchronous: always
        ("assistant-request", [], None, "assistant-request"),
        ("end-of-call-report", [], None, None),
    ],
)
def test_wanted(type_, server_messages, transcript_type, expected):
    assert m.wanted_as(type_, server_messages, transcript_type=transcript_type) == expected
    assert m.wanted(type_, server_messages, transcript_type=transcript_type) is (
        expected is not None
    )
