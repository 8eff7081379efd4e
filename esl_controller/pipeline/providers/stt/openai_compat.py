"""OpenAI-compatible speech-to-text: ``POST {base}/audio/transcriptions``, one endpointed utterance at a time.

The utterance goes up as a WAV file in a multipart form with ``model``, ``language`` (ISO 639-1, so
``en-US`` is sent as ``en``) and ``response_format=json``; the answer is ``{"text": ...}``. Works for OpenAI
(``whisper-1``, ``gpt-4o-transcribe``), Groq, and local servers (faster-whisper-server, speaches, whisper.cpp
server). Transcriber config (Vapi's ``transcriber`` block)::

    {"provider": "openai", "model": "gpt-4o-mini-transcribe", "language": "en",
     "url": "http://127.0.0.1:8000/v1"}    # optional base URL override (also the credential's apiUrl)

Nothing is streamed back, so a failed request is safe to retry (``maxRetries``). Usage records the
utterance's ``audio_seconds`` and the request id.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import Mapping
from typing import Any

from esl_controller.media.codecs import wav_bytes
from esl_controller.pipeline.providers import http
from esl_controller.pipeline.providers.base import Transcript, Usage

log = logging.getLogger("esl_controller.pipeline.providers.stt")

DEFAULT_BASE_URL = "https://api.openai.com/v1"
BASE_URLS = {"openai": DEFAULT_BASE_URL, "groq": "https://api.groq.com/openai/v1"}


def iso_language(language: str) -> str:
    """``en-US`` -> ``en``; ``multi``/empty -> '' (let the server detect)."""
    lang = (language or "").strip()
    if not lang or lang.lower() in ("multi", "auto"):
        return ""
    return lang.split("-")[0].split("_")[0].lower()


class OpenAITranscriber:
    """A :class:`~esl_controller.pipeline.providers.base.Transcriber` over ``/audio/transcriptions``."""

    def __init__(
        self,
        model: str = "whisper-1",
        *,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str = "",
        language: str = "",
        prompt: str = "",
        policy: http.HttpPolicy | None = None,
        name: str = "openai",
    ) -> None:
        self.name = name
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.language = iso_language(language)
        self.prompt = prompt
        self.policy = policy or http.HttpPolicy()
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = http.make_client(self.policy, headers)
        self.requests = 0

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], credential: Mapping[str, Any] | None = None
    ) -> OpenAITranscriber:
        cred = credential or config.get("credential") or {}
        provider = str(config.get("provider") or "openai")
        keywords = config.get("keyterm") or config.get("keywords") or []
        return cls(
            str(config.get("model") or "whisper-1"),
            base_url=str(
                config.get("url") or cred.get("apiUrl") or BASE_URLS.get(provider, DEFAULT_BASE_URL)
            ),
            api_key=str(cred.get("apiKey") or ""),
            language=str(config.get("language") or ""),
            prompt=", ".join(str(k).split(":")[0] for k in keywords),
            policy=http.HttpPolicy.from_config(config),
            name=provider,
        )

    def transcribe(self, pcm16: bytes, sample_rate: int, *, timeout: float) -> Transcript:
        self.requests += 1
        seconds = len(pcm16) / (2.0 * sample_rate)
        data = {"model": self.model, "response_format": "json"}
        if self.language:
            data["language"] = self.language
        if self.prompt:
            data["prompt"] = self.prompt
        files = {"file": ("utterance.wav", wav_bytes(pcm16, sample_rate), "audio/wav")}
        started = time.monotonic()

        def attempt() -> tuple[Any, bytes]:
            request = self._client.build_request(
                "POST",
                self.base_url + "/audio/transcriptions",
                data=data,
                files=files,
                timeout=self.policy.timeout(timeout),
            )
            # the whole body is read here: a failure anywhere in it is safe to retry (outer loop)
            once = dataclasses.replace(self.policy, max_retries=0)
            with http.open_stream(
                self._client, request, once, self.name, "stt", what="transcription"
            ) as response:
                body = b"".join(http.iter_body(response, self.name, "stt", 65536))
                return response.headers, body

        headers, body = http.with_retries(self.policy, self.name, "stt", attempt)
        try:
            payload = json.loads(body)
            text = payload["text"] if isinstance(payload, dict) else None
        except (ValueError, KeyError) as exc:
            raise http.malformed(self.name, "stt", "no text in the transcription") from exc
        if not isinstance(text, str):
            raise http.malformed(self.name, "stt", "text is not a string")
        usage = Usage(
            kind="stt",
            provider=self.name,
            model=self.model,
            audio_seconds=round(seconds, 3),
            request_id=http.request_id(headers),
            latency_ms=http.elapsed_ms(started),
        )
        lang = (
            payload.get("language") if isinstance(payload.get("language"), str) else self.language
        )
        return Transcript(text=text.strip(), is_final=True, language=lang or "", usage=usage)

    def close(self) -> None:
        self._client.close()


# registers the hosted factories when the registry discovers this module
from esl_controller.pipeline.providers import hosted as _hosted  # noqa: E402, F401
