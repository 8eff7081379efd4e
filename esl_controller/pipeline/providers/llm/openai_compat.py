"""OpenAI-compatible chat completions, streamed, with tool calls: OpenAI, Groq, Together, Ollama, vLLM, ...

Uses the official ``openai`` SDK (the ``openai`` extra) with a base URL per provider name; the credential's
``apiUrl`` or the model block's ``url`` overrides it. Assistant config (Vapi's ``model`` block)::

    {"provider": "groq", "model": "llama-3.1-8b-instant", "temperature": 0.5, "maxTokens": 250,
     "url": "http://127.0.0.1:11434/v1",            # optional base URL override
     "timeoutSeconds": 20, "connectTimeoutSeconds": 5, "maxRetries": 1}

A request streams ``TextDelta`` as tokens arrive; tool calls are assembled by ``index`` from their deltas
and handed on complete (one :class:`ToolCallDelta` each, id/name/arguments) just before the final
:class:`ModelDone`, which carries the usage from the final chunk (``stream_options.include_usage``), the
``x-request-id`` and the latency to the first token. Retries happen only before the stream began (the SDK
retries are off; :func:`~esl_controller.pipeline.providers.http.with_retries` owns the policy).

The chunk decoding (:class:`ChunkDecoder`) is pure and shared with ``custom-llm``.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from esl_controller.pipeline.providers import http
from esl_controller.pipeline.providers.base import (
    ChatRequest,
    MissingExtra,
    ModelChunk,
    ModelDone,
    ProviderError,
    TextDelta,
    ToolCallDelta,
    Usage,
)

log = logging.getLogger("esl_controller.pipeline.providers.llm")

#: default base URLs by provider name (Vapi's names, plus local servers); overridden by ``url``/``apiUrl``
BASE_URLS: dict[str, str] = {
    "openai": "https://api.openai.com/v1",
    "groq": "https://api.groq.com/openai/v1",
    "together-ai": "https://api.together.xyz/v1",
    "openrouter": "https://openrouter.ai/api/v1",
    "deepinfra": "https://api.deepinfra.com/v1/openai",
    "deep-seek": "https://api.deepseek.com/v1",
    "perplexity-ai": "https://api.perplexity.ai",
    "xai": "https://api.x.ai/v1",
    "cerebras": "https://api.cerebras.ai/v1",
    "anyscale": "https://api.endpoints.anyscale.com/v1",
    "ollama": "http://127.0.0.1:11434/v1",
    "vllm": "http://127.0.0.1:8000/v1",
    "llama.cpp": "http://127.0.0.1:8080/v1",
}
DEFAULT_TIMEOUT = 20.0


# -- pure: request body and chunk decoding -----------------------------------------------------------


def chat_body(
    request: ChatRequest,
    model: str,
    *,
    temperature: float | None = None,
    max_tokens: int | None = None,
) -> dict[str, Any]:
    """The streamed chat-completions body for ``request`` (request values win over the config's)."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [dict(m) for m in request.messages],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if request.tools:
        body["tools"] = [dict(t) for t in request.tools]
    temp = request.temperature if request.temperature is not None else temperature
    if temp is not None:
        body["temperature"] = temp
    limit = request.max_tokens if request.max_tokens is not None else max_tokens
    if limit is not None:
        body["max_tokens"] = int(limit)
    if request.json_schema is not None:
        schema = dict(request.json_schema)
        name = str(schema.pop("title", None) or "output")
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": _schema_name(name), "schema": schema, "strict": False},
        }
    return body


def _schema_name(name: str) -> str:
    clean = "".join(c if c.isalnum() or c in "_-" else "_" for c in name)
    return clean[:64] or "output"


@dataclass
class _PendingCall:
    id: str = ""
    name: str = ""
    arguments: str = ""


