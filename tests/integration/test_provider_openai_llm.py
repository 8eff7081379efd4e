"""OpenAI-compatible chat model against the local fake OpenAI server (loopback only)."""

from __future__ import annotations

import json

import gevent
import pytest

from esl_controller.pipeline.providers.base import (
    ChatRequest,
    ModelDone,
    ProviderError,
    TextDelta,
    ToolCallDelta,
)
from esl_controller.pipeline.providers.http import HttpPolicy
from esl_controller.pipeline.providers.llm.openai_compat import OpenAICompatModel
from tests.fakes.openai_server import FakeOpenAI, Knobs

REQ = ChatRequest(
    messages=[
        {"role": "system", "content": "You are a receptionist."},
        {"role": "user", "content": "When do you open?"},
    ],
    temperature=0.2,
    max_tokens=50,
)


def model_for(fake: FakeOpenAI, provider: str = "groq", **policy) -> OpenAICompatModel:
    return OpenAICompatModel(
        provider,
        "llama-3.1-8b-instant",
        base_url=fake.base_url,
        api_key="sk-test-secret",
        policy=HttpPolicy(
            connect_timeout=2.0, max_retries=policy.pop("max_retries", 0), backoff=0.01
        ),
    )


def test_streams_text_and_usage_with_request_fields():
    with FakeOpenAI(reply="We open at nine in the morning.") as fake:
        chunks = list(model_for(fake).stream(REQ, timeout=5))
    text = "".join(c.text for c in chunks if isinstance(c, TextDelta))
    assert text == "We open at nine in the morning."
    assert sum(isinstance(c, TextDelta) for c in chunks) == 7  # streamed word by word
    done = chunks[-1]
    assert isinstance(done, ModelDone) and done.finish_reason == "stop"
    assert done.usage.prompt_tokens == 8 and done.usage.completion_tokens == 7
    assert done.usage.cached_prompt_tokens == 2
    assert done.usage.request_id == "req_1" and done.usage.provider == "groq"
    body = fake.requests[0].json()
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["temperature"] == 0.2 and body["max_tokens"] == 50
    assert body["model"] == "llama-3.1-8b-instant"
    assert fake.requests[0].headers["authorization"] == "Bearer sk-test-secret"


def test_tool_call_deltas_are_assembled_by_index():
    calls = [
        {"name": "lookup_booking", "arguments": {"name": "Ada Lovelace", "party": 2}},
        {"name": "transferCall", "arguments": {"destination": "+15551230001"}},
    ]
    tools = [{"type": "function", "function": {"name": "lookup_booking", "parameters": {}}}]
    with FakeOpenAI(reply="", tool_calls=calls) as fake:
        chunks = list(
            model_for(fake).stream(ChatRequest(messages=REQ.messages, tools=tools), timeout=5)
        )
        sent = fake.requests[0].json()
    tool_chunks = [c for c in chunks if isinstance(c, ToolCallDelta)]
    assert [(c.index, c.id, c.name) for c in tool_chunks] == [
        (0, "call_0", "lookup_booking"),
        (1, "call_1", "transferCall"),
    ]
    assert json.loads(tool_chunks[0].arguments) == {"name": "Ada Lovelace", "party": 2}
    assert json.loads(tool_chunks[1].arguments) == {"destination": "+15551230001"}
    assert chunks[-1].finish_reason == "tool_calls"
    assert sent["tools"] == tools


def test_json_schema_response_format_is_sent():
    schema = {"title": "booking", "type": "object", "properties": {"party": {"type": "integer"}}}
    with FakeOpenAI(reply='{"party": 2}') as fake:
        list(
            model_for(fake).stream(
                ChatRequest(messages=REQ.messages, json_schema=schema), timeout=5
            )
        )
        sent = fake.requests[0].json()
    rf = sent["response_format"]
    assert rf["type"] == "json_schema" and rf["json_schema"]["name"] == "booking"
    assert rf["json_schema"]["schema"]["properties"] == {"party": {"type": "integer"}}


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(429, True), (500, True), (503, True), (401, False), (400, False), (403, False)],
)
def test_status_errors_map_to_provider_errors(status, retryable):
    with FakeOpenAI(knobs=Knobs(fail_status=status)) as fake:
        with pytest.raises(ProviderError) as info:
            list(model_for(fake, provider="openai").stream(REQ, timeout=5))
    err = info.value
    assert err.status_code == status and err.retryable is retryable
    assert err.ended_reason == "pipeline-error-openai-llm-failed"
    assert "fake failure" in str(err)
    assert "sk-test-secret" not in str(err)


