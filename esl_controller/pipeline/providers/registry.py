"""Provider registry: an assistant's ``model`` / ``transcriber`` / ``voice`` block -> a provider object.

Vendors register a factory under a Vapi provider name, optionally narrowed to one ``model`` value::

    from esl_controller.pipeline.providers.registry import register

    @register("llm", "openai")
    def _openai(config: Mapping[str, Any]) -> ChatModel: ...

    register("stt", "custom-transcriber", model="faster-whisper")(FasterWhisperTranscriber.from_config)

A lookup tries ``(provider, model)`` first, then ``(provider, None)``. Modules under
``providers/{stt,llm,tts}/`` are imported on the first miss, so a vendor module registers itself just by
existing (a module whose optional package is missing is skipped and reported by name if asked for).

Embedded offline defaults (no keys, no network): model ``custom-llm`` + ``model: scripted`` (see
``providers/llm/scripted.py``); voice ``espeak-ng`` (also ``custom-voice`` with ``model: espeak-ng`` and Vapi's
own ``vapi`` provider); transcriber: whatever the STT modules register as ``custom-transcriber`` with their
model name; an absent block picks :data:`DEFAULTS`.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from esl_controller.pipeline.providers.base import (
    AudioChunk,
    ChatModel,
    ProviderError,
    Synthesizer,
    Transcriber,
    Usage,
)

log = logging.getLogger("esl_controller.pipeline.providers")

KINDS = ("stt", "llm", "tts")
Factory = Callable[[Mapping[str, Any]], Any]

_FACTORIES: dict[tuple[str, str, str | None], Factory] = {}
_import_errors: dict[str, str] = {}
_discovered: set[str] = set()

#: what an absent ``transcriber`` / ``model`` / ``voice`` block means (provider, model)
DEFAULTS: dict[str, tuple[str, str | None]] = {
    "stt": ("custom-transcriber", "whisper-tiny.en"),
    "llm": ("custom-llm", "scripted"),
    "tts": ("espeak-ng", None),
}


class UnknownProvider(LookupError):
    """No provider is registered under that name (the message lists the known ones)."""


def register(kind: str, provider: str, *, model: str | None = None) -> Callable[[Factory], Factory]:
    """Decorator: ``factory(config) -> provider object`` for ``provider`` (and ``model``, when given)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")

    def deco(factory: Factory) -> Factory:
        _FACTORIES[(kind, provider, model)] = factory
        return factory

    return deco


def unregister(kind: str, provider: str, *, model: str | None = None) -> None:
    _FACTORIES.pop((kind, provider, model), None)


def registered(kind: str) -> list[str]:
    """Known names for a kind, as ``provider`` or ``provider/model``."""
    _discover(kind)
    return sorted(p if m is None else f"{p}/{m}" for k, p, m in _FACTORIES if k == kind)


def _discover(kind: str) -> None:
    if kind in _discovered:
        return
    _discovered.add(kind)
    package = f"esl_controller.pipeline.providers.{kind}"
    try:
        pkg = importlib.import_module(package)
    except ImportError as exc:
        _import_errors[package] = str(exc)
        return
    for info in pkgutil.iter_modules(getattr(pkg, "__path__", [])):
        if info.name.startswith("_"):
            continue
        name = f"{package}.{info.name}"
        try:
            importlib.import_module(name)
        except ImportError as exc:  # an optional vendor package is missing (MissingExtra too)
            _import_errors[name] = str(exc)
            log.debug("provider module %s not loaded: %s", name, exc)
        except Exception as exc:  # noqa: BLE001 - one broken vendor module must not break every lookup
            _import_errors[name] = f"{type(exc).__name__}: {exc}"
            log.warning("provider module %s failed to import: %s", name, exc)


