"""A fake OpenAI-compatible server: chat completions (SSE), audio transcriptions, audio speech.

Wire formats as OpenAI sends them: ``data: {chat.completion.chunk}`` lines with text deltas, tool-call
deltas split across chunks (id and name first, arguments in pieces), a finish chunk, a usage chunk with
empty ``choices`` when ``stream_options.include_usage`` is set, then ``data: [DONE]``. Transcriptions take a
multipart WAV upload and answer ``{"text": ...}``; speech answers raw 24 kHz s16le PCM (real espeak-ng speech)
for ``response_format: pcm``, streamed in chunks.
"""

from __future__ import annotations

import io
import json
import wave
from typing import Any

import gevent

from tests.fakes._http import FakeHTTPServer, Knobs, Reply, Request, stream_pieces


def multipart_fields(req: Request) -> dict[str, tuple[str | None, bytes]]:
    """Parse a multipart/form-data body: name -> (filename, value)."""
    ctype = req.headers.get("content-type", "")
    boundary = ctype.split("boundary=", 1)[1].strip('"').encode()
    out: dict[str, tuple[str | None, bytes]] = {}
    for part in req.body.split(b"--" + boundary):
        if not part.strip() or part.strip() == b"--":
            continue
        head, _, value = part.lstrip(b"\r\n").partition(b"\r\n\r\n")
        value = value[:-2] if value.endswith(b"\r\n") else value
        disp = [
            ln for ln in head.decode().split("\r\n") if ln.lower().startswith("content-disposition")
        ]
        params = dict(p.strip().split("=", 1) for p in disp[0].split(";")[1:] if "=" in p)
        name = params["name"].strip('"')
        filename = params.get("filename")
        out[name] = (filename.strip('"') if filename else None, value)
    return out


class FakeOpenAI:
    """The fake; ``with FakeOpenAI(...) as fake: fake.base_url``."""

    def __init__(
        self,
        *,
        reply: str = "Sure. We open at nine in the morning.",
        tool_calls: list[dict[str, Any]] | None = None,
        transcript: str = "hello world",
        speech_rate: int = 24000,
        knobs: Knobs | None = None,
    ) -> None:
        self.reply = reply
        self.tool_calls = tool_calls or []
        self.transcript = transcript
        self.speech_rate = speech_rate
        self.knobs = knobs or Knobs()
        self.failures = 0
        self.server = FakeHTTPServer(self._handle)

    # -- plumbing --------------------------------------------------------------------------------

    @property
    def requests(self) -> list[Request]:
        return self.server.requests

    @property
    def base_url(self) -> str:
        return self.server.url + "/v1"

    def __enter__(self) -> FakeOpenAI:
        self.server.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.__exit__(*exc)

    def _handle(self, req: Request, reply: Reply) -> None:
        k = self.knobs
        if k.latency:
            gevent.sleep(k.latency)
        if k.fail_status and self.failures < k.fail_times:
            self.failures += 1
            headers = {"x-request-id": f"req_fail_{self.failures}"}
            if k.retry_after:
                headers["Retry-After"] = k.retry_after
            reply.send_json(k.fail_status, k.fail_body, headers)
            return
        rid = {"x-request-id": f"req_{len(self.requests)}"}
        if req.path.endswith("/chat/completions"):
            self._chat(req, reply, rid)
        elif req.path.endswith("/audio/transcriptions"):
            self._transcribe(req, reply, rid)
        elif req.path.endswith("/audio/speech"):
            self._speech(req, reply, rid)
        else:
            reply.send_json(404, {"error": {"message": f"no route {req.path}"}})

    def _stream(self, reply: Reply, pieces: list[bytes]) -> None:
        stream_pieces(self.knobs, reply, pieces)

    # -- chat completions --------------------------------------------------------------------------

    def chat_chunks(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        base = {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 1,
            "model": body["model"],
        }

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

        out = [chunk({"role": "assistant", "content": ""})]
        words = self.reply.split(" ") if self.reply else []
        for i, word in enumerate(words):
            out.append(chunk({"content": word if i == 0 else " " + word}))
        for index, call in enumerate(self.tool_calls):
            args = call.get("arguments", "{}")
            args = args if isinstance(args, str) else json.dumps(args)
            head = {"index": index, "id": f"call_{index}", "type": "function"}
            out.append(
                chunk(
                    {"tool_calls": [{**head, "function": {"name": call["name"], "arguments": ""}}]}
                )
            )
            step = max(1, len(args) // 3)
            for j in range(0, len(args), step):
                frag = {"index": index, "function": {"arguments": args[j : j + step]}}
                out.append(chunk({"tool_calls": [frag]}))
        out.append(chunk({}, "tool_calls" if self.tool_calls else "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            prompt = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
            usage = {
                "prompt_tokens": prompt,
                "completion_tokens": len(words) + 5 * len(self.tool_calls),
                "total_tokens": prompt + len(words),
                "prompt_tokens_details": {"cached_tokens": 2},
            }
            out.append({**base, "choices": [], "usage": usage})
        return out

    def _chat(self, req: Request, reply: Reply, headers: dict[str, str]) -> None:
        body = req.json()
        if not body.get("stream"):
            message: dict[str, Any] = {"role": "assistant", "content": self.reply}
            reply.send_json(
                200,
                {
                    "id": "chatcmpl-fake",
                    "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
                },
                headers,
            )
            return
        reply.start(200, {"Content-Type": "text/event-stream", **headers})
        pieces = [b"data: " + json.dumps(c).encode() + b"\n\n" for c in self.chat_chunks(body)]
        pieces.append(b"data: [DONE]\n\n")
        self._stream(reply, pieces)

    # -- audio --------------------------------------------------------------------------------------

    def _transcribe(self, req: Request, reply: Reply, headers: dict[str, str]) -> None:
        fields = multipart_fields(req)
        filename, data = fields["file"]
        with wave.open(io.BytesIO(data), "rb") as w:
            seconds = w.getnframes() / w.getframerate()
        self.last_upload = {
            "filename": filename,
            "seconds": seconds,
            **{k: v[1].decode() for k, v in fields.items() if k != "file"},
        }
        reply.send_json(200, {"text": self.transcript}, headers)

    def _speech(self, req: Request, reply: Reply, headers: dict[str, str]) -> None:
        from esl_controller.pipeline.providers.tts import espeak_ng

        body = req.json()
        if body.get("response_format") != "pcm":
            reply.send_json(400, {"error": {"message": "only pcm in the fake"}})
            return
        audio = espeak_ng.synthesize(body["input"], sample_rate=self.speech_rate).audio
        reply.start(200, {"Content-Type": "audio/pcm", **headers})
        step = 4800  # 100 ms at 24 kHz
        self._stream(reply, [audio[i : i + step] for i in range(0, len(audio), step)])