def test_retryable_status_is_retried_before_streaming():
    with FakeOpenAI(knobs=Knobs(fail_status=503, fail_times=1)) as fake:
        chunks = list(model_for(fake, max_retries=1).stream(REQ, timeout=5))
        assert len(fake.requests) == 2
    assert isinstance(chunks[-1], ModelDone)


def test_non_retryable_status_is_not_retried():
    with FakeOpenAI(knobs=Knobs(fail_status=401, fail_times=1)) as fake:
        with pytest.raises(ProviderError):
            list(model_for(fake, max_retries=3).stream(REQ, timeout=5))
        assert len(fake.requests) == 1


def test_slow_first_byte_times_out_as_retryable():
    with FakeOpenAI(knobs=Knobs(latency=3.0)) as fake:
        with pytest.raises(ProviderError) as info:
            list(model_for(fake).stream(REQ, timeout=0.3))
    assert info.value.retryable is True and "timed out" in str(info.value)


def test_slow_stream_between_chunks_times_out():
    with FakeOpenAI(knobs=Knobs(chunk_delay=2.0)) as fake:
        got = []
        with pytest.raises(ProviderError) as info:
            for chunk in model_for(fake).stream(REQ, timeout=0.3):
                got.append(chunk)
    assert info.value.retryable is True
    assert not any(isinstance(c, ModelDone) for c in got)


def test_malformed_chunk_is_a_provider_error():
    with FakeOpenAI(knobs=Knobs(malformed_after=3)) as fake:
        with pytest.raises(ProviderError) as info:
            list(model_for(fake).stream(REQ, timeout=5))
    assert "malformed" in str(info.value)


def test_in_stream_error_event_is_a_provider_error():
    with FakeOpenAI(knobs=Knobs(error_event_after=2)) as fake:
        with pytest.raises(ProviderError) as info:
            list(model_for(fake).stream(REQ, timeout=5))
    assert info.value.retryable is True


def test_disconnect_mid_stream_after_text_is_not_retried():
    with FakeOpenAI(knobs=Knobs(disconnect_after=3)) as fake:
        got = []
        with pytest.raises(ProviderError) as info:
            for chunk in model_for(fake, max_retries=2).stream(REQ, timeout=5):
                got.append(chunk)
        assert len(fake.requests) == 1
    assert info.value.retryable is True
    assert [c.text for c in got if isinstance(c, TextDelta)] == ["Sure.", " We"]


def test_connection_refused_is_retryable():
    with FakeOpenAI() as fake:
        url = fake.base_url
    model = OpenAICompatModel(
        "openai", "gpt-4o-mini", base_url=url, policy=HttpPolicy(max_retries=0)
    )
    with pytest.raises(ProviderError) as info:
        list(model.stream(REQ, timeout=2))
    assert info.value.retryable is True


def test_sdk_client_cooperates_with_gevent():
    """A slow stream must not block the hub: other greenlets run while the SDK waits on its socket."""
    ticks = []

    def ticker():
        while True:
            ticks.append(1)
            gevent.sleep(0.01)

    with FakeOpenAI(reply="one two three four", knobs=Knobs(chunk_delay=0.05)) as fake:
        t = gevent.spawn(ticker)
        try:
            chunks = list(model_for(fake).stream(REQ, timeout=5))
        finally:
            t.kill()
    assert isinstance(chunks[-1], ModelDone)
    # the fake server runs in this process: it could only answer because the client yielded to the hub
    assert len(ticks) >= 5


def test_concurrent_streams_on_one_model():
    with FakeOpenAI(reply="hello there", knobs=Knobs(chunk_delay=0.02)) as fake:
        model = model_for(fake)
        jobs = [gevent.spawn(lambda: list(model.stream(REQ, timeout=5))) for _ in range(5)]
        gevent.joinall(jobs, timeout=10, raise_error=True)
    for job in jobs:
        assert "".join(c.text for c in job.value if isinstance(c, TextDelta)) == "hello there"
