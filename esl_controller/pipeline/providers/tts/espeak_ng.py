"""Embedded offline TTS: libespeak-ng through ctypes, from the PyPI package ``espeakng-loader``.

The package ships the shared library and its voice data, so nothing comes from apt. espeak-ng
synthesizes PCM16 mono at its native 22050 Hz; ``synthesize`` resamples to 8 or 16 kHz on request.
The library keeps global state, so synthesis is serialized by a process-wide lock (one at a time
per process; about 7 ms for a 15-word sentence, acceptable in-line on the hub).

Install with the ``espeak`` extra: ``pip install esl-controller[espeak]``.
"""

from __future__ import annotations

import ctypes
import logging
import threading
from dataclasses import dataclass

from esl_controller.media.codecs import resample

log = logging.getLogger("esl_controller.pipeline.tts.espeak")

PROVIDER = "espeak-ng"
NATIVE_RATE = 22050
DEFAULT_VOICE = "en-us"
DEFAULT_RATE_WPM = 175

# espeak_AUDIO_OUTPUT, espeak_POSITION_TYPE, flags, parameters (speak_lib.h)
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_POS_CHARACTER = 1
_ESPEAK_CHARS_UTF8 = 1
_ESPEAK_RATE = 1
_ESPEAK_VOLUME = 2
_ESPEAK_PITCH = 3
_EE_OK = 0

_CALLBACK = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
)


class EspeakUnavailable(RuntimeError):
    """espeakng-loader is missing or its library would not load."""


class EspeakError(RuntimeError):
    """libespeak-ng reported an error."""


@dataclass(frozen=True)
class SynthesisResult:
    audio: bytes  # PCM16 mono little-endian
    sample_rate: int
    characters: int  # billed/usage unit for TTS
    voice: str

    @property
    def seconds(self) -> float:
        return len(self.audio) / (2.0 * self.sample_rate)


class _Engine:
    """The process-wide libespeak-ng instance."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as exc:
            raise EspeakUnavailable(
                "espeak-ng TTS needs the 'espeak' extra: pip install esl-controller[espeak]"
            ) from exc
        try:
            lib = ctypes.CDLL(espeakng_loader.get_library_path())
            data_path = espeakng_loader.get_data_path()
        except (OSError, RuntimeError) as exc:
            raise EspeakUnavailable(
                f"libespeak-ng from espeakng-loader did not load: {exc}"
            ) from exc
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_CALLBACK]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.POINTER(ctypes.c_uint),
            ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.argtypes = []
        lib.espeak_Synchronize.restype = ctypes.c_int
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode("utf-8"), 0)
        if rate <= 0:
            raise EspeakUnavailable(f"espeak_Initialize failed ({rate}) with data at {data_path}")
        self.lib = lib
        self.rate = rate
        self._chunks: list[bytes] = []
        self._callback = _CALLBACK(self._on_audio)  # keep a reference: C holds the pointer
        lib.espeak_SetSynthCallback(self._callback)
        self._voice: str | None = None
        self._wpm: int | None = None

    def _on_audio(self, wav: ctypes.Array, numsamples: int, events: int) -> int:
        if numsamples > 0 and wav:
            self._chunks.append(ctypes.string_at(wav, numsamples * 2))
        return 0

    def synth(self, text: str, voice: str, wpm: int) -> bytes:
        if voice != self._voice:
            err = self.lib.espeak_SetVoiceByName(voice.encode("utf-8"))
            if err != _EE_OK:
                raise EspeakError(f"unknown espeak-ng voice {voice!r} (error {err})")
            self._voice = voice
            self._wpm = None
        if wpm != self._wpm:
            self.lib.espeak_SetParameter(_ESPEAK_RATE, wpm, 0)
            self._wpm = wpm
        data = text.encode("utf-8") + b"\0"
        buf = ctypes.create_string_buffer(data, len(data))
        self._chunks = []
        err = self.lib.espeak_Synth(
            buf, len(data), 0, _POS_CHARACTER, 0, _ESPEAK_CHARS_UTF8, None, None
        )
        if err != _EE_OK:
            raise EspeakError(f"espeak_Synth failed (error {err})")
        self.lib.espeak_Synchronize()
        audio = b"".join(self._chunks)
        self._chunks = []
        return audio


_lock = threading.Lock()
_engine: _Engine | None = None


def _get_engine() -> _Engine:
    global _engine
    if _engine is None:
        _engine = _Engine()
        log.info("espeak-ng initialised (native %d Hz)", _engine.rate)
    return _engine


def available() -> bool:
    """True when libespeak-ng can be loaded."""
    try:
        with _lock:
            _get_engine()
    except EspeakUnavailable:
        return False
    return True


def synthesize(
    text: str,
    voice: str = DEFAULT_VOICE,
    rate_wpm: int = DEFAULT_RATE_WPM,
    sample_rate: int | None = None,
) -> SynthesisResult:
    """Text -> PCM16 mono, at the native 22050 Hz or resampled to ``sample_rate``.

    ``rate_wpm`` is espeak's speaking rate in words per minute (80..450).
    """
    if not 80 <= rate_wpm <= 450:
        raise ValueError("rate_wpm must be between 80 and 450")
    text = text.strip()
    with _lock:
        engine = _get_engine()
        audio = engine.synth(text, voice, rate_wpm) if text else b""
        native = engine.rate
    out_rate = sample_rate or native
    if out_rate != native:
        audio = resample(audio, native, out_rate)
    return SynthesisResult(audio=audio, sample_rate=out_rate, characters=len(text), voice=voice)


class EspeakNgTTS:
    """TTS provider object: ``synthesize(text, sample_rate)``; voice and speed from the config.

    ``speed`` follows the Vapi voice field (1.0 = normal, 175 words per minute).
    """

    provider = PROVIDER

    def __init__(self, voice_id: str | None = None, speed: float = 1.0) -> None:
        self.voice = voice_id or DEFAULT_VOICE
        self.rate_wpm = max(80, min(450, int(round(DEFAULT_RATE_WPM * speed))))

    def synthesize(self, text: str, sample_rate: int) -> SynthesisResult:
        return synthesize(text, self.voice, self.rate_wpm, sample_rate)