class ChunkDecoder:
    """``chat.completion.chunk`` dicts in, :data:`ModelChunk` out (pure).

    Text is handed on at once; tool-call fragments are accumulated by ``index`` and handed on complete by
    :meth:`finish`, followed by the :class:`ModelDone` with the usage seen in the stream.
    """

    def __init__(self, provider: str, model: str) -> None:
        self.provider = provider
        self.model = model
        self.finish_reason = ""
        self.calls: dict[int, _PendingCall] = {}
        self.usage_fields: dict[str, int] = {}
        self.text_chars = 0
        self.chunks = 0

    def feed(self, chunk: Mapping[str, Any]) -> list[ModelChunk]:
        if not isinstance(chunk, Mapping):
            raise ValueError("chunk is not an object")
        if chunk.get("error"):
            raise ValueError(f"error event: {http.error_detail(json.dumps(chunk))}")
        self.chunks += 1
        out: list[ModelChunk] = []
        usage = chunk.get("usage")
        if isinstance(usage, Mapping):
            self._take_usage(usage)
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, Mapping) or choice.get("index", 0) != 0:
                continue
            delta = choice.get("delta") or choice.get("message") or {}
            content = delta.get("content")
            if content:
                self.text_chars += len(content)
                out.append(TextDelta(str(content)))
            for frag in delta.get("tool_calls") or ():
                self._take_call(frag)
            if choice.get("finish_reason"):
                self.finish_reason = str(choice["finish_reason"])
        return out

    def _take_call(self, frag: Mapping[str, Any]) -> None:
        index = int(frag.get("index", len(self.calls)))
        call = self.calls.setdefault(index, _PendingCall())
        if frag.get("id"):
            call.id = str(frag["id"])
        fn = frag.get("function") or {}
        if fn.get("name"):
            call.name += str(fn["name"]) if call.name != fn["name"] else ""
        if fn.get("arguments"):
            args = fn["arguments"]
            call.arguments += args if isinstance(args, str) else json.dumps(args)

    def _take_usage(self, usage: Mapping[str, Any]) -> None:
        for key in ("prompt_tokens", "completion_tokens"):
            if isinstance(usage.get(key), int):
                self.usage_fields[key] = usage[key]
        details = usage.get("prompt_tokens_details") or {}
        if isinstance(details, Mapping) and isinstance(details.get("cached_tokens"), int):
            self.usage_fields["cached_prompt_tokens"] = details["cached_tokens"]

    def finish(self, *, request_id: str = "", latency_ms: float = 0.0) -> list[ModelChunk]:
        out: list[ModelChunk] = []
        for index in sorted(self.calls):
            call = self.calls[index]
            if not call.name:
                raise ValueError(f"tool call {index} has no name")
            out.append(
                ToolCallDelta(
                    index=index,
                    id=call.id or f"call_{index}",
                    name=call.name,
                    arguments=call.arguments or "{}",
                )
            )
        reason = self.finish_reason or ("tool_calls" if self.calls else "stop")
        usage = Usage(
            kind="llm",
            provider=self.provider,
            model=self.model,
            prompt_tokens=self.usage_fields.get("prompt_tokens", 0),
            completion_tokens=self.usage_fields.get("completion_tokens", 0),
            cached_prompt_tokens=self.usage_fields.get("cached_prompt_tokens", 0),
            request_id=request_id,
            latency_ms=latency_ms,
        )
        out.append(ModelDone(reason, usage))
        return out


# -- the SDK-backed model -----------------------------------------------------------------------------


def _import_openai() -> Any:
    try:
        import openai
    except ImportError as exc:
        raise MissingExtra("openai", "openai", "openai") from exc
    return openai


