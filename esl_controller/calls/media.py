"""A live call's media around its voice pipeline (I/O).

* :class:`ForkMediaPort` is the ``MediaPort`` of a FreeSWITCH call whose audio comes over
  mod_audio_fork. Speech goes out as ``playAudio`` messages on the fork WebSocket (FreeSWITCH
  writes each to a file and fires ``mod_audio_fork::play_audio``; :func:`on_play_audio_event`
  then runs ``uuid_broadcast <uuid> <file> aleg``). Audio played before the fork connects waits
  (bounded). A paced "virtual speaker" (``media.playout.Playout``) follows what the caller hears,
  so ``playing()`` and ``stop_playback()`` (seconds heard) are right, and it feeds the assistant
  track of the recording and the live-listen hub. Barge-in: ``killAudio`` on the fork and
  ``uuid_break <uuid> all`` on the channel.
* :class:`MediaPipeline` wraps the ``Conversation``: every caller frame also goes to the
  recorder and the listen hub; at the end the recording is sealed and the listeners told.
* :class:`WebCallBridge` connects the web-call WebSocket server to the call sessions
  (per-call token, ``attach_transport``, ``web_connected``...).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import gevent
from gevent.event import Event
from gevent.queue import Empty, Queue

from esl_controller.esl import commands as cmds
from esl_controller.media.playout import Playout
from esl_controller.pipeline.ports import PipelineNotice

log = logging.getLogger("esl_controller.calls.media")

PLAY_AUDIO = "mod_audio_fork::play_audio"
#: seconds of speech kept while the fork is not connected yet (more is dropped and counted)
MAX_WAITING_SECONDS = 60.0
#: how long speech may wait for the fork to connect
FORK_WAIT_SECONDS = 10.0
#: the virtual speaker's frames per wake-up: up to 100 ms ahead, a wake-up per 100 ms instead of per 20 ms
SPEAKER_BURST_FRAMES = 5
#: assistant frames kept for the live listeners between caller frames (a second)
HEARD_FRAMES_KEPT = 50
_TOKEN_SECRET = os.urandom(32)


# ---------------------------------------------------------------------------------- tokens


def call_token(call_id: str) -> str:
    """The per-call web-call token (HMAC of the call id with this process's secret)."""
    return hmac.new(_TOKEN_SECRET, call_id.lower().encode(), hashlib.sha256).hexdigest()[:40]


def check_call_token(call_id: str, token: str | None) -> bool:
    return bool(token) and hmac.compare_digest(call_token(call_id), str(token))


# ---------------------------------------------------------------------------------- fork port


class ForkMediaPort:
    """``MediaPort`` of a call whose audio goes over mod_audio_fork (see the module docstring)."""

    def __init__(
        self,
        session: Any,
        sample_rate: int = 16000,
        *,
        clock: Callable[[], float],
        on_assistant: Callable[[bytes, float], None] | None = None,
    ) -> None:
        self.session = session
        self.sample_rate = sample_rate
        self.clock = clock
        self.on_assistant = on_assistant
        # a virtual speaker (FreeSWITCH plays the audio): five frames a wake-up, each frame told with the
        # call time it is heard; the one frame of lead keeps a frame in flight at every wake-up, so a
        # wake-up a little late never reads as a gap in the speech
        self.speaker = Playout(
            sample_rate,
            None,
            lead_frames=1,
            burst_frames=SPEAKER_BURST_FRAMES,
            clock=clock,
            on_heard=self._heard,
            name=session.call_id,
        )
        self._out: Queue = Queue()
        self._waiting_bytes = 0
        self._max_waiting = int(MAX_WAITING_SECONDS * sample_rate * 2)
        self._sender: gevent.Greenlet | None = None
        self._played_files: deque[str] = deque(maxlen=256)
        self._closed = False
        self._epoch = 0  # bumped by stop_playback: audio of an older epoch is dropped
        #: assistant frames heard, oldest first, for the live listeners (one taken per caller frame)
        self.heard_frames: deque[bytes] = deque(maxlen=HEARD_FRAMES_KEPT)
        #: a ``media.background.BackgroundMixer`` mixed under every chunk of speech (backgroundSound)
        self.background: Any = None
        self.counters = {"play_messages": 0, "dropped_bytes": 0, "broadcasts": 0, "breaks": 0}

    # -- MediaPort
    def play(self, pcm16: bytes, *, text: str = "") -> None:
        if self._closed or not pcm16:
            return
        if self.background is not None:
            pcm16 = self.background.mix(pcm16)
        if self._waiting_bytes + len(pcm16) > self._max_waiting:
            self.counters["dropped_bytes"] += len(pcm16)
            return
        self._waiting_bytes += len(pcm16)
        self._out.put((self._epoch, pcm16, text))
        if self._sender is None or self._sender.dead:
            self._sender = gevent.spawn(self._send_loop)

    def stop_playback(self) -> float:
        self._epoch += 1
        self._drain()
        heard = self.speaker.stop()
        self.counters["breaks"] += 1
        stream = self.session.fork_stream
        if stream is not None:
            try:
                stream.kill_audio()
            except Exception as exc:  # noqa: BLE001 - a closed fork must not break barge-in
                log.info("call %s: killAudio not sent (%s)", self.session.call_id, exc)
        self.session.channel_api(cmds.uuid_break, "break")
        return heard

    def playing(self) -> bool:
        return self._waiting_bytes > 0 or self.speaker.playing()

    def unplayed_seconds(self) -> float:
        """At least this long until the caller has heard all the speech handed over so far: what the
        speaker holds, then what is still on its way to FreeSWITCH."""
        return self.speaker.unplayed_seconds() + self._waiting_bytes / (2.0 * self.sample_rate)

    def notify(self, notice: PipelineNotice) -> None:
        self.session.notify(notice)

    # -- FreeSWITCH side
    def on_play_audio(self, body: str) -> bool:
        """The ``mod_audio_fork::play_audio`` event body: play its file on the channel (once)."""
        try:
            data = json.loads(body or "{}")
        except ValueError:
            log.warning("call %s: play_audio body is not JSON", self.session.call_id)
            return False
        path = data.get("file") if isinstance(data, dict) else None
        if not isinstance(path, str) or not path or path in self._played_files:
            return False
        self._played_files.append(path)
        self.counters["broadcasts"] += 1
        return self.session.channel_api(lambda u: cmds.uuid_broadcast(u, path, "aleg"), "play")

    def close(self) -> None:
        self._closed = True
        self._drain()
        self.speaker.close()
        sender, self._sender = self._sender, None  # (a killed greenlet's traceback holds this port)
        if sender is not None:
            sender.kill(block=False)

    # -- internals
    def _drain(self) -> None:
        while True:
            try:
                self._out.get_nowait()
            except Empty:
                break
        self._waiting_bytes = 0

    def _wait_fork(self) -> Any:
        deadline = time.monotonic() + FORK_WAIT_SECONDS
        while not self._closed and time.monotonic() < deadline:
            stream = self.session.fork_stream
            if stream is not None:
                return stream
            if self.session.done.wait(timeout=0.05):
                return None
        return None

    def _send_loop(self) -> None:
        while not self._closed:
            try:
                epoch, pcm, text = self._out.get(timeout=1.0)
            except Empty:
                if self._waiting_bytes == 0:
                    return
                continue
            parts, texts = [pcm], [text] if text else []
            while True:  # coalesce what is already queued into one playAudio file
                try:
                    e2, more, t2 = self._out.get_nowait()
                except Empty:
                    break
                if e2 == epoch:
                    parts.append(more)
                    if t2:
                        texts.append(t2)
            audio = b"".join(parts)
            try:
                self._send_audio(epoch, audio, texts)
            finally:
                # only now, with the audio in the speaker (or dropped): while the message was being sent
                # (a send that yields) ``playing()`` must stay true. A barge-in meanwhile reset the count.
                if epoch == self._epoch:
                    self._waiting_bytes = max(0, self._waiting_bytes - len(audio))

    def _send_audio(self, epoch: int, audio: bytes, texts: list[str]) -> None:
        stream = self._wait_fork()
        if epoch != self._epoch:
            return
        if stream is None:
            self.counters["dropped_bytes"] += len(audio)
            self._drain()
            return
        try:
            stream.play_audio(audio, self.sample_rate, " ".join(texts) or None)
        except Exception as exc:  # noqa: BLE001 - the fork went away: the speech is lost
            log.info("call %s: playAudio not sent (%s)", self.session.call_id, exc)
            self.counters["dropped_bytes"] += len(audio)
            return
        self.counters["play_messages"] += 1
        if epoch == self._epoch:  # not cut off by a barge-in while it was being sent
            self.speaker.enqueue(audio)

    def _heard(self, frame: bytes, at: float) -> None:
        self.heard_frames.append(frame)
        if self.on_assistant is not None:
            self.on_assistant(frame, at)


def on_play_audio_event(registry: Any, event: Any) -> None:
    """Inbound-connection / socket handler for ``mod_audio_fork::play_audio``."""
    uuid = event.unique_id
    session = registry.by_channel(uuid) if uuid else None
    port = getattr(getattr(session, "pipeline", None), "port", None)
    if isinstance(port, ForkMediaPort):
        port.on_play_audio(event.body_text)


# ---------------------------------------------------------------------------------- pipeline wrap


class MediaPipeline:
    """The session's pipeline: the conversation plus recording, live listen and the notices seen."""

    def __init__(
        self,
        conversation: Any,
        port: Any,
        *,
        call_id: str,
        clock: Callable[[], float],
        recorder: Any = None,
        hub: Any = None,
        on_stop: Callable[[], None] | None = None,
    ) -> None:
        self.conversation = conversation
        self.port = port
        self.call_id = call_id
        self.clock = clock
        self.recorder = recorder
        self.hub = hub
        self.on_stop = on_stop
        self.rate = port.sample_rate
        self._offset: float | None = None
        self._heard_frames: Any = getattr(port, "heard_frames", None)
        self.stopped = Event()

    def start(self) -> None:
        # the port's heard frames (a web port gets them once the pipeline is built), looked up once
        self._heard_frames = getattr(self.port, "heard_frames", None)
        self.conversation.start()

    def feed(self, caller_pcm16: bytes, at: float) -> None:
        offset = self._offset
        if offset is None:
            offset = self._offset = self.clock() - at
        recorder = self.recorder
        if recorder is not None:
            try:
                recorder.add_caller(caller_pcm16, offset + at)
            except Exception:  # noqa: BLE001 - recording trouble never stops the call
                log.exception("call %s: recording caller audio failed", self.call_id)
                self.recorder = None
        hub = self.hub
        if hub is not None:
            heard = self._heard_frames
            assistant = heard.popleft() if heard else None
            hub.publish(self.call_id, caller_pcm16, assistant, self.rate)
        self.conversation.feed(caller_pcm16, at)

    def add_assistant(self, frame: bytes, at: float) -> None:
        if self.recorder is not None:
            try:
                self.recorder.add_assistant(frame, at)
            except Exception:  # noqa: BLE001
                log.exception("call %s: recording assistant audio failed", self.call_id)
                self.recorder = None

    def control(self, command: Any) -> None:
        self.conversation.control(command)

    def stop(self, timeout: float = 5.0) -> None:
        if self.stopped.is_set():
            return
        self.stopped.set()
        try:
            self.conversation.stop(timeout)
        finally:
            close = getattr(self.port, "close", None)
            if isinstance(self.port, ForkMediaPort) and close is not None:
                close()
            if self.recorder is not None:
                try:
                    self.recorder.close()
                except Exception:  # noqa: BLE001
                    log.exception("call %s: closing the recording failed", self.call_id)
            if self.hub is not None:
                self.hub.close_call(self.call_id)
            if isinstance(self.port, ForkMediaPort):
                self.port.on_assistant = None  # (our bound method: a cycle through the port)
            if self.on_stop is not None:
                try:
                    self.on_stop()
                except Exception:  # noqa: BLE001
                    log.exception("call %s: end-of-media hook failed", self.call_id)


# ---------------------------------------------------------------------------------- web calls


class WebCallBridge:
    """``WebCallServer.on_connect``: a web-call WebSocket for a live web call with its token."""

    def __init__(self, registry: Any) -> None:
        self.registry = registry
        #: call id -> the connected client's WebCallPort (the pipeline factory takes it)
        self.ports: dict[str, Any] = {}

    def on_connect(self, call_id: str, token: str | None) -> _WebCall | None:
        if not check_call_token(call_id, token):
            return None
        session = self.registry.get(call_id)
        if session is None or not session.is_live or session.state.direction != "web":
            return None
        if call_id in self.ports:
            return None  # one client per call
        return _WebCall(self, session)


class _WebCall:
    """One connected web-call client (``media.webcall.WebCallSession``)."""

    def __init__(self, bridge: WebCallBridge, session: Any) -> None:
        self.bridge = bridge
        self.session = session
        self.port: Any = None
        self._t0 = time.monotonic()

    def on_start(self, port: Any) -> None:
        self.port = port
        port.notice_sink = self.session.notify
        self.bridge.ports[self.session.call_id] = port

        def close() -> None:
            reason = self.session.state.ended_reason or "customer-ended-call"
            gevent.spawn(port.end, str(reason), 10.0)

        self.session.attach_transport(close)
        self.session.web_connected()

    def on_audio(self, pcm16: bytes, at: float) -> None:
        pipeline = self.session.pipeline
        if pipeline is not None:
            pipeline.feed(pcm16, at)

    def on_control(self, body: dict[str, Any]) -> None:
        from esl_controller.calls.control import ControlError, parse_control

        try:
            command = parse_control(body)
        except ControlError as exc:
            self.port.send_json({"type": "error", "message": str(exc)})
            return
        gevent.spawn(self.session.control, command, 5.0)

    def on_hangup(self) -> None:
        self.session.web_disconnected()

    def on_close(self, reason: str) -> None:
        self.bridge.ports.pop(self.session.call_id, None)
        self.session.web_disconnected()
