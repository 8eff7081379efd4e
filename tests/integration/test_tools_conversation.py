"""A function tool inside a live conversation: real caller speech, the model asks for the tool, the runner
POSTs ``tool-calls`` to a local server through the conversation's ``tool_handler`` hook, and the result goes
back to the model. Synchronised on notices and server events, never on sleeps."""

import json

import gevent
import gevent.event
import pytest
from audio_fixtures import speech
from gevent.pywsgi import WSGIServer

from esl_controller.media.codecs import silence
from esl_controller.pipeline.conversation import Conversation
from esl_controller.pipeline.providers.base import ModelDone, TextDelta, ToolCallDelta
from esl_controller.pipeline.providers.testing import (
    FakeSynthesizer,
    FakeTranscriber,
    RecordingPort,
)
from esl_controller.pipeline.tools.runner import ToolHttpSettings, ToolRunner
from esl_controller.pipeline.tools.spec import build_toolset
from esl_controller.webhooks.messages import MessageContext

RATE = 16000


class ToolThenTextModel:
    """First request: a get_weather tool call. Later requests: a reply quoting the tool result."""

    name = "tool-model"
    model = "tool-model"

    def __init__(self):
        self.requests = []

    def stream(self, request, *, timeout):
        self.requests.append(request)
        if len(self.requests) == 1:
            yield ToolCallDelta(index=0, id="call_w1", name="get_weather", arguments='{"city":')
            yield ToolCallDelta(index=0, arguments=' "Paris"}')
            yield ModelDone("tool_calls")
            return
        result = next(m["content"] for m in request.messages if m.get("role") == "tool")
        yield TextDelta(f"The weather is {result}.")
        yield ModelDone("stop")


@pytest.fixture
def weather_server():
    state = {"bodies": []}
    got = gevent.event.Event()

    def app(environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = json.loads(environ["wsgi.input"].read(length))
        state["bodies"].append(body)
        got.set()
        call_id = body["message"]["toolCallList"][0]["id"]
        answer = json.dumps({"results": [{"toolCallId": call_id, "result": "sunny"}]}).encode()
        start_response("200 OK", [("Content-Length", str(len(answer)))])
        return [answer]

    server = WSGIServer(("127.0.0.1", 0), app, log=None, error_log=None)
    server.start()
    state["url"] = f"http://127.0.0.1:{server.server_port}/tools"
    state["got"] = got
    yield state
    server.stop(timeout=1)


def test_function_tool_round_trip_during_a_conversation(weather_server):
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
        "server": {"url": weather_server["url"]},
    }
    body = {
        "firstMessageMode": "assistant-waits-for-user",
        "model": {"provider": "custom-llm", "model": "x", "tools": [tool]},
    }
    toolset = build_toolset(body["model"])
    runner = ToolRunner(
        MessageContext(call={"id": "call-42"}, assistant={"id": "a-1"}),
        toolset,
        ToolHttpSettings(fillers=()),
    )
    port = RecordingPort(RATE, speed=8.0)
    model = ToolThenTextModel()
    conv = Conversation(
        body,
        port,
        stt=FakeTranscriber(["what is the weather in Paris"]),
        llm=model,
        tts=FakeSynthesizer(),
        tool_handler=runner.handler(),
    )
    conv.start()
    try:
        port.wait_for("ready")
        pcm = speech("what is the weather in Paris", RATE) + silence(0.6, RATE)
        for i in range(0, len(pcm), 640):
            conv.feed(pcm[i : i + 640], i / (2.0 * RATE))
        gevent.sleep(0)
        assert weather_server["got"].wait(timeout=10)
        result = port.wait_for("message", lambda m: m["role"] == "tool_call_result")
        port.wait_for("message", lambda m: m["role"] == "bot")
    finally:
        conv.stop()
        runner.close()

    assert result["result"] == "sunny" and result["toolCallId"] == "call_w1"
    (sent,) = weather_server["bodies"]
    assert sent["message"]["type"] == "tool-calls"
    assert sent["message"]["call"]["id"] == "call-42"
    assert sent["message"]["toolCallList"][0]["arguments"] == {"city": "Paris"}
    assert model.requests[0].tools[0]["function"]["name"] == "get_weather"
    assert port.texts == ["The weather is sunny."]