def sdk_error(provider: str, exc: BaseException) -> ProviderError:
    """Map an openai SDK (or its httpx) exception to a ProviderError."""
    openai = _import_openai()
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, openai.APITimeoutError):
        return ProviderError(f"{provider} timed out", provider=provider, kind="llm", retryable=True)
    if isinstance(exc, openai.APIConnectionError):
        return ProviderError(
            f"{provider} connection failed: {exc}", provider=provider, kind="llm", retryable=True
        )
    if isinstance(exc, openai.APIStatusError):
        err = http.status_error(provider, "llm", exc.status_code, exc.response.text or "")
        err.retry_after = http.retry_after(exc.response.headers)  # type: ignore[attr-defined]
        return err
    if isinstance(exc, openai.APIError):  # an error event inside the stream
        return ProviderError(
            f"{provider} stream error: {exc}", provider=provider, kind="llm", retryable=True
        )
    if isinstance(exc, ValueError):
        return http.malformed(provider, "llm", str(exc)[:200])
    if http.is_transport_error(exc) or isinstance(exc, OSError):
        return http.transport_error(provider, "llm", exc)
    return ProviderError(f"{provider} failed: {exc!r}", provider=provider, kind="llm")


class OpenAICompatModel:
    """A :class:`~esl_controller.pipeline.providers.base.ChatModel` over the openai SDK."""

    def __init__(
        self,
        provider: str,
        model: str,
        *,
        base_url: str,
        api_key: str = "",
        headers: Mapping[str, str] | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        policy: http.HttpPolicy | None = None,
    ) -> None:
        openai = _import_openai()
        self.name = provider
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.policy = policy or http.HttpPolicy()
        self.requests = 0
        self._client = openai.OpenAI(
            api_key=api_key or "unused",
            base_url=self.base_url,
            max_retries=0,
            timeout=self.policy.connect_timeout + DEFAULT_TIMEOUT,
            default_headers=dict(headers or {}),
        )

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], credential: Mapping[str, Any] | None = None
    ) -> OpenAICompatModel:
        provider = str(config.get("provider") or "openai")
        cred = credential or config.get("credential") or {}
        base_url = config.get("url") or cred.get("apiUrl") or BASE_URLS.get(provider)
        if not base_url:
            raise ValueError(
                f"model provider {provider!r} needs a url (an OpenAI-compatible base URL)"
            )
        return cls(
            provider,
            str(config.get("model") or ""),
            base_url=str(base_url),
            api_key=str(cred.get("apiKey") or ""),
            headers=config.get("headers") or None,
            temperature=config.get("temperature"),
            max_tokens=config.get("maxTokens"),
            policy=http.HttpPolicy.from_config(config),
        )

    def stream(self, request: ChatRequest, *, timeout: float) -> Iterator[ModelChunk]:
        self.requests += 1
        body = chat_body(
            request, self.model, temperature=self.temperature, max_tokens=self.max_tokens
        )
        started = time.monotonic()
        decoder = ChunkDecoder(self.name, self.model)

        def attempt() -> Any:
            try:
                return self._client.chat.completions.create(
                    **body, timeout=self.policy.timeout(timeout)
                )
            except Exception as exc:  # noqa: BLE001 - every SDK failure is mapped
                raise sdk_error(self.name, exc) from exc

        sdk_stream = http.with_retries(self.policy, self.name, "llm", attempt)
        request_id = http.request_id(
            getattr(sdk_stream, "response", None) and sdk_stream.response.headers
        )
        first_token_ms = 0.0
        try:
            for chunk in sdk_stream:
                for item in decoder.feed(chunk.model_dump(exclude_none=True)):
                    if not first_token_ms:
                        first_token_ms = http.elapsed_ms(started)
                    yield item
            tail = decoder.finish(
                request_id=request_id, latency_ms=first_token_ms or http.elapsed_ms(started)
            )
        except Exception as exc:  # noqa: BLE001 - mid-stream failures are mapped, never retried
            raise sdk_error(self.name, exc) from exc
        finally:
            sdk_stream.close()
        yield from tail

    def close(self) -> None:
        self._client.close()


# registers the hosted factories when the registry discovers this module
from esl_controller.pipeline.providers import hosted as _hosted  # noqa: E402, F401
