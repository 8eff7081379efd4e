"""OpenAI-compatible text-to-speech (``/v1/audio/speech``), and the base of every streaming HTTP voice.

``response_format: "pcm"`` answers raw 24 kHz s16le mono; it is resampled (``audioop.ratecv`` through
:class:`~esl_controller.media.codecs.Resampler`) to the rate the call asks for and handed on chunk by chunk
as the body streams in. Voice config (Vapi's ``voice`` block)::

    {"provider": "openai", "voiceId": "alloy", "model": "gpt-4o-mini-tts", "speed": 1.0,
     "url": "http://127.0.0.1:8880/v1",   # optional base URL override (also the credential's apiUrl)
     "cachingEnabled": true}

**Caching**: short texts (up to ``CACHE_MAX_CHARS``) are kept in a process-wide LRU keyed by
``(provider, voice, model, text, rate)``, so a repeated first message (or end-call message) is not
synthesised again. Only complete, successful syntheses are stored. ``cachingEnabled: false`` turns it off.

:class:`HttpSynthesizer` holds what every HTTP voice shares (cache, retries before the first byte, error
mapping, resampling, usage); a vendor supplies the request and the rate its audio comes at.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any

from esl_controller.media.codecs import Resampler
from esl_controller.pipeline.providers import http
from esl_controller.pipeline.providers.base import AudioChunk, ProviderError, Usage

log = logging.getLogger("esl_controller.pipeline.providers.tts")

CACHE_MAX_CHARS = 300
DEFAULT_BASE_URL = "https://api.openai.com/v1"
OPENAI_PCM_RATE = 24000


class SpeechCache:
    """A small LRU of synthesised audio, bounded by entries and bytes."""

    def __init__(self, max_entries: int = 64, max_bytes: int = 32 * 1024 * 1024) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple, bytes] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple) -> bytes | None:
        audio = self._items.get(key)
        if audio is None:
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return audio

    def put(self, key: tuple, audio: bytes) -> None:
        if len(audio) > self.max_bytes:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self._bytes -= len(old)
        self._items[key] = audio
        self._bytes += len(audio)
        while len(self._items) > self.max_entries or self._bytes > self.max_bytes:
            _, dropped = self._items.popitem(last=False)
            self._bytes -= len(dropped)

    def clear(self) -> None:
        self._items.clear()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._items)


#: shared by every synthesizer in the process (first messages repeat across calls)
SPEECH_CACHE = SpeechCache()


class HttpSynthesizer:
    """Base for streaming HTTP voices; subclasses implement :meth:`build_request` and :meth:`source_rate`."""

    name = "http-voice"

    def __init__(
        self,
        voice_id: str,
        model: str,
        *,
        base_url: str,
        headers: Mapping[str, str],
        policy: http.HttpPolicy | None = None,
        caching: bool = True,
        cache: SpeechCache | None = None,
        chunk_ms: int = 100,
    ) -> None:
        self.voice_id = voice_id
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.policy = policy or http.HttpPolicy()
        self.caching = caching
        self.cache = cache if cache is not None else SPEECH_CACHE
        self.chunk_ms = chunk_ms
        self._client = http.make_client(self.policy, headers)
        self._usage: Usage | None = None
        self.requests = 0

    # -- vendor hooks -------------------------------------------------------------------------------

    def source_rate(self, sample_rate: int) -> int:
        raise NotImplementedError

    def build_request(self, text: str, source_rate: int, timeout: Any) -> Any:
        raise NotImplementedError

    # -- the protocol ----------------------------------------------------------------------------

    def last_usage(self) -> Usage | None:
        return self._usage

    def cache_key(self, text: str, sample_rate: int) -> tuple:
        return (self.name, self.voice_id, self.model, text, sample_rate)

    def synthesize(self, text: str, *, sample_rate: int, timeout: float) -> Iterator[AudioChunk]:
        text = text.strip()
        if not text:
            return
        key = self.cache_key(text, sample_rate)
        use_cache = self.caching and len(text) <= CACHE_MAX_CHARS
        cached = self.cache.get(key) if use_cache else None
        if cached is not None:
            self._usage = Usage(
                kind="tts",
                provider=self.name,
                model=self.model,
                voice_id=self.voice_id,
                request_id="cache",
            )
            yield from self._chunks(cached, sample_rate)
            return
        yield from self._fetch(text, sample_rate, timeout, key if use_cache else None)

    def _chunks(self, audio: bytes, sample_rate: int) -> Iterator[AudioChunk]:
        step = max(2, sample_rate * self.chunk_ms // 1000 * 2)
        for i in range(0, len(audio), step):
            yield AudioChunk(audio[i : i + step], sample_rate)

    def _fetch(
        self, text: str, sample_rate: int, timeout: float, key: tuple | None
    ) -> Iterator[AudioChunk]:
        self.requests += 1
        started = time.monotonic()
        src = self.source_rate(sample_rate)
        resampler = Resampler(src, sample_rate)
        kept: list[bytes] | None = [] if key is not None else None
        first_ms = 0.0
        request = self.build_request(text, src, self.policy.timeout(timeout))
        with http.open_stream(
            self._client, request, self.policy, self.name, "tts", what="synthesis"
        ) as resp:
            rid = http.request_id(resp.headers)
            ctype = resp.headers.get("content-type", "")
            if "json" in ctype or "text/" in ctype:
                raise http.malformed(self.name, "tts", f"expected audio, got {ctype}")
            for raw in http.iter_body(resp, self.name, "tts", self.policy.chunk_bytes):
                pcm = resampler.process(raw)
                if not pcm:
                    continue
                if not first_ms:
                    first_ms = http.elapsed_ms(started)
                if kept is not None:
                    kept.append(pcm)
                yield AudioChunk(pcm, sample_rate)
        if not first_ms:
            raise ProviderError(
                f"{self.name} returned no audio", provider=self.name, kind="tts", retryable=True
            )
        self._usage = Usage(
            kind="tts",
            provider=self.name,
            model=self.model,
            voice_id=self.voice_id,
            characters=len(text),
            request_id=rid,
            latency_ms=first_ms,
        )
        if kept is not None and key is not None:
            self.cache.put(key, b"".join(kept))

    def close(self) -> None:
        self._client.close()


class OpenAISpeech(HttpSynthesizer):
    """``POST {base}/audio/speech`` with ``response_format: pcm`` (24 kHz s16le mono)."""

    def __init__(
        self,
        voice_id: str = "alloy",
        model: str = "gpt-4o-mini-tts",
        *,
        base_url: str = DEFAULT_BASE_URL,
        api_key: str = "",
        speed: float | None = None,
        instructions: str | None = None,
        name: str = "openai",
        **kw: Any,
    ) -> None:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.name = name
        self.speed = speed
        self.instructions = instructions
        super().__init__(voice_id, model, base_url=base_url, headers=headers, **kw)

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], credential: Mapping[str, Any] | None = None
    ) -> OpenAISpeech:
        cred = credential or config.get("credential") or {}
        return cls(
            str(config.get("voiceId") or "alloy"),
            str(config.get("model") or "gpt-4o-mini-tts"),
            base_url=str(config.get("url") or cred.get("apiUrl") or DEFAULT_BASE_URL),
            api_key=str(cred.get("apiKey") or ""),
            speed=config.get("speed"),
            instructions=config.get("instructions"),
            name=str(config.get("provider") or "openai"),
            policy=http.HttpPolicy.from_config(config),
            caching=config.get("cachingEnabled", True) is not False,
        )

    def source_rate(self, sample_rate: int) -> int:
        return OPENAI_PCM_RATE

    def build_request(self, text: str, source_rate: int, timeout: Any) -> Any:
        body: dict[str, Any] = {
            "model": self.model,
            "input": text,
            "voice": self.voice_id,
            "response_format": "pcm",
        }
        if self.speed is not None:
            body["speed"] = float(self.speed)
        if self.instructions:
            body["instructions"] = self.instructions
        return self._client.build_request(
            "POST", self.base_url + "/audio/speech", json=body, timeout=timeout
        )


# registers the hosted factories when the registry discovers this module
from esl_controller.pipeline.providers import hosted as _hosted  # noqa: E402, F401
