"""Pure parts of the hosted chat models: SSE parsing, chunk decoding, request bodies."""

from __future__ import annotations

import json

import pytest

from esl_controller.pipeline.providers.base import ChatRequest, ModelDone, TextDelta, ToolCallDelta
from esl_controller.pipeline.providers.llm.custom_llm import SSEDecoder, SSEEvent, custom_body
from esl_controller.pipeline.providers.llm.openai_compat import ChunkDecoder, chat_body

STREAM = (
    b": keep-alive comment\r\n\r\n"
    b'data: {"choices":[{"index":0,"delta":{"content":"Hi"}}]}\r\n\r\n'
    b"event: message\nid: 7\ndata: line one\ndata: line two\n\n"
    b"data:no-space\r\r"
    b"data: [DONE]\n\n"
)
EXPECTED = [
    SSEEvent('{"choices":[{"index":0,"delta":{"content":"Hi"}}]}'),
    SSEEvent("line one\nline two", "message", "7"),
    SSEEvent("no-space", "", "7"),
    SSEEvent("[DONE]", "", "7"),
]


def test_sse_whole_stream():
    assert SSEDecoder().feed(STREAM) == EXPECTED


@pytest.mark.parametrize("cut", range(1, len(STREAM)))
def test_sse_stream_cut_at_every_offset(cut):
    d = SSEDecoder()
    events = d.feed(STREAM[:cut]) + d.feed(STREAM[cut:])
    assert events == EXPECTED


def test_sse_byte_by_byte_and_close_flushes_unterminated_event():
    d = SSEDecoder()
    events = []
    for i in range(len(STREAM)):
        events += d.feed(STREAM[i : i + 1])
    assert events == EXPECTED
    d.feed(b"data: tail")
    assert d.close() == [SSEEvent("tail", "", "7")]


def test_sse_overlong_line_is_rejected():
    with pytest.raises(ValueError):
        SSEDecoder(max_line=100).feed(b"data: " + b"x" * 200)


def _chunk(delta=None, finish=None, usage=None):
    c = {
        "choices": [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    }
    if usage:
        c["usage"] = usage
    return c


def test_chunk_decoder_assembles_tool_calls_split_across_chunks():
    d = ChunkDecoder("openai", "gpt-4o-mini")
    out = []
    out += d.feed(_chunk({"role": "assistant", "content": "Let me check."}))
    out += d.feed(
        _chunk(
            {
                "tool_calls": [
                    {"index": 0, "id": "call_a", "function": {"name": "lookup", "arguments": ""}}
                ]
            }
        )
    )
    out += d.feed(
        _chunk({"tool_calls": [{"index": 1, "id": "call_b", "function": {"name": "endCall"}}]})
    )
    out += d.feed(_chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"na'}}]}))
    out += d.feed(_chunk({"tool_calls": [{"index": 0, "function": {"arguments": 'me": "Ada"}'}}]}))
    out += d.feed(_chunk({}, "tool_calls"))
    out += d.feed(_chunk(usage={"prompt_tokens": 12, "completion_tokens": 9}))
    assert out == [TextDelta("Let me check.")]
    tail = d.finish(request_id="r1", latency_ms=5.0)
    assert tail[0] == ToolCallDelta(0, "call_a", "lookup", '{"name": "Ada"}')
    assert tail[1] == ToolCallDelta(1, "call_b", "endCall", "{}")
    done = tail[2]
    assert isinstance(done, ModelDone) and done.finish_reason == "tool_calls"
    assert (done.usage.prompt_tokens, done.usage.completion_tokens, done.usage.request_id) == (
        12,
        9,
        "r1",
    )


def test_chunk_decoder_rejects_error_events_and_nameless_calls():
    with pytest.raises(ValueError):
        ChunkDecoder("x", "m").feed({"error": {"message": "overloaded"}})
    d = ChunkDecoder("x", "m")
    d.feed(_chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}))
    with pytest.raises(ValueError):
        d.finish()


def test_chunk_decoder_reads_a_whole_completion():
    d = ChunkDecoder("custom-llm", "m")
    msg = {
        "role": "assistant",
        "content": "Hello.",
        "tool_calls": [
            {
                "id": "c1",
                "type": "function",
                "function": {"name": "dtmf", "arguments": '{"digits": "1"}'},
            }
        ],
    }
    out = d.feed({"choices": [{"index": 0, "message": msg, "finish_reason": "tool_calls"}]})
    assert out == [TextDelta("Hello.")]
    assert d.finish()[0] == ToolCallDelta(0, "c1", "dtmf", '{"digits": "1"}')


REQ = ChatRequest(
    messages=[{"role": "user", "content": "hi"}],
    max_tokens=40,
    metadata={
        "call": {"id": "call-1"},
        "customer": {"number": "+15550001111"},
        "metadata": {"tenant": "acme", "model": "nope"},
    },
)


def test_chat_body_request_values_win_over_config():
    body = chat_body(REQ, "m", temperature=0.5, max_tokens=250)
    assert body["temperature"] == 0.5 and body["max_tokens"] == 40
    assert "tools" not in body and "response_format" not in body


def test_custom_body_metadata_modes():
    off = custom_body(REQ, "m", mode="off")
    assert set(off) == {"model", "messages", "stream", "stream_options", "max_tokens"}
    var = custom_body(REQ, "m", mode="variable")
    assert var["metadata"] == {"tenant": "acme", "model": "nope"} and var["call"] == {
        "id": "call-1"
    }
    assert var["customer"] == {"number": "+15550001111"} and "phoneNumber" not in var
    de = custom_body(REQ, "m", mode="destructured")
    assert de["tenant"] == "acme" and de["model"] == "m" and "metadata" not in de
    assert de["call"] == {"id": "call-1"}
    json.dumps(de)
