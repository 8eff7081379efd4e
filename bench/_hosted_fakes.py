"""Fake hosted services for ``turn_latency.py --hosted``, run in their own process.

Started as ``python bench/_hosted_fakes.py STT_MS LLM_MS TTS_MS TOOL_MS``: an OpenAI-compatible transcriptions
server, an OpenAI-compatible chat-completions server (SSE; a ``get_weather`` tool call when the request
carries tools and the last message is the user's, text otherwise), an ElevenLabs streaming TTS server and a
``tool-calls`` server, each waiting its configured latency before answering. Prints one JSON line of base
URLs, then serves until stdin closes. espeak-ng synthesis is memoised so the TTS fake's own work does not
count against the runtime after the first turn (the bench warms it up).
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import functools  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402
from gevent.os import tp_read  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, ROOT)

from esl_controller.pipeline.providers.tts import espeak_ng  # noqa: E402
from tests.fakes._http import FakeHTTPServer, Knobs, Reply, Request  # noqa: E402
from tests.fakes.elevenlabs_server import FakeElevenLabs  # noqa: E402
from tests.fakes.openai_server import FakeOpenAI  # noqa: E402

TOOL_ARGS = '{"city": "Paris"}'


class ToolAwareOpenAI(FakeOpenAI):
    """Asks for ``get_weather`` (no text) once per user message when the request offers tools."""

    def __init__(self, *, answer: str, knobs: Knobs) -> None:
        super().__init__(reply=answer, knobs=knobs)
        self.answer = answer

    def chat_chunks(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        messages = body.get("messages") or []
        wants_tool = bool(body.get("tools")) and messages and messages[-1].get("role") == "user"
        self.tool_calls = [{"name": "get_weather", "arguments": TOOL_ARGS}] if wants_tool else []
        self.reply = "" if wants_tool else self.answer
        return super().chat_chunks(body)


def tool_server(latency: float) -> FakeHTTPServer:
    def handle(req: Request, reply: Reply) -> None:
        gevent.sleep(latency)
        calls = req.json()["message"]["toolCallList"]
        reply.send_json(
            200, {"results": [{"toolCallId": c["id"], "result": "sunny"} for c in calls]}
        )

    return FakeHTTPServer(handle)


def main(argv: list[str]) -> int:
    stt_ms, llm_ms, tts_ms, tool_ms = (float(a) / 1000.0 for a in argv[:4])
    espeak_ng.synthesize = functools.lru_cache(maxsize=64)(espeak_ng.synthesize)
    stt = FakeOpenAI(transcript="what is the weather in Paris", knobs=Knobs(latency=stt_ms))
    llm = ToolAwareOpenAI(
        answer="It is sunny in Paris today. Anything else?", knobs=Knobs(latency=llm_ms)
    )
    tts = FakeElevenLabs(knobs=Knobs(latency=tts_ms))
    tools = tool_server(tool_ms)
    for s in (stt, llm, tts):
        s.__enter__()
    tools.__enter__()
    print(
        json.dumps(
            {
                "stt": stt.base_url,
                "llm": llm.base_url,
                "tts": tts.base_url,
                "tool": tools.url + "/tools",
                "ttsKey": tts.api_key,
            }
        ),
        flush=True,
    )
    while tp_read(sys.stdin.fileno(), 1):  # the bench closes stdin when it is done
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
