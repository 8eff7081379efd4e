"""``custom-llm``: the operator's own OpenAI-compatible server, called the way Vapi calls it.

Vapi POSTs an OpenAI chat-completions request with ``stream: true`` to ``{model.url}/chat/completions`` and
adds, per ``metadataSendMode`` (default ``variable``):

- ``off``: the OpenAI body only (``{model, messages, ...}``);
- ``variable``: also ``metadata`` (the assistant's metadata) and the ``call``, ``phoneNumber`` and
  ``customer`` objects;
- ``destructured``: the metadata's fields spread on the body itself, plus ``call``/``phoneNumber``/``customer``.

Those objects come from ``ChatRequest.metadata`` under the keys ``call``, ``phoneNumber``, ``customer`` and
``metadata``. ``model.headers`` are added to the request; the credential's ``apiKey`` goes in
``Authorization: Bearer``. ``model.timeoutSeconds`` bounds each read. The answer may be an SSE stream of
``chat.completion.chunk`` objects (ended by ``data: [DONE]`` or a finish reason) or, from servers that ignore
``stream``, one JSON completion. :class:`SSEDecoder` is a pure byte-in, event-out parser.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from esl_controller.pipeline.providers import http
from esl_controller.pipeline.providers.base import ChatRequest, ModelChunk, ProviderError
from esl_controller.pipeline.providers.llm.openai_compat import ChunkDecoder, chat_body

log = logging.getLogger("esl_controller.pipeline.providers.llm")

PROVIDER = "custom-llm"
METADATA_MODES = ("off", "variable", "destructured")
#: body keys the metadata may not overwrite in ``destructured`` mode
_RESERVED = frozenset(
    {"model", "messages", "stream", "stream_options", "tools", "temperature", "max_tokens"}
)


# -- pure: SSE ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SSEEvent:
    data: str
    event: str = ""
    id: str = ""


class SSEDecoder:
    """Server-sent events parser: ``feed(bytes)`` returns the events completed so far.

    Lines end in LF, CRLF or CR; ``:`` starts a comment; several ``data`` lines join with LF; one space after
    the colon is dropped; an event is dispatched on a blank line (events with no data are skipped).
    """

    def __init__(self, max_line: int = 1 << 20) -> None:
        self._buf = b""
        self._data: list[str] = []
        self._event = ""
        self._id = ""
        self.max_line = max_line

    def feed(self, data: bytes) -> list[SSEEvent]:
        self._buf += data
        out: list[SSEEvent] = []
        while True:
            cut = _line_end(self._buf)
            if cut is None:
                if len(self._buf) > self.max_line:
                    raise ValueError("SSE line too long")
                return out
            end, skip = cut
            line = self._buf[:end].decode("utf-8", "replace")
            self._buf = self._buf[end + skip :]
            event = self._line(line)
            if event is not None:
                out.append(event)

    def close(self) -> list[SSEEvent]:
        """End of stream: a last event not followed by a blank line is still dispatched."""
        out = self.feed(b"\n\n") if self._buf or self._data else []
        return out

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            if not self._data:
                self._event = ""
                return None
            event = SSEEvent("\n".join(self._data), self._event, self._id)
            self._data, self._event = [], ""
            return event
        if line.startswith(":"):
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            self._id = value
        return None


def _line_end(buf: bytes) -> tuple[int, int] | None:
    """Index and length of the first line terminator (a CR at the very end waits for a possible LF)."""
    lf, cr = buf.find(b"\n"), buf.find(b"\r")
    if cr == -1 and lf == -1:
        return None
    if cr == -1 or (lf != -1 and lf < cr):
        return lf, 1
    if cr + 1 < len(buf):
        return cr, 2 if buf[cr + 1 : cr + 2] == b"\n" else 1
    return None


def custom_body(
    request: ChatRequest,
    model: str,
    *,
    mode: str = "variable",
    temperature: float | None = None,
    max_tokens: int | None = None,
) -> dict[str, Any]:
    """The body Vapi sends a custom LLM, for ``metadataSendMode`` ``mode``."""
    body = chat_body(request, model, temperature=temperature, max_tokens=max_tokens)
    if mode == "off":
        return body
    extra = request.metadata or {}
    for key in ("call", "phoneNumber", "customer"):
        if extra.get(key) is not None:
            body[key] = extra[key]
    meta = extra.get("metadata") or {}
    if mode == "destructured" and isinstance(meta, Mapping):
        for key, value in meta.items():
            if key not in _RESERVED:
                body[key] = value
    else:
        body["metadata"] = dict(meta) if isinstance(meta, Mapping) else meta
    return body


# -- the model --------------------------------------------------------------------------------------


class CustomLLM:
    """A :class:`~esl_controller.pipeline.providers.base.ChatModel` for an operator's server."""

    def __init__(
        self,
        url: str,
        model: str = "",
        *,
        api_key: str = "",
        headers: Mapping[str, str] | None = None,
        metadata_send_mode: str = "variable",
        temperature: float | None = None,
        max_tokens: int | None = None,
        timeout: float | None = None,
        policy: http.HttpPolicy | None = None,
        name: str = PROVIDER,
    ) -> None:
        if metadata_send_mode not in METADATA_MODES:
            raise ValueError(f"metadataSendMode must be one of {METADATA_MODES}")
        self.name = name
        self.model = model
        self.url = url.rstrip("/") + "/chat/completions"
        self.mode = metadata_send_mode
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.default_timeout = timeout
        self.policy = policy or http.HttpPolicy()
        base_headers = {"Accept": "text/event-stream", **dict(headers or {})}
        if api_key:
            base_headers["Authorization"] = f"Bearer {api_key}"
        self._client = http.make_client(self.policy, base_headers)
        self.requests = 0

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], credential: Mapping[str, Any] | None = None
    ) -> CustomLLM:
        cred = credential or config.get("credential") or {}
        url = config.get("url") or cred.get("apiUrl")
        if not url:
            raise ValueError("custom-llm needs model.url (an OpenAI-compatible base URL)")
        return cls(
            str(url),
            str(config.get("model") or ""),
            api_key=str(cred.get("apiKey") or ""),
            headers=config.get("headers") or None,
            metadata_send_mode=str(config.get("metadataSendMode") or "variable"),
            temperature=config.get("temperature"),
            max_tokens=config.get("maxTokens"),
            timeout=config.get("timeoutSeconds"),
            policy=http.HttpPolicy.from_config(config),
        )

    def stream(self, request: ChatRequest, *, timeout: float) -> Iterator[ModelChunk]:
        self.requests += 1
        read_timeout = float(self.default_timeout or timeout)
        body = custom_body(
            request,
            self.model,
            mode=self.mode,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
        )
        started = time.monotonic()
        req = self._client.build_request(
            "POST", self.url, json=body, timeout=self.policy.timeout(read_timeout)
        )
        decoder = ChunkDecoder(self.name, self.model)
        with http.open_stream(self._client, req, self.policy, self.name, "llm") as response:
            rid = http.request_id(response.headers)
            first_ms = 0.0
            chunks = http.iter_body(response, self.name, "llm", self.policy.chunk_bytes)
            if "json" in response.headers.get(
                "content-type", ""
            ) and "event-stream" not in response.headers.get("content-type", ""):
                items = self._whole(chunks, decoder)
            else:
                items = self._events(chunks, decoder)
            for item in items:
                if not first_ms:
                    first_ms = http.elapsed_ms(started)
                yield item
            try:
                tail = decoder.finish(
                    request_id=rid, latency_ms=first_ms or http.elapsed_ms(started)
                )
            except ValueError as exc:
                raise http.malformed(self.name, "llm", str(exc)) from exc
            yield from tail

    def _events(self, chunks: Iterator[bytes], decoder: ChunkDecoder) -> Iterator[ModelChunk]:
        sse = SSEDecoder()
        done = False
        try:
            for data in chunks:
                for event in sse.feed(data):
                    if event.data.strip() == "[DONE]":
                        done = True
                        break
                    yield from decoder.feed(json.loads(event.data))
                if done:
                    return
            for event in sse.close():
                if event.data.strip() == "[DONE]":
                    return
                yield from decoder.feed(json.loads(event.data))
        except ValueError as exc:  # JSON errors, error events, overlong lines
            raise http.malformed(self.name, "llm", str(exc)[:200]) from exc
        if not decoder.finish_reason:
            raise ProviderError(
                f"{self.name} stream ended before [DONE]",
                provider=self.name,
                kind="llm",
                retryable=True,
            )

    def _whole(self, chunks: Iterator[bytes], decoder: ChunkDecoder) -> Iterator[ModelChunk]:
        raw = b"".join(chunks)
        try:
            yield from decoder.feed(json.loads(raw))
        except ValueError as exc:
            raise http.malformed(self.name, "llm", str(exc)[:200]) from exc

    def close(self) -> None:
        self._client.close()


# registers the hosted factories when the registry discovers this module
from esl_controller.pipeline.providers import hosted as _hosted  # noqa: E402, F401