def resolve(kind: str, config: Mapping[str, Any] | None) -> Factory:
    """The factory for a config block (or the default), or :class:`UnknownProvider`."""
    if not config or not config.get("provider"):
        provider, model = DEFAULTS[kind]
    else:
        provider = str(config["provider"])
        model = None if config.get("model") is None else str(config.get("model"))
    for attempt in range(2):
        for key in ((kind, provider, model), (kind, provider, None)):
            if key in _FACTORIES:
                return _FACTORIES[key]
        if attempt == 0:
            _discover(kind)
    wanted = provider if model is None else f"{provider} (model {model})"
    known = ", ".join(registered(kind)) or "none"
    hint = ""
    if _import_errors:
        hint = "; modules not loaded: " + "; ".join(f"{k}: {v}" for k, v in _import_errors.items())
    raise UnknownProvider(f"no {kind} provider {wanted!r} is available (known: {known}){hint}")


def build(kind: str, config: Mapping[str, Any] | None) -> Any:
    factory = resolve(kind, config)
    return factory(dict(config or {}))


def build_transcriber(config: Mapping[str, Any] | None) -> Transcriber:
    return build("stt", config)


def build_model(config: Mapping[str, Any] | None) -> ChatModel:
    return build("llm", config)


def build_synthesizer(config: Mapping[str, Any] | None) -> Synthesizer:
    return build("tts", config)


@dataclass(frozen=True)
class Providers:
    stt: Transcriber | None
    llm: ChatModel
    tts: Synthesizer


def build_providers(
    model: Mapping[str, Any] | None,
    voice: Mapping[str, Any] | None,
    transcriber: Mapping[str, Any] | None,
    *,
    require_stt: bool = False,
) -> Providers:
    """All three for one call. A missing STT is tolerated unless ``require_stt`` (text-only tests)."""
    try:
        stt = build_transcriber(transcriber)
    except UnknownProvider:
        if require_stt or transcriber:
            raise
        log.warning("no speech-to-text provider available: the assistant will not hear the caller")
        stt = None
    return Providers(stt=stt, llm=build_model(model), tts=build_synthesizer(voice))


# -- embedded providers registered here --------------------------------------------------------------


@register("llm", "custom-llm", model="scripted")
@register("llm", "scripted")
def _scripted(config: Mapping[str, Any]) -> ChatModel:
    from esl_controller.pipeline.providers.llm.scripted import ScriptedModel

    return ScriptedModel(config)


class EspeakSynthesizer:
    """The embedded espeak-ng voice as a :class:`Synthesizer` (chunks of 100 ms)."""

    name = "espeak-ng"
    chunk_seconds = 0.1

    def __init__(self, config: Mapping[str, Any]) -> None:
        from esl_controller.pipeline.providers.tts import espeak_ng

        voice = str(config.get("voiceId") or espeak_ng.DEFAULT_VOICE)
        if voice in ("espeak-ng", "espeak", "default"):
            voice = espeak_ng.DEFAULT_VOICE
        self.voice_id = voice
        self._tts = espeak_ng.EspeakNgTTS(voice, float(config.get("speed") or 1.0))
        self._usage: Usage | None = None

    def synthesize(self, text: str, *, sample_rate: int, timeout: float) -> Iterator[AudioChunk]:
        from esl_controller.pipeline.providers.tts.espeak_ng import EspeakError, EspeakUnavailable

        started = time.monotonic()
        try:
            result = self._tts.synthesize(text, sample_rate)
        except (EspeakError, EspeakUnavailable) as exc:
            raise ProviderError(str(exc), provider=self.name, kind="tts") from exc
        self._usage = Usage(
            kind="tts",
            provider=self.name,
            voice_id=self.voice_id,
            characters=result.characters,
            latency_ms=(time.monotonic() - started) * 1000.0,
        )
        step = int(sample_rate * self.chunk_seconds) * 2
        for i in range(0, len(result.audio), step):
            yield AudioChunk(result.audio[i : i + step], sample_rate)

    def last_usage(self) -> Usage | None:
        return self._usage


for _name, _model in (
    ("espeak-ng", None),
    ("espeak", None),
    ("custom-voice", "espeak-ng"),
    ("vapi", None),
):
    register("tts", _name, model=_model)(EspeakSynthesizer)
