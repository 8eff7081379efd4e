"""Embedded light STT: pocketsphinx 5 (its wheel ships the en-us model), streaming, in worker processes.

Install with the ``sphinx`` extra: ``pip install 'esl-controller[sphinx]'``. Assistant config:
``{"provider": "custom-transcriber", "model": "pocketsphinx-en-us"}``.

- Streaming: audio pushed as it arrives, partial hypotheses come back as they change, the final after
  :meth:`SphinxStream.finish` (the end of the utterance). The model is 16 kHz only: 8 kHz calls are
  upsampled with ``audioop.ratecv`` (a stateful resampler, so 20 ms chunks join without clicks).
- Grammar mode (``grammar="yesno"`` or any JSGF text): the decoder only chooses among the grammar's
  phrases, which is accurate for menus where free dictation is not. :func:`classify_yes_no` maps the
  result to ``"yes"`` / ``"no"``.

Two halves, one module: :class:`SphinxEngine` runs inside a worker process (one decoder per open stream,
reused; about 90 MB each), :class:`SphinxTranscriber` / :class:`SphinxStream` are the parent's
greenlet-side objects over a :class:`~esl_controller.pipeline.workers.WorkerPool` with
``engine="sphinx"``. No gevent and no pocketsphinx at import time.

Streaming uses live cepstral normalisation, which needs a moment of audio to settle: a one-word utterance
with no leading silence can come out empty; the engine then decodes the buffered utterance again in
whole-utterance mode (cheap for short audio) before answering.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from esl_controller.media.codecs import Resampler, resample
from esl_controller.pipeline.providers.base import MissingExtra, ProviderError, Transcript, Usage
from esl_controller.pipeline.providers.registry import register

if TYPE_CHECKING:
    from esl_controller.pipeline.workers import StreamChannel, WorkerPool

PROVIDER = "custom-transcriber"
MODEL = "pocketsphinx-en-us"
SAMPLE_RATE = 16000
MAX_BUFFER_SECONDS = 30.0  # audio kept per utterance for the whole-utterance retry
RETRY_UNDER_SECONDS = 5.0  # retry an empty streaming result only for utterances this short
IDLE_DECODERS = 2
PAD_SECONDS = 0.3  # silence around an utterance decoded whole  # decoders kept for reuse per worker after their streams close

YES_NO_JSGF = """#JSGF V1.0;
grammar yesno;
public <answer> = <yes> | <no>;
<yes> = yes [please] | yeah | yep | sure | correct | that is correct | right;
<no> = no [thank you] | nope | wrong | not really;
"""
GRAMMARS = {"yesno": YES_NO_JSGF}

_YES = {"yes", "yeah", "yep", "sure", "correct", "right"}
_NO = {"no", "nope", "wrong", "not"}


def classify_yes_no(text: str) -> str | None:
    """``"yes"``, ``"no"`` or None for a (grammar) transcript; the first matching word decides."""
    for word in re.findall(r"[a-z']+", text.lower()):
        if word in _YES:
            return "yes"
        if word in _NO:
            return "no"
    return None


# -- worker side -------------------------------------------------------------------------------------


@dataclass
class _DecodeState:
    decoder: Any
    grammar: bool = False
    in_utt: bool = False
    audio: bytearray = field(default_factory=bytearray)
    last_partial: str = ""


class SphinxEngine:
    """Worker-side decoders. Options: ``hmm``/``lm``/``dict`` paths to override the bundled model."""

    def __init__(self, options: dict[str, Any]) -> None:
        try:
            from pocketsphinx import Decoder
        except ImportError as exc:
            raise MissingExtra("sphinx", "sphinx", "pocketsphinx") from exc
        self._Decoder = Decoder
        self._config = {k: str(options[k]) for k in ("hmm", "lm", "dict") if options.get(k)}
        self._idle: list[Any] = [self._new_decoder()]  # load the model now, not on the first call
        self._streams: dict[str, _DecodeState] = {}
        self._grammars: dict[int, set[str]] = {}

    def _new_decoder(self) -> Any:
        return self._Decoder(samprate=SAMPLE_RATE, loglevel="FATAL", **self._config)

    def _select(self, decoder: Any, grammar: str | None) -> None:
        if not grammar:
            decoder.activate_search("_default")
            return
        jsgf = GRAMMARS.get(grammar, grammar)
        name = "g" + hashlib.sha1(jsgf.encode()).hexdigest()[:12]
        loaded = self._grammars.setdefault(id(decoder), set())
        if name not in loaded:
            decoder.add_jsgf_string(name, jsgf)
            loaded.add(name)
        decoder.activate_search(name)

    @staticmethod
    def _decode_whole(decoder: Any, pcm16: bytes) -> Any:
        """Decode a whole utterance with batch normalisation, padded with silence on both sides (a
        clipped word may otherwise never reach the grammar's final state)."""
        pad = bytes(int(PAD_SECONDS * SAMPLE_RATE) * 2)
        decoder.start_utt()
        decoder.process_raw(pad + pcm16 + pad, False, True)
        decoder.end_utt()
        return decoder.hyp()

    def stream_open(self, sid: str, rate: int, options: dict[str, Any]) -> None:
        if rate != SAMPLE_RATE:
            raise ValueError(f"pocketsphinx decodes {SAMPLE_RATE} Hz audio, not {rate}")
        decoder = self._idle.pop() if self._idle else self._new_decoder()
        self._select(decoder, options.get("grammar"))
        self._streams[sid] = _DecodeState(decoder, grammar=bool(options.get("grammar")))

    def stream_push(self, sid: str, pcm16: bytes) -> str | None:
        st = self._streams[sid]
        if not st.in_utt:
            st.decoder.start_utt()
            st.in_utt = True
        st.decoder.process_raw(pcm16, False, False)
        if len(st.audio) + len(pcm16) <= MAX_BUFFER_SECONDS * 2 * SAMPLE_RATE:
            st.audio += pcm16
        hyp = st.decoder.hyp()
        text = hyp.hypstr if hyp is not None else ""
        if text and text != st.last_partial:
            st.last_partial = text
            return text
        return None

    def stream_finish(self, sid: str) -> dict[str, Any]:
        st = self._streams[sid]
        if not st.in_utt:
            return {"text": "", "language": "en"}
        st.decoder.end_utt()
        st.in_utt = False
        hyp = st.decoder.hyp()
        empty = hyp is None or not hyp.hypstr
        short = 0 < len(st.audio) <= RETRY_UNDER_SECONDS * 2 * SAMPLE_RATE
        if st.audio and (st.grammar or (empty and short)):
            # grammar mode: a whole-utterance pass costs ~1% of real time and finds the complete phrase
            # where the streaming pass may stop on a prefix ("that is" for "that is correct")
            hyp = self._decode_whole(st.decoder, bytes(st.audio))
        st.audio = bytearray()
        st.last_partial = ""
        text = hyp.hypstr if hyp is not None else ""
        confidence = round(float(hyp.prob), 4) if hyp is not None and text else None
        return {"text": text, "confidence": confidence, "language": "en"}

    def stream_close(self, sid: str) -> None:
        st = self._streams.pop(sid, None)
        if st is None:
            return
        if st.in_utt:
            st.decoder.end_utt()
        if len(self._idle) < IDLE_DECODERS:
            self._idle.append(st.decoder)
        else:
            self._grammars.pop(id(st.decoder), None)

    def transcribe(self, pcm16: bytes, rate: int, options: dict[str, Any]) -> dict[str, Any]:
        """A whole utterance at once (whole-utterance normalisation: the most accurate mode)."""
        if rate != SAMPLE_RATE:
            pcm16 = resample(pcm16, rate, SAMPLE_RATE)
        sid = "_utterance"
        self.stream_open(sid, SAMPLE_RATE, options)
        try:
            hyp = self._decode_whole(self._streams[sid].decoder, pcm16)
        finally:
            self.stream_close(sid)
        text = hyp.hypstr if hyp is not None else ""
        confidence = round(float(hyp.prob), 4) if hyp is not None and text else None
        return {"text": text, "confidence": confidence, "language": "en"}


# -- parent side -------------------------------------------------------------------------------------


def _usage(seconds: float, started: float) -> Usage:
    return Usage(
        kind="stt",
        provider=PROVIDER,
        model=MODEL,
        audio_seconds=round(seconds, 3),
        latency_ms=round((time.monotonic() - started) * 1000.0, 1),
    )


class SphinxStream:
    """:class:`TranscriberStream` for one call; utterances follow one another until :meth:`close`."""

    def __init__(self, channel: StreamChannel, sample_rate: int) -> None:
        self._channel = channel
        self._rate = sample_rate
        self._resampler = (
            Resampler(sample_rate, SAMPLE_RATE) if sample_rate != SAMPLE_RATE else None
        )
        self._bytes = 0  # of input audio in the current utterance
        self._started = time.monotonic()

    def push(self, pcm16: bytes) -> None:
        if not self._bytes:
            self._started = time.monotonic()
        self._bytes += len(pcm16)
        audio = self._resampler.process(pcm16) if self._resampler else pcm16
        self._channel.push(audio)

    def results(self, timeout: float) -> Iterator[Transcript]:
        text = self._channel.next_partial(timeout)
        while text:
            yield Transcript(text, is_final=False, language="en")
            text = self._channel.next_partial(0)

    def finish(self, timeout: float) -> Transcript | None:
        seconds = self._bytes / (2.0 * self._rate)
        reply = self._channel.finish(timeout)
        if self._resampler:
            self._resampler.reset()
        self._bytes = 0
        text = str(reply.get("text") or "")
        if not text:
            return None
        return Transcript(text, True, reply.get("confidence"), "en", _usage(seconds, self._started))

    def close(self) -> None:
        self._channel.close()


class SphinxTranscriber:
    """Streaming (and utterance-at-a-time) STT over a pool with ``engine="sphinx"``.

    ``grammar``: None for free dictation, ``"yesno"`` for the built-in yes/no menu grammar, or JSGF text.
    """

    name = PROVIDER
    model = MODEL

    def __init__(self, pool: WorkerPool, grammar: str | None = None) -> None:
        self.pool = pool
        self.grammar = grammar

    def _options(self) -> dict[str, Any]:
        return {"grammar": self.grammar} if self.grammar else {}

    def open_stream(self, sample_rate: int) -> SphinxStream:
        channel = self.pool.open_stream(SAMPLE_RATE, self._options())
        return SphinxStream(channel, sample_rate)

    def transcribe(self, pcm16: bytes, sample_rate: int, *, timeout: float) -> Transcript:
        if sample_rate < 8000 or len(pcm16) % 2:
            raise ProviderError(f"bad audio at {sample_rate} Hz", provider=PROVIDER, kind="stt")
        started = time.monotonic()
        audio = resample(pcm16, sample_rate, SAMPLE_RATE) if sample_rate != SAMPLE_RATE else pcm16
        reply = self.pool.transcribe(audio, SAMPLE_RATE, self._options(), timeout=timeout)
        seconds = len(pcm16) / (2.0 * sample_rate)
        return Transcript(
            str(reply.get("text") or ""),
            True,
            reply.get("confidence"),
            "en",
            _usage(seconds, started),
        )


@register("stt", PROVIDER, model=MODEL)
def from_config(config: Mapping[str, Any]) -> SphinxTranscriber:
    """Registry factory: ``{"provider": "custom-transcriber", "model": "pocketsphinx-en-us"}`` (optional
    ``grammar``: ``"yesno"`` or JSGF text) over the process-wide sphinx pool, started on first use."""
    if importlib.util.find_spec("pocketsphinx") is None:
        raise MissingExtra("sphinx", "sphinx", "pocketsphinx")
    from esl_controller.pipeline.workers import PoolConfig, shared_pool

    pool = shared_pool(PoolConfig(engine="sphinx"))
    return SphinxTranscriber(pool, grammar=config.get("grammar") or None)


def start_pool(size: int = 0, *, timeout: float = 30.0, **options: Any) -> WorkerPool:
    """Start (and wait for) a pocketsphinx worker pool; ``options`` go to :class:`SphinxEngine`."""
    from esl_controller.pipeline.workers import PoolConfig, WorkerPool

    config = PoolConfig(engine="sphinx", options=options, size=size)
    return WorkerPool(config).start(timeout=timeout)
