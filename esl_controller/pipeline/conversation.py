"""One call's voice pipeline (I/O): caller audio -> VAD -> STT -> model -> sentences -> TTS -> the port.

:class:`Conversation` implements :class:`~esl_controller.pipeline.ports.Pipeline`. Its greenlets:

* the caller's transport greenlet runs :meth:`Conversation.feed` (VAD only: cheap, never blocks);
* one STT greenlet transcribes endpointed utterances in order (a bounded queue; a full queue drops and counts);
* one turn greenlet at a time speaks: a model reply (streamed, each sentence synthesized and played as soon as
  it is complete), a ``say``, an idle message, the first message or an apology; barge-in kills it;
* one timer greenlet ticks the turn-taking state machine at its next deadline (idle, silence, max duration).

Decisions come from :class:`~esl_controller.pipeline.turns.TurnTaker` (pure); this module carries them out and
reports everything through ``port.notify`` (see ``ports.PipelineNotice`` for the kinds). Function tools other
than ``endCall``, ``transferCall`` and ``dtmf`` go to the ``tool_handler`` hook (``(name, arguments, call_id,
tool) -> result text``); without one they are answered with an error result.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import gevent
from gevent.event import Event
from gevent.queue import Empty, Full, Queue

from esl_controller.calls.control import (
    AddMessageCommand,
    ChannelControlCommand,
    HandoffCommand,
    SayCommand,
)
from esl_controller.media.codecs import FrameChunker, Resampler
from esl_controller.media.vad import (
    ConfidenceFn,
    SpeechEnded,
    SpeechStarted,
    VadParams,
    VoiceActivityDetector,
)
from esl_controller.pipeline import turns as T
from esl_controller.pipeline.assistant import AssistantConfig
from esl_controller.pipeline.history import History, builtin_variables, truncate_to_played
from esl_controller.pipeline.ports import MediaPort, PipelineNotice
from esl_controller.pipeline.providers.base import (
    ChatModel,
    ChatRequest,
    ModelDone,
    ProviderError,
    Synthesizer,
    TextDelta,
    ToolCallDelta,
    Transcriber,
    Usage,
)
from esl_controller.waits import IDLE_POLL_SECONDS

log = logging.getLogger("esl_controller.pipeline")

APOLOGY = "I'm sorry, I'm having technical difficulties. Please call back later."
BUILTIN_TOOLS = ("endCall", "transferCall", "dtmf")
_END = object()
MAX_PENDING = 16  # queued says / add-message replies waiting for the current turn
PLAYED_POLL_SECONDS = 0.02  # how often a port that cannot say how long its speech lasts is asked
PLAYED_MAX_PAUSE_SECONDS = 0.5  # the longest look away while speech plays (flags are re-read then)
ToolHandler = Callable[[str, dict[str, Any], str, Mapping[str, Any] | None], str]


@dataclass(frozen=True)
class Timeouts:
    stt: float = 10.0
    llm: float = 20.0
    tts: float = 10.0
    #: longest wait for queued speech to finish playing
    playback: float = 120.0
    max_tool_rounds: int = 3


@dataclass
class _Turn:
    id: int
    kind: str  # first | reply | say | idle | end | apology
    interruptible: bool = True
    end_after: str | None = None
    timing: dict[str, float] = field(default_factory=dict)
    sentences: list[tuple[str, float]] = field(default_factory=list)
    committed: int = 0  # sentences already written to the history
    started_speaking: bool = False
    stage: str = "llm"
    done: bool = False
    queued: float = 0.0  # seconds of this turn's audio handed to the port
    cursor: float = 0.0  # monotonic time the queued audio should finish playing
    run_offset: float = 0.0  # seconds of the turn played before the port's current utterance began


@dataclass
class HandoffTarget:
    """What a handoff resolver returns: the next assistant's config, providers and tool runner.
    ``info`` goes into the ``handoff`` notice (assistantId, assistantName, ...)."""

    config: AssistantConfig
    stt: Transcriber | None
    llm: ChatModel
    tts: Synthesizer
    tool_runner: Any = None
    info: dict[str, Any] = field(default_factory=dict)


#: (HandoffCommand) -> HandoffTarget; raises LookupError/ValueError when the assistant is unusable
HandoffResolver = Callable[[HandoffCommand], HandoffTarget]


class Conversation:
    """The pipeline of one call. Build, :meth:`start`, :meth:`feed` audio, :meth:`stop`."""

    def __init__(
        self,
        assistant: AssistantConfig | Mapping[str, Any],
        port: MediaPort,
        *,
        stt: Transcriber | None,
        llm: ChatModel,
        tts: Synthesizer,
        overrides: Mapping[str, Any] | None = None,
        call_id: str = "",
        clock: Callable[[], float] | None = None,
        epoch_ms: float | None = None,
        vad_confidence: ConfidenceFn | None = None,
        tool_handler: ToolHandler | None = None,
        timeouts: Timeouts | None = None,
        tool_runner: Any = None,
    ) -> None:
        if not isinstance(assistant, AssistantConfig):
            assistant = AssistantConfig.from_dict(assistant, overrides)
        self.config = assistant
        self.port = port
        self.stt, self.llm, self.tts = stt, llm, tts
        self.call_id = call_id
        self.rate = port.sample_rate
        t0 = time.monotonic()
        self.clock = clock or (lambda: time.monotonic() - t0)
        self.timeouts = timeouts or Timeouts()
        self.tool_handler = tool_handler
        #: a ``pipeline.tools.runner.ToolRunner``: when set it defines and runs every tool, built-ins included
        self.tool_runner = tool_runner
        #: resolves a handoff's destination to the next assistant (set by the call's pipeline factory)
        self.handoff_resolver: HandoffResolver | None = None
        self.handoffs = 0
        variables = {**builtin_variables(), **dict(assistant.variables)}
        self.history = History(time.time() * 1000.0 if epoch_ms is None else epoch_ms, variables)
        for message in assistant.messages:
            self.history.add_message(
                str(message.get("role")), str(message.get("content") or ""), 0.0
            )
        self.turns = T.TurnTaker(T.TurnPolicy.from_assistant(assistant), start=0.0)
        self.vad = VoiceActivityDetector(
            self.rate,
            VadParams.from_plan(dict(assistant.start_speaking_plan)),
            confidence=vad_confidence,
        )
        self._chunker = FrameChunker(self.rate)
        self._utterances: Queue = Queue(maxsize=8)
        # streaming STT: one stream per utterance, fed as the caller speaks (partials can barge in)
        self.streaming = stt is not None and callable(getattr(stt, "open_stream", None))
        self._preroll: deque[bytes] = deque(maxlen=25)  # 0.5 s: covers the VAD's start and pre-roll
        self._listen_q: Queue | None = None
        self._listener: gevent.Greenlet | None = None
        self.frames_dropped = 0
        self._current: _Turn | None = None
        self._greenlet: gevent.Greenlet | None = None
        # a barge-in under way: stop_playback yields (killAudio, uuid_break), and meanwhile the turn must
        # not take "not playing" for "played to the end" and commit the whole utterance
        self._interrupting = False
        self._pending: deque[tuple[str, Any]] = deque()
        self._turn_seq = 0
        self._user_turns = 0
        self._wake = Event()
        self._greenlets: list[gevent.Greenlet] = []
        self.assistant_muted = False
        self.customer_muted = False
        self.started = False
        self.stopped = False
        self.ended: str | None = None
        self.utterances_dropped = 0
        self.timings: list[dict[str, float]] = []

    @classmethod
    def from_assistant(
        cls,
        assistant: Mapping[str, Any],
        port: MediaPort,
        *,
        overrides: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Conversation:
        """Build the providers from the assistant's ``model``/``voice``/``transcriber`` blocks (the registry;
        embedded defaults when a block is absent) and the conversation. Raises ``UnknownProvider``."""
        from esl_controller.pipeline.providers.registry import build_providers

        config = AssistantConfig.from_dict(assistant, overrides)
        p = build_providers(config.model or None, config.voice or None, config.transcriber or None)
        return cls(config, port, stt=p.stt, llm=p.llm, tts=p.tts, **kwargs)

    # ------------------------------------------------------------------ Pipeline API

    def start(self) -> None:
        if self.started:
            return
        self.started = True
        self._greenlets = [gevent.spawn(self._stt_loop), gevent.spawn(self._timer_loop)]
        self._notify("ready", {})
        cfg = self.config
        if cfg.first_message_mode == "assistant-speaks-first" and cfg.first_message:
            self._say_first()
        elif cfg.first_message_mode == "assistant-speaks-first-with-model-generated-message":
            self._start(_Turn(self._next_id(), "first", cfg.first_message_interruptions_enabled))

    def feed(self, caller_pcm16: bytes, at: float) -> None:
        if self.stopped or self.customer_muted:
            return
        for frame in self._chunker.push(caller_pcm16):
            events = self.vad.process(frame)
            if self.streaming:
                self._preroll.append(frame)
                if self._listen_q is not None:
                    self._listen_frame(frame)
            for event in events:
                if isinstance(event, SpeechStarted):
                    if self.streaming:
                        self._open_listener()
                    self._user_turns += 1
                    self._notify(
                        "speech",
                        {"status": "started", "role": "user", "turn": self._user_turns - 1},
                    )
                    self._apply(T.CallerStarted(self.clock()))
                elif isinstance(event, SpeechEnded):
                    self._caller_stopped(event)
            if self.turns.assistant_busy and self.vad.speaking:  # the cheap test first
                self._apply(T.CallerVoiced(self.clock(), self.vad.voiced_seconds))

    def control(self, command: Any) -> None:
        if self.stopped:
            return
        if isinstance(command, SayCommand):
            end_after = (
                "assistant-ended-call-after-message-spoken"
                if command.end_call_after_spoken
                else None
            )
            turn = _Turn(self._next_id(), "say", command.interruptions_enabled, end_after)
            if command.interrupt_assistant and self._current is not None:
                self._interrupt("say")
            self._queue_or_start(turn, command.content)
        elif isinstance(command, AddMessageCommand):
            log_item = self.history.add_message(command.role, command.content, self.clock())
            self._notify("message", log_item)
            if command.trigger_response and command.role != "assistant":
                self._queue_or_start(_Turn(self._next_id(), "reply"), None)
        elif isinstance(command, ChannelControlCommand):
            self._channel_control(command.name)
        elif isinstance(command, HandoffCommand):
            self._greenlets.append(gevent.spawn(self._handoff, command, True))
        else:
            log.debug("call %s: control %s is the session's", self.call_id, type(command).__name__)

    def stop(self, timeout: float = 5.0) -> None:
        self.stopped = True
        self._wake.set()
        group = [g for g in [self._greenlet, *self._greenlets] if g is not None]
        gevent.killall([g for g in group if g is not gevent.getcurrent()], timeout=timeout)
        # a killed greenlet keeps its GreenletExit, whose traceback holds this conversation: let go of
        # them, so an ended call is freed at once instead of waiting for a full garbage collection
        self._greenlet = None
        self._greenlets = []

    # ------------------------------------------------------------------ caller side

    def _caller_stopped(self, event: SpeechEnded) -> None:
        now = self.clock()
        self._notify("speech", {"status": "stopped", "role": "user", "turn": self._user_turns - 1})
        self._apply(T.CallerStopped(now))
        if self.streaming:
            q, self._listen_q = self._listen_q, None
            if q is not None:
                q.put((_END, now, event.speech_seconds))  # room is kept for the marker
            return
        try:
            self._utterances.put_nowait((event.audio, now, event.speech_seconds))
        except Full:
            self.utterances_dropped += 1
            log.warning("call %s: STT behind, utterance dropped", self.call_id)

    def _stt_loop(self) -> None:
        while not self.stopped:
            try:
                audio, detected, seconds = self._utterances.get(timeout=IDLE_POLL_SECONDS)
            except Empty:
                continue
            if self.stt is None:
                log.warning("call %s: no transcriber; caller speech ignored", self.call_id)
                continue
            started = self.clock()
            try:
                result = self._transcribe_once_more_if_retryable(audio)
            except ProviderError as exc:
                self._fail(exc)
                continue
            except Exception as exc:  # noqa: BLE001 - a provider bug becomes a pipeline error
                log.exception("call %s: transcriber failed", self.call_id)
                self._fail(ProviderError(str(exc), provider=self.stt.name, kind="stt"))
                continue
            self._usage(result.usage)
            self._on_final(result.text, detected, seconds, started)

    def _transcribe_once_more_if_retryable(self, audio: bytes):
        """Transcribe an utterance; a retryable failure (a worker that died, a timeout, a 5xx) is tried once more
        before it becomes a pipeline error, so one lost worker does not end the call."""
        assert self.stt is not None
        try:
            return self.stt.transcribe(audio, self.rate, timeout=self.timeouts.stt)
        except ProviderError as exc:
            if not exc.retryable or self.stopped:
                raise
            log.warning(
                "call %s: transcriber failed (%s); trying the utterance once more",
                self.call_id,
                exc,
            )
            return self.stt.transcribe(audio, self.rate, timeout=self.timeouts.stt)

    # ------------------------------------------------------------------ streaming STT

    def _open_listener(self) -> None:
        q: Queue = Queue(maxsize=int(32.0 / 0.02))  # the VAD cuts utterances at 30 s
        for frame in self._preroll:
            q.put_nowait(frame)
        self._listen_q = q
        self._listener = gevent.spawn(self._listen, q, self._listener)
        self._greenlets.append(self._listener)
        self._greenlets = [g for g in self._greenlets if not g.dead]

    def _listen_frame(self, frame: bytes) -> None:
        assert self._listen_q is not None
        if self._listen_q.qsize() >= self._listen_q.maxsize - 1:  # keep room for the end marker
            self.frames_dropped += 1
            return
        self._listen_q.put_nowait(frame)

    def _listen(self, q: Queue, previous: gevent.Greenlet | None) -> None:
        """One utterance through a streaming transcriber: push audio, report partials, then the final."""
        assert self.stt is not None
        stream = None
        try:
            stream = self.stt.open_stream(self.rate)
            heard = ""
            while not self.stopped:
                try:
                    item = q.get(timeout=1.0)
                except Empty:
                    continue
                if isinstance(item, tuple):
                    _, detected, seconds = item
                    started = self.clock()
                    result = stream.finish(timeout=self.timeouts.stt)
                    if previous is not None:  # finals go out in utterance order
                        previous.join(timeout=self.timeouts.stt)
                    usage = getattr(result, "usage", None)
                    if usage is None and callable(getattr(stream, "usage", None)):
                        usage = stream.usage()
                    self._usage(usage)
                    self._on_final(
                        result.text if result is not None else heard, detected, seconds, started
                    )
                    return
                stream.push(item)
                for partial in stream.results(timeout=0):
                    text = partial.text.strip()
                    if text and text != heard:
                        heard = text
                        self._notify(
                            "transcript",
                            {"role": "user", "transcriptType": "partial", "transcript": text},
                        )
                        self._apply(T.CallerPartial(self.clock(), text))
        except ProviderError as exc:
            self._fail(exc)
        except Exception as exc:  # noqa: BLE001 - a provider bug becomes a pipeline error
            log.exception("call %s: streaming transcriber failed", self.call_id)
            self._fail(ProviderError(str(exc), provider=self.stt.name, kind="stt"))
        finally:
            if stream is not None:
                _close(stream)

    def _on_final(self, text: str, detected: float, seconds: float, started: float) -> None:
        """The caller's final transcript of one utterance: the turn-taking decides what follows."""
        final = self.clock()
        text = text.strip()
        if not text or self.stopped:
            return
        self._notify("transcript", {"role": "user", "transcriptType": "final", "transcript": text})
        timing = {"endOfSpeech": detected, "sttStart": started, "sttFinal": final}
        for decision in self.turns.handle(T.CallerText(final, text)):
            if isinstance(decision, T.Respond):
                self._notify(
                    "message",
                    self.history.add_user(text, max(0.0, detected - seconds), detected),
                )
                turn = _Turn(self._next_id(), "reply", timing=dict(timing))
                self._start(turn)
            else:
                self._execute(decision)

    # ------------------------------------------------------------------ decisions

    def _apply(self, event: T.TurnEvent) -> None:
        for decision in self.turns.handle(event):
            self._execute(decision)
        if isinstance(event, (T.CallerStopped, T.AssistantDone, T.AssistantBusy, T.CallerStarted)):
            self._wake.set()

    def _execute(self, decision: T.Decision) -> None:
        if isinstance(decision, T.Interrupt):
            self._interrupt(decision.reason)
        elif isinstance(decision, T.Respond):
            self._start(_Turn(self._next_id(), "reply"))
        elif isinstance(decision, T.SpeakIdle):
            self._start(_Turn(self._next_id(), "idle"), decision.text)
        elif isinstance(decision, T.EndCall):
            self._end_call(decision.reason, decision.message)
        elif isinstance(decision, T.Ignore):
            log.debug(
                "call %s: caller %r ignored (%s)", self.call_id, decision.text, decision.reason
            )

    def _timer_loop(self) -> None:
        while not self.stopped:
            deadline = self.turns.next_deadline()
            wait = IDLE_POLL_SECONDS
            if deadline is not None:
                wait = min(wait, max(0.005, deadline - self.clock()))
            self._wake.wait(timeout=wait)
            self._wake.clear()
            if not self.stopped:
                self._apply(T.Tick(self.clock()))

    # ------------------------------------------------------------------ turns

    def _next_id(self) -> int:
        self._turn_seq += 1
        return self._turn_seq

    def _say_first(self) -> None:
        cfg = self.config
        if re.match(r"^https?://\S+$", cfg.first_message.strip()):
            log.warning(
                "call %s: audio-URL first messages are not supported; skipped", self.call_id
            )
            return
        turn = _Turn(self._next_id(), "first", cfg.first_message_interruptions_enabled)
        self._queue_or_start(turn, self.history.render(cfg.first_message))

    def _queue_or_start(self, turn: _Turn, text: str | None) -> None:
        if self._current is not None:
            if len(self._pending) >= MAX_PENDING:
                dropped, _ = self._pending.popleft()
                log.warning(
                    "call %s: too many queued turns; dropped a %s", self.call_id, dropped.kind
                )
            self._pending.append((turn, text))
        else:
            self._start(turn, text)

    def _start(self, turn: _Turn, text: str | None = None) -> None:
        """Run a turn: speak ``text`` as is, or ask the model when ``text`` is None."""
        if self.stopped or (self.ended and turn.kind not in ("end", "apology")):
            return
        if self._current is not None:
            self._cancel()
        self._current = turn
        self.turns.handle(T.AssistantBusy(self.clock(), turn.interruptible, turn.end_after))
        self._wake.set()
        self._greenlet = gevent.spawn(self._run_turn, turn, text)

    def _cancel(self) -> None:
        g, self._greenlet = self._greenlet, None
        self._current = None
        if g is not None and g is not gevent.getcurrent():
            g.kill(block=True, timeout=1.0)

    def _run_turn(self, turn: _Turn, text: str | None) -> None:
        try:
            self._backoff()
            if text is not None:
                turn.stage = "tts"
                self._speak(turn, text)
            else:
                self._model_turn(turn)
            self._finish(turn)
        except ProviderError as exc:
            self._fail(exc, turn)
        except gevent.GreenletExit:
            raise
        except Exception as exc:  # noqa: BLE001 - a provider bug becomes a pipeline error
            log.exception("call %s: turn %d failed", self.call_id, turn.id)
            provider = self.tts.name if turn.stage == "tts" else self.llm.name
            self._fail(ProviderError(str(exc), provider=provider, kind=turn.stage), turn)

    def _backoff(self) -> None:
        """stopSpeakingPlan.backoffSeconds: after a barge-in, wait that long before speaking again."""
        if self.turns.interrupted_at is None:
            return
        wait = (
            self.turns.interrupted_at
            + self.config.stop_speaking_plan.backoff_seconds
            - self.clock()
        )
        if wait > 0:
            gevent.sleep(min(wait, self.config.stop_speaking_plan.backoff_seconds))

    def _model_turn(self, turn: _Turn) -> None:
        for _round in range(self.timeouts.max_tool_rounds):
            request = ChatRequest(
                messages=self.history.openai_messages(),
                tools=self._tool_defs(),
                temperature=self.config.temperature,
                max_tokens=self.config.max_tokens,
                metadata={"variables": self.history.variables, "callId": self.call_id},
            )
            turn.stage = "llm"
            turn.timing.setdefault("modelRequest", self.clock())
            chunker = T.SentenceChunker()
            parts: dict[int, dict[str, str]] = {}
            stream = self.llm.stream(request, timeout=self.timeouts.llm)
            try:
                self._consume(turn, stream, chunker, parts)
            finally:
                _close(
                    stream
                )  # a barge-in (GreenletExit) or an error releases the provider's connection
            for sentence in chunker.flush():
                self._speak(turn, sentence)
            if not parts or not self._run_tools(turn, [parts[i] for i in sorted(parts)]):
                return

    def _consume(
        self, turn: _Turn, stream: Any, chunker: T.SentenceChunker, parts: dict[int, dict[str, str]]
    ) -> None:
        for chunk in stream:
            if isinstance(chunk, TextDelta):
                turn.timing.setdefault("modelFirstToken", self.clock())
                for sentence in chunker.push(chunk.text):
                    self._speak(turn, sentence)
                    turn.stage = "llm"
            elif isinstance(chunk, ToolCallDelta):
                turn.timing.setdefault("modelFirstToken", self.clock())
                part = parts.setdefault(chunk.index, {"id": "", "name": "", "arguments": ""})
                part["id"] = part["id"] or chunk.id
                part["name"] = part["name"] or chunk.name
                part["arguments"] += chunk.arguments
            elif isinstance(chunk, ModelDone):
                self._usage(chunk.usage)

    def _speak(self, turn: _Turn, text: str) -> None:
        text = text.strip()
        if not text or self.stopped:
            return
        turn.stage = "tts"
        self.turns.handle(T.AssistantText(self.clock(), text))
        turn.timing.setdefault("ttsRequest", self.clock())
        chunks = self.tts.synthesize(text, sample_rate=self.rate, timeout=self.timeouts.tts)
        turn.sentences.append(
            (text, 0.0)
        )  # its duration grows as audio is played (a barge-in may cut it)
        try:
            self._play_chunks(turn, text, chunks, len(turn.sentences) - 1)
        finally:
            _close(chunks)
        self._usage(self.tts.last_usage())

    def _play_chunks(self, turn: _Turn, text: str, chunks: Any, index: int) -> None:
        resampler: Resampler | None = None
        seconds = 0.0
        first = True
        for chunk in chunks:
            turn.timing.setdefault("ttsFirstByte", self.clock())
            pcm = chunk.pcm16
            if chunk.sample_rate != self.rate:
                resampler = resampler or Resampler(chunk.sample_rate, self.rate)
                pcm = resampler.process(pcm)
            if not pcm:
                continue
            duration = len(pcm) / (2.0 * self.rate)
            seconds += duration
            turn.sentences[index] = (text, seconds)
            if self.assistant_muted:
                continue
            now = time.monotonic()
            if now > turn.cursor + 0.01:  # the port went idle: its next utterance starts here
                turn.run_offset = turn.queued
                turn.cursor = now
            turn.cursor += duration
            turn.queued += duration
            self.port.play(pcm, text=text if first else "")
            first = False
            if not turn.started_speaking:
                turn.started_speaking = True
                turn.timing.setdefault("firstAudioOut", self.clock())
                self._notify("speech", {"status": "started", "role": "assistant", "turn": turn.id})

    def _wait_played(self) -> None:
        """Until the caller has heard the speech (or a barge-in under way has cut it off). A port that
        knows how long that takes at least (``unplayed_seconds``) is looked at once then, not every 20 ms."""
        deadline = time.monotonic() + self.timeouts.playback
        unplayed = getattr(self.port, "unplayed_seconds", None)
        while (
            (self._interrupting or self.port.playing())
            and time.monotonic() < deadline
            and not self.stopped
        ):
            pause = PLAYED_POLL_SECONDS
            if unplayed is not None and not self._interrupting:
                pause = min(PLAYED_MAX_PAUSE_SECONDS, max(pause, unplayed()))
            gevent.sleep(pause)

    def _commit(self, turn: _Turn, text: str | None = None, end: float | None = None) -> None:
        """Write the turn's not yet committed speech to the history (``text`` overrides it)."""
        if text is None:
            text = " ".join(s for s, _ in turn.sentences[turn.committed :]).strip()
        turn.committed = len(turn.sentences)
        if not text:
            return
        now = self.clock() if end is None else end
        start = turn.timing.get("firstAudioOut", now)
        self._notify("message", self.history.add_assistant(text, start, now))

    def _finish(self, turn: _Turn) -> None:
        self._wait_played()
        whole = " ".join(s for s, _ in turn.sentences).strip()
        self._commit(turn)
        self._close_turn(turn, whole)
        self._done_next(turn)

    def _done_next(self, turn: _Turn) -> None:
        if self._current is turn:
            self._current = None
            self._greenlet = None
        self._apply(T.AssistantDone(self.clock()))
        if self._current is None and self._pending and not self.ended:
            nxt, text = self._pending.popleft()
            self._start(nxt, text)

    def _close_turn(self, turn: _Turn, heard: str) -> None:
        if turn.done:
            return
        turn.done = True
        if heard:
            self._notify(
                "transcript", {"role": "assistant", "transcriptType": "final", "transcript": heard}
            )
        if turn.started_speaking:
            self._notify("speech", {"status": "stopped", "role": "assistant", "turn": turn.id})
        if turn.kind == "reply" or "firstAudioOut" in turn.timing:
            timing = {"turn": turn.id, **{k: round(v, 4) for k, v in turn.timing.items()}}
            self.timings.append(timing)
            self._notify("turn-timing", timing)

    def _interrupt(self, reason: str) -> None:
        turn = self._current
        self._interrupting = True
        try:
            played = float(self.port.stop_playback())
        except Exception:  # noqa: BLE001 - the port is the session's; never let it kill the caller's greenlet
            log.exception("call %s: stop_playback failed", self.call_id)
            played = 0.0
        try:
            self._cancel()
        finally:
            self._interrupting = False
        if turn is None:
            return
        # the port counts from the start of its current utterance; earlier runs of this turn were heard whole
        heard_total = min(turn.queued, turn.run_offset + played)
        committed = sum(seconds for _, seconds in turn.sentences[: turn.committed])
        pending = turn.sentences[turn.committed :]
        heard, truncated = truncate_to_played(pending, max(0.0, heard_total - committed))
        self._commit(turn, heard)
        self._notify(
            "interrupted",
            {
                "turn": turn.id,
                "playedMs": round(heard_total * 1000),
                "truncatedTo": heard,
                "reason": reason,
            },
        )
        self._close_turn(turn, heard)
        if self.turns.end_after == "assistant-said-end-call-phrase":
            self.turns.end_after = None  # the goodbye was cut off: the call goes on

    # ------------------------------------------------------------------ tools

    def _tool_defs(self) -> list[dict[str, Any]]:
        if self.tool_runner is not None:
            return list(self.tool_runner.openai_tools())
        out = []
        for tool in self.config.tools:
            kind = tool.get("type")
            fn = tool.get("function")
            if isinstance(fn, Mapping) and fn.get("name"):
                out.append({"type": "function", "function": dict(fn)})
            elif kind in BUILTIN_TOOLS:
                out.append(
                    {
                        "type": "function",
                        "function": {
                            "name": kind,
                            "parameters": {"type": "object", "properties": {}},
                        },
                    }
                )
        return out

    def _find_tool(self, name: str) -> Mapping[str, Any] | None:
        for tool in self.config.tools:
            fn = tool.get("function") or {}
            if tool.get("type") == name or fn.get("name") == name:
                return tool
        return None

    def _run_tools(self, turn: _Turn, calls: list[dict[str, str]]) -> bool:
        """Carry out tool calls; True when the model should be asked again with their results."""
        now = self.clock()
        self._commit(turn)
        openai_calls = [
            {
                "id": c["id"],
                "type": "function",
                "function": {"name": c["name"], "arguments": c["arguments"]},
            }
            for c in calls
        ]
        self._notify("message", self.history.add_tool_calls(openai_calls, "", now))
        if self.tool_runner is not None:
            return self._run_with_runner(turn, calls)
        again = False
        for call in calls:
            name = call["name"]
            try:
                args = json.loads(call["arguments"] or "{}")
            except ValueError:
                args = {}
            if not isinstance(args, dict):
                args = {}
            tool = self._find_tool(name)
            if name == "endCall":
                result = "Ending the call."
                if not turn.sentences and self.config.end_call_message:
                    self._speak(turn, self.history.render(self.config.end_call_message))
                turn.end_after = "assistant-ended-call"
                self.turns.mark_end_after("assistant-ended-call")
            elif name == "transferCall":
                result = self._transfer(turn, args, tool)
            elif name == "dtmf":
                digits = str(args.get("digits") or "")
                self._notify("dtmf", {"digits": digits})
                result = f"Sent {digits}."
            elif self.tool_handler is not None:
                result = self.tool_handler(name, args, call["id"], tool)
                again = True
            else:
                log.warning("call %s: no handler for tool %r", self.call_id, name)
                result = f"Error: tool {name} is not available."
            self._notify(
                "message", self.history.add_tool_result(call["id"], name, str(result), self.clock())
            )
        return again

    def _run_with_runner(self, turn: _Turn, calls: list[dict[str, str]]) -> bool:
        """Tool calls through the ToolRunner: its spoken messages, results, hints and side effects."""

        def speak(message: Any) -> None:
            self._speak(turn, self.history.render(message.content))
            if message.blocking:
                self._wait_played()

        again = False
        for c in calls:
            out = self.tool_runner.run(
                {"id": c["id"], "name": c["name"], "arguments": c["arguments"]},
                speak=speak,
                variables=self.history.variables,
            )
            self._notify(
                "message",
                self.history.add_tool_result(c["id"], c["name"], out.content, self.clock()),
            )
            for hint in out.system_messages:
                self._notify("message", self.history.add_system(hint, self.clock()))
            if out.notices:
                self._wait_played()
            for n in out.notices:
                if n.kind == "end-call":
                    reason = str(n.data.get("reason") or "assistant-ended-call")
                    turn.end_after = reason
                    self.turns.mark_end_after(reason)
                elif n.kind == "handoff":  # the runner said the announcement
                    dest = dict(n.data.get("destination") or {})
                    self._handoff(
                        HandoffCommand(
                            assistant_id=dest.get("assistantId"),
                            assistant_name=dest.get("assistantName"),
                            assistant=dest.get("assistant"),
                        ),
                        False,
                    )
                else:  # transfer / dtmf (a transfer's message was said by the runner)
                    self._notify(n.kind, dict(n.data))
            again = again or out.ask_model
        return again

    def _transfer(self, turn: _Turn, args: dict[str, Any], tool: Mapping[str, Any] | None) -> str:
        dest: Any = args.get("destination") or args.get("number") or args.get("sipUri")
        if isinstance(dest, str):
            dest = (
                {"type": "sip", "sipUri": dest}
                if dest.startswith("sip")
                else {"type": "number", "number": dest}
            )
        if not isinstance(dest, Mapping):
            options = (tool or {}).get("destinations") or []
            dest = options[0] if options else None
        if not isinstance(dest, Mapping):
            return "Error: no transfer destination."
        message = str(dest.get("message") or "")
        if message:
            self._speak(turn, self.history.render(message))
        self._wait_played()
        self._notify("transfer", {"destination": dict(dest), "message": message})
        return "Transferring the call."

    # ------------------------------------------------------------------ handoff

    def _handoff(self, command: HandoffCommand, say_content: bool) -> None:
        """Switch to another assistant keeping the history; the next assistant speaks ``content`` (control)
        or its firstMessage. A failed lookup is reported (``handoff`` notice, status failed); the call goes on."""
        wanted = {
            k: v
            for k, v in (
                ("assistantId", command.assistant_id),
                ("assistantName", command.assistant_name),
            )
            if v
        }
        try:
            if self.handoff_resolver is None:
                raise LookupError("handoff is not available on this call")
            target = self.handoff_resolver(command)
        except Exception as exc:  # noqa: BLE001 - a bad destination never ends the call
            log.warning("call %s: handoff failed: %s", self.call_id, exc)
            self._notify("handoff", {"status": "failed", "error": str(exc)[:300], **wanted})
            return
        if self.stopped:
            return
        self._switch(target)
        self.handoffs += 1
        self._notify("handoff", {"status": "completed", **wanted, **target.info})
        text = command.content if say_content and command.content else None
        text = text or target.config.first_message
        if text and not re.match(r"^https?://\S+$", text.strip()):
            turn = _Turn(self._next_id(), "say", target.config.first_message_interruptions_enabled)
            self._queue_or_start(turn, self.history.render(text))

    def _switch(self, target: HandoffTarget) -> None:
        cfg = target.config
        self.config = cfg
        self.stt, self.llm, self.tts = target.stt, target.llm, target.tts
        self.tool_runner = target.tool_runner
        self.history.variables.update(dict(cfg.variables))
        prompt = [
            str(m.get("content") or "") for m in cfg.messages if str(m.get("role")) == "system"
        ]
        self.history.replace_system_prompt(prompt)
        self.turns.policy = T.TurnPolicy.from_assistant(cfg)

    # ------------------------------------------------------------------ control, end, failure

    def _channel_control(self, name: str) -> None:
        if name == "mute-assistant":
            self.assistant_muted = True
            self.port.stop_playback()
        elif name == "unmute-assistant":
            self.assistant_muted = False
        elif name == "mute-customer":
            self.customer_muted = True
        elif name == "unmute-customer":
            self.customer_muted = False
        elif name == "say-first-message" and self.config.first_message:
            self._say_first()

    def _end_call(self, reason: str, message: str = "") -> None:
        if self.ended:
            return
        self.ended = reason
        if message and reason == "silence-timed-out":
            if self._current is not None:
                self._cancel()
            self._current = turn = _Turn(self._next_id(), "end", False)
            self._greenlet = gevent.spawn(
                self._say_then_end, turn, self.history.render(message), reason
            )
            return
        self._notify("end-call", {"reason": reason, "message": message})

    def _say_then_end(self, turn: _Turn, text: str, reason: str) -> None:
        try:
            self._speak(turn, text)
            self._wait_played()
            self._commit(turn)
            self._close_turn(turn, text)
        except ProviderError as exc:
            log.warning("call %s: could not say the end-call message: %s", self.call_id, exc)
        self._notify("end-call", {"reason": reason, "message": text})

    def _fail(self, exc: ProviderError, turn: _Turn | None = None) -> None:
        log.warning("call %s: %s provider %s failed: %s", self.call_id, exc.kind, exc.provider, exc)
        if self.ended:
            return
        self.ended = exc.ended_reason
        self.turns.ended = exc.ended_reason
        if turn is None and self._current is not None:
            self._cancel()
        if exc.kind != "tts":
            apology = _Turn(self._next_id(), "apology", False)
            try:
                if turn is not None:
                    self.port.stop_playback()
                self._speak(apology, APOLOGY)
                self._wait_played()
            except Exception:  # noqa: BLE001 - the apology is best effort
                log.warning("call %s: apology not spoken", self.call_id, exc_info=True)
        self._notify(
            "error", {"endedReason": exc.ended_reason, "message": str(exc)[:500], "fatal": True}
        )

    # ------------------------------------------------------------------ notices

    def _usage(self, usage: Usage | None) -> None:
        if usage is not None:
            self._notify("usage", usage.as_dict())

    def _notify(self, kind: str, data: dict[str, Any]) -> None:
        try:
            self.port.notify(PipelineNotice(kind, data))
        except Exception:  # noqa: BLE001 - the session's notify must never break the pipeline
            log.exception("call %s: notify(%s) failed", self.call_id, kind)


def _close(iterator: Any) -> None:
    close = getattr(iterator, "close", None)
    if close is not None:
        try:
            close()
        except Exception:  # noqa: BLE001 - closing an abandoned stream is best effort
            log.debug("closing a provider stream failed", exc_info=True)
