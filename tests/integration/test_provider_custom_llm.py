"""custom-llm against the local fake OpenAI-compatible server: Vapi's request shape, SSE parsing, failures."""

from __future__ import annotations

import json

import pytest

from esl_controller.pipeline.providers.base import (
    ChatRequest,
    ModelDone,
    ProviderError,
    TextDelta,
    ToolCallDelta,
)
from esl_controller.pipeline.providers.llm.custom_llm import CustomLLM
from tests.fakes._http import FakeHTTPServer
from tests.fakes.openai_server import FakeOpenAI, Knobs

REQ = ChatRequest(
    messages=[{"role": "user", "content": "I want to book a table"}],
    metadata={"call": {"id": "call-9", "type": "inboundPhoneCall"}, "metadata": {"tenant": "acme"}},
)


def llm(url: str, **kw) -> CustomLLM:
    config = {
        "provider": "custom-llm",
        "model": "my-bot",
        "url": url,
        "headers": {"X-Tenant": "acme"},
        "maxRetries": 0,
        **kw,
    }
    return CustomLLM.from_config(config, {"provider": "custom-llm", "apiKey": "cl-secret"})


def test_vapi_request_shape_and_stream():
    with FakeOpenAI(reply="Sure, for how many people?") as fake:
        chunks = list(llm(fake.server.url + "/api").stream(REQ, timeout=5))
        req = fake.requests[0]
    assert req.path == "/api/chat/completions"
    assert req.headers["authorization"] == "Bearer cl-secret" and req.headers["x-tenant"] == "acme"
    body = req.json()
    assert body["stream"] is True and body["model"] == "my-bot"
    assert body["call"] == {"id": "call-9", "type": "inboundPhoneCall"}
    assert body["metadata"] == {"tenant": "acme"}
    assert (
        "".join(c.text for c in chunks if isinstance(c, TextDelta)) == "Sure, for how many people?"
    )
    assert chunks[-1].usage.request_id == "req_1"


def test_destructured_metadata_and_tool_calls():
    calls = [{"name": "book", "arguments": {"people": 2, "time": "19:30"}}]
    with FakeOpenAI(reply="", tool_calls=calls) as fake:
        chunks = list(llm(fake.base_url, metadataSendMode="destructured").stream(REQ, timeout=5))
        body = fake.requests[0].json()
    assert body["tenant"] == "acme" and "metadata" not in body
    (call,) = [c for c in chunks if isinstance(c, ToolCallDelta)]
    assert call.name == "book" and json.loads(call.arguments) == {"people": 2, "time": "19:30"}


def test_non_streaming_json_answer_is_accepted():
    def handler(req, reply):
        msg = {"role": "assistant", "content": "We open at nine."}
        reply.send_json(200, {"choices": [{"index": 0, "message": msg, "finish_reason": "stop"}]})

    with FakeHTTPServer(handler) as server:
        chunks = list(llm(server.url).stream(REQ, timeout=5))
    assert chunks[0] == TextDelta("We open at nine.") and isinstance(chunks[-1], ModelDone)


def test_stream_without_done_or_finish_is_an_error():
    def handler(req, reply):
        reply.start(200, {"Content-Type": "text/event-stream"})
        reply.chunk(b'data: {"choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\n')
        reply.end()

    with FakeHTTPServer(handler) as server:
        with pytest.raises(ProviderError) as info:
            list(llm(server.url).stream(REQ, timeout=5))
    assert "before [DONE]" in str(info.value)


@pytest.mark.parametrize(("status", "retryable"), [(401, False), (429, True), (500, True)])
def test_failing_server(status, retryable):
    with FakeOpenAI(knobs=Knobs(fail_status=status)) as fake:
        with pytest.raises(ProviderError) as info:
            list(llm(fake.base_url).stream(REQ, timeout=5))
    assert info.value.retryable is retryable and info.value.status_code == status
    assert info.value.ended_reason == "pipeline-error-custom-llm-llm-failed"


def test_retry_after_short_is_honoured_and_retried():
    with FakeOpenAI(knobs=Knobs(fail_status=429, fail_times=1, retry_after="0.05")) as fake:
        chunks = list(llm(fake.base_url, maxRetries=1).stream(REQ, timeout=5))
        assert len(fake.requests) == 2
    assert isinstance(chunks[-1], ModelDone)


def test_malformed_chunk_and_disconnect_and_timeout():
    with FakeOpenAI(knobs=Knobs(malformed_after=2)) as fake:
        with pytest.raises(ProviderError, match="malformed"):
            list(llm(fake.base_url).stream(REQ, timeout=5))
    with FakeOpenAI(knobs=Knobs(disconnect_after=2)) as fake:
        with pytest.raises(ProviderError) as info:
            list(llm(fake.base_url).stream(REQ, timeout=5))
        assert info.value.retryable
    with FakeOpenAI(knobs=Knobs(latency=3)) as fake:
        with pytest.raises(ProviderError, match="timed out") as info:
            list(llm(fake.base_url, timeoutSeconds=0.3).stream(REQ, timeout=5))
        assert info.value.retryable


def test_url_is_required():
    with pytest.raises(ValueError):
        CustomLLM.from_config({"provider": "custom-llm", "model": "x"})
