"""One live call (I/O): a queue of reducer inputs, processed one at a time, and the actions executed.

A ``CallSession`` holds the call's ``CallState``; everything that happens to the call (ESL events
from its outbound socket or the inbound connection, originate results, timers, API control
requests, fork and pipeline notices) becomes a reducer input put on the session's single queue.
Its greenlet takes inputs in order, runs ``reduce`` and executes the actions:

* ``PersistStatus`` and ``RecordEvent`` of one input are written in ONE transaction (persist.py);
* ESL commands are built with ``esl.commands`` and sent over the call's outbound socket when it
  has one (``full`` control), else over the inbound connection; every command waits at most the
  command timeout, and a timeout or ``-ERR`` comes back as ``CommandTimeout``/``CommandFailed``;
* timers are gevent one-shots (timers.py) that feed their input back;
* actions the voice pipeline owns (say, add-message, first message, mute, handoff) are passed to
  the attached pipeline as ``esl_controller.calls.control`` commands (until one is attached and
  ready, the reducer keeps say/add-message queued in state);
* ``ControlAccepted``/``Rejected`` answer the waiting API request.

Three kinds: inbound (an outbound-socket call), outbound (``bgapi originate`` into our socket;
the socket attaches when the answered leg connects), web (no ESL: ``web_connected()``,
``web_disconnected()`` and ``attach_transport(close)`` are the transport's entry points).

The session also implements the ``notify`` half of ``pipeline.ports.MediaPort``: pipeline notices
become reducer inputs (end-call, transfer, dtmf, error, ready) or rows (``message`` -> CallMessage;
transcript, turn-timing, usage... -> CallEvent).
"""

from __future__ import annotations

import logging
import time
import uuid as _uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import gevent
import gevent.event
from gevent.queue import Empty, Full, Queue

from esl_controller.calls import ended_reason as er
from esl_controller.calls import persist
from esl_controller.calls.control import (
    AddMessageCommand,
    ChannelControlCommand,
    ControlCommand,
    ControlError,
    HandoffCommand,
    SayCommand,
    parse_control,
)
from esl_controller.calls.registry import FORK_SUBCLASSES, Registry, event_to_input
from esl_controller.calls.state import (
    ENDED,
    AddMessage,
    Answer,
    AssistantEndedCall,
    BreakPlayback,
    CallInput,
    CallState,
    CancelTimer,
    ChannelHangupComplete,
    CommandFailed,
    CommandTimeout,
    ControlAccepted,
    ControlRequest,
    ForkClosed,
    ForkConnected,
    Handoff,
    Hangup,
    Hold,
    MaxDurationElapsed,
    MuteAssistant,
    MuteCustomer,
    Originate,
    OriginateAccepted,
    OriginateFailed,
    PersistStatus,
    PipelineError,
    PipelineReady,
    RecordEvent,
    Rejected,
    RingTimeout,
    ScheduleTimer,
    SealArtifacts,
    SendDtmf,
    SilenceTimeout,
    SocketDisconnected,
    Speak,
    StartFork,
    StopFork,
    Transfer,
    TransferCompleted,
    Unhold,
    UnmuteAssistant,
    UnmuteCustomer,
    WebClientConnected,
    reduce,
)
from esl_controller.calls.timers import Timers
from esl_controller.esl import commands as cmds
from esl_controller.esl.errors import CommandTimeout as EslCommandTimeout
from esl_controller.esl.errors import ConnectionLost, ESLError, NotConnected
from esl_controller.esl.protocol import ApiResult, DisconnectNotice, Event
from esl_controller.waits import IDLE_POLL_SECONDS

log = logging.getLogger("esl_controller.calls.session")

QUEUE_SIZE = 2000
MAX_PENDING_EVENTS = 200
#: seconds CallEvent records may wait to be written together (status changes are written at once)
EVENT_FLUSH_SECONDS = 1.0
FORK_BUG = "esl_fork"
_PIPELINE_ACTIONS = (
    Speak,
    AddMessage,
    Handoff,
    MuteAssistant,
    UnmuteAssistant,
    MuteCustomer,
    UnmuteCustomer,
)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class SessionDeps:
    """What every session shares: built once by the controller."""

    registry: Registry
    #: the inbound ESL connection (None when FreeSWITCH is not configured)
    inbound: Any = None
    #: where originated legs are sent (``esl.commands.SocketTarget``)
    socket_target: Any = None
    #: call id -> mod_audio_fork WebSocket URL (None: no fork server)
    fork_url: Callable[[str], str] | None = None
    command_timeout: float = 5.0
    end_grace_seconds: float = 2.0
    originate_grace: float = 15.0
    transfer_dialplan: str = "XML"
    transfer_context: str = "esl_transfer"
    audio_queue_chunks: int = 100
    #: builds a pipeline for an answered call (the voice pipeline's factory), or None
    pipeline_factory: Callable[[CallSession], Any] | None = None
    #: the after-call side (``calls.lifecycle.CallLifecycle``): notes, capture, end of call
    lifecycle: Any = None


@dataclass(frozen=True)
class OriginatePlan:
    """How an outbound call is placed: the dial string and its channel variables."""

    dialstring: str
    variables: dict[str, str] = field(default_factory=dict)
    timeout_sec: int = 60
    #: the sofia gateway used (number transfers bridge through it)
    gateway: str | None = None


@dataclass(frozen=True)
class _Note:
    """A pipeline notice that is stored, not reduced."""

    kind: str
    data: dict[str, Any]


class CallSession:
    def __init__(
        self,
        state: CallState,
        deps: SessionDeps,
        *,
        plan: OriginatePlan | None = None,
        gateway: str | None = None,
    ) -> None:
        self.state = state
        self.deps = deps
        self.plan = plan
        self.gateway = gateway or (plan.gateway if plan else None)
        self.call_id = state.call_id
        self.channel_uuid = state.channel_uuid
        self.queue: Queue = Queue(maxsize=QUEUE_SIZE)
        self.done = gevent.event.Event()
        self.socket: Any = None
        self.pipeline: Any = None
        self.fork_stream: Any = None
        self.timers = Timers(self._timer_fired)
        self.counters: dict[str, int] = {
            "inputs": 0,
            "inputs_dropped": 0,
            "audio_in": 0,
            "audio_dropped": 0,
        }
        self.audio_in: Queue = Queue(maxsize=max(1, deps.audio_queue_chunks))
        self._controls: dict[str, gevent.event.AsyncResult] = {}
        self._web_close: Callable[[], None] | None = None
        self._greenlet: gevent.Greenlet | None = None
        self._helpers: list[gevent.Greenlet] = []
        self._ended_mono: float | None = None
        self._hangup_complete = False
        self._pipeline_tried = False
        self._answered_seen = False
        #: CallEvent records not written yet: flushed with the next status change, when the
        #: queue runs empty, or every MAX_PENDING_EVENTS (a burst of DTMF is one transaction)
        self._pending_events: list[tuple[RecordEvent, datetime]] = []
        self._retry_statuses: list[PersistStatus] = []
        self._last_flush = time.monotonic()
        #: the socket stopped answering commands: use the inbound connection from now on
        self._socket_stalled = False
        self._changed = gevent.event.Event()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        self._greenlet = gevent.spawn(self._run)

    def kill(self) -> None:
        if self._greenlet is not None:
            self._greenlet.kill(block=False)

    @property
    def is_live(self) -> bool:
        return self.state.status != ENDED

    def feed(self, item: CallInput | _Note) -> bool:
        """Queue an input (never blocks). False if the session is finished or its queue is full."""
        if self.done.is_set():
            return False
        try:
            self.queue.put_nowait(item)
            return True
        except Full:
            self.counters["inputs_dropped"] += 1
            log.warning("call %s: input queue full, dropped %s", self.call_id, type(item).__name__)
            return False

    def process_now(self, item: CallInput) -> None:
        """Apply one input inline, without the session's greenlet (restart reconciliation of calls
        that end at once); timers it would start are cancelled."""
        try:
            self._process(item)
            self._flush()
        finally:
            self.timers.cancel_all()

    def wait_until(self, predicate: Callable[[CallState], bool], timeout: float) -> bool:
        """Wait (bounded) until ``predicate(state)`` holds after some input was processed."""
        with gevent.Timeout(timeout, False):
            while True:
                changed = self._changed
                if predicate(self.state):
                    return True
                if self.done.is_set():
                    return predicate(self.state)
                changed.wait()
        return predicate(self.state)

    def _signal(self) -> None:
        changed, self._changed = self._changed, gevent.event.Event()
        changed.set()

    def wait(self, timeout: float) -> bool:
        return self.done.wait(timeout=timeout)

    def _finished(self) -> bool:
        if self.state.direction == "web" or self._hangup_complete or not self.channel_uuid:
            return True
        sock = self.socket
        return sock is not None and sock.closed.is_set()

    def _run(self) -> None:
        try:
            persist.hold_connection()
            while True:
                timeout = 30.0
                if self._pending_events:
                    timeout = max(0.0, self._last_flush + EVENT_FLUSH_SECONDS - time.monotonic())
                if self.state.status == ENDED:
                    if self._ended_mono is None:
                        self._ended_mono = time.monotonic()
                    if self._finished() and self.queue.empty():
                        break
                    timeout = self.deps.end_grace_seconds - (time.monotonic() - self._ended_mono)
                    if timeout <= 0:
                        break
                try:
                    item = self.queue.get(timeout=timeout)
                except Empty:
                    if self._pending_events:
                        self._flush()
                    continue
                try:
                    self._process(item)
                    due = time.monotonic() - self._last_flush >= EVENT_FLUSH_SECONDS
                    if self._pending_events and self.queue.empty() and due:
                        self._flush()
                except Exception:
                    log.exception(
                        "call %s: processing %s failed", self.call_id, type(item).__name__
                    )
                self._signal()
        finally:
            self._cleanup()

    def _flush(self, statuses: list[PersistStatus] | None = None) -> None:
        events, self._pending_events = self._pending_events, []
        statuses = self._retry_statuses + list(statuses or ())
        self._retry_statuses = []
        self._last_flush = time.monotonic()
        try:
            persist.write(self.call_id, statuses, events)
        except Exception as exc:
            self.counters["db_write_failures"] = self.counters.get("db_write_failures", 0) + 1
            log.warning("call %s: database write failed (%s); will retry", self.call_id, exc)
            # keep the records for the next flush (bounded), and the status change as a record
            self._pending_events = (events + self._pending_events)[-QUEUE_SIZE:]
            self._retry_statuses = statuses  # written with the next flush

    def _cleanup(self) -> None:
        try:
            self._flush()
            persist.release_connection()
        except Exception:
            log.exception("call %s: closing the database connection failed", self.call_id)
        self.timers.cancel_all()
        helpers = self._helpers
        self._helpers = []  # let go of them: a killed greenlet's traceback holds the session
        for g in helpers:
            g.kill(block=False)
        for result in list(self._controls.values()):
            if not result.ready():
                result.set(None)
        self._controls.clear()
        self.deps.registry.remove(self)
        self.done.set()
        self._signal()
        pipeline, self.pipeline = self.pipeline, None
        if pipeline is not None:
            gevent.spawn(_stop_pipeline, pipeline, self.call_id)
        self.done.set()
        if self.deps.lifecycle is not None:  # capture stop, pricing, outputs, the report
            self._safe(self.deps.lifecycle.on_finished, self)

    # ------------------------------------------------------------------ attach points
    def attach_socket(self, call: Any) -> None:
        """An outbound-socket connection for this channel: subscribe and route its events here."""
        self.socket = call
        if call.uuid and call.uuid != self.channel_uuid:
            self.channel_uuid = call.uuid
            self.deps.registry.bind_uuid(self, call.uuid)
        call.add_handler(self._on_socket_item)
        call.myevents()
        call.linger()
        if call.control == "full":
            call.subscribe((), FORK_SUBCLASSES)

    def _on_socket_item(self, item: Any) -> None:
        if isinstance(item, Event):
            inp = event_to_input(item)
            if inp is not None:
                self.feed(inp)
        elif isinstance(item, DisconnectNotice):
            if item.disposition != "linger":
                self.feed(SocketDisconnected(at=utcnow(), notice=True))
        else:  # CallClosed
            sock = self.socket
            self.feed(SocketDisconnected(at=utcnow(), notice=bool(sock and sock.hung_up)))

    def attach_pipeline(self, pipeline: Any) -> None:
        """Attach the call's voice pipeline (``pipeline.ports.Pipeline``) and start it."""
        self.pipeline = pipeline
        self._spawn(self._pump_audio)
        self._spawn(_start_pipeline, pipeline, self.call_id)

    def attach_transport(self, close: Callable[[], None]) -> None:
        """Web calls: how to close the client transport (the Hangup action)."""
        self._web_close = close

    def web_connected(self) -> None:
        self.feed(WebClientConnected(at=utcnow()))

    def web_disconnected(self) -> None:
        self.feed(SocketDisconnected(at=utcnow(), notice=True))

    def run_fork(self, stream: Any) -> None:
        """A mod_audio_fork stream for this call (runs in the fork server's greenlet until it
        ends). Frames go inline (no queue hand-off) to the attached pipeline's ``feed``."""
        self.fork_stream = stream
        self.feed(ForkConnected(at=utcnow()))
        stream.set_frame_handler(self._on_fork_frame)
        for frame in stream.frames(poll=IDLE_POLL_SECONDS):  # queued before the handler was set
            self._on_fork_frame(frame)
        if self.fork_stream is stream:
            self.fork_stream = None
        reason = getattr(stream, "close_reason", None) or "closed"
        self.feed(ForkClosed(at=utcnow(), reason=reason))

    def _on_fork_frame(self, frame: Any) -> None:
        pipeline = self.pipeline
        if pipeline is not None:
            pipeline.feed(frame.caller, frame.timestamp)

    def push_audio(self, pcm16: bytes, rate: int) -> bool:
        """Caller audio from the HTTP hooks: bounded; False (dropped and counted) when full."""
        try:
            self.audio_in.put_nowait((pcm16, rate))
            self.counters["audio_in"] += 1
            return True
        except Full:
            self.counters["audio_dropped"] += 1
            return False

    def _pump_audio(self) -> None:
        at = 0.0
        while not self.done.is_set():
            try:
                pcm, rate = self.audio_in.get(timeout=IDLE_POLL_SECONDS)
            except Empty:
                continue
            pipeline = self.pipeline
            if pipeline is None:
                continue
            try:
                pipeline.feed(pcm, at)
            except Exception:
                log.exception("call %s: pipeline.feed failed", self.call_id)
            at += len(pcm) / 2 / rate

    # ------------------------------------------------------------------ control (API side)
    def control(self, command: ControlCommand, timeout: float) -> ControlAccepted | Rejected | None:
        """Feed a control request and wait for its answer. None: the call finished first.
        Raises ``gevent.Timeout``-free ``TimeoutError`` when the session did not answer in time."""
        rid = f"control:{_uuid.uuid4()}"
        result: gevent.event.AsyncResult = gevent.event.AsyncResult()
        self._controls[rid] = result
        try:
            if not self.feed(ControlRequest(at=utcnow(), event_id=rid, command=command)):
                return None
            try:
                return result.get(timeout=timeout)
            except gevent.Timeout:
                raise TimeoutError(
                    f"call {self.call_id}: control not handled in {timeout}s"
                ) from None
        finally:
            self._controls.pop(rid, None)

    # ------------------------------------------------------------------ notify (pipeline side)
    def notify(self, notice: Any) -> None:
        """``MediaPort.notify``: pipeline notices -> reducer inputs or stored rows. Never raises."""
        try:
            self._notify(notice.kind, dict(notice.data or {}))
        except Exception:
            log.exception("call %s: notice %r failed", self.call_id, getattr(notice, "kind", "?"))

    def _notify(self, kind: str, data: dict[str, Any]) -> None:
        at = utcnow()
        if kind == "ready":
            self.feed(PipelineReady(at=at))
        elif kind == "end-call":
            reason = str(data.get("reason") or er.ASSISTANT_ENDED_CALL)
            if reason == er.SILENCE_TIMED_OUT:
                self.feed(SilenceTimeout(at=at))
            elif reason == er.EXCEEDED_MAX_DURATION:
                self.feed(MaxDurationElapsed(at=at))
            else:
                self.feed(AssistantEndedCall(at=at, reason=reason, message=data.get("message")))
        elif kind in ("transfer", "dtmf"):
            body = (
                {
                    "type": "transfer",
                    "destination": data.get("destination"),
                    "content": data.get("message"),
                }
                if kind == "transfer"
                else {"type": "dtmf", "digits": data.get("digits")}
            )
            body = {k: v for k, v in body.items() if v is not None}
            try:
                command = parse_control(body)
            except ControlError as exc:
                self.feed(_Note("pipeline.invalid-" + kind, {"errors": exc.messages, **data}))
                return
            self.feed(ControlRequest(at=at, event_id=f"pipeline:{_uuid.uuid4()}", command=command))
        elif kind == "error" and data.get("fatal", True):
            self.feed(
                PipelineError(
                    at=at,
                    kind=str(data.get("endedReason") or "pipeline-error-unknown"),
                    message=data.get("message"),
                )
            )
        elif kind == "message":
            self.feed(_Note("message", data))
        else:
            self.feed(_Note("pipeline." + kind, data))

    # ------------------------------------------------------------------ the reducer step
    def _timer_fired(self, name: str) -> None:
        at = utcnow()
        if name == "ring":
            self.feed(RingTimeout(at=at))
        elif name == "max-duration":
            self.feed(MaxDurationElapsed(at=at))
        else:
            self.feed(CommandTimeout(at=at, what=name))

    def _process(self, item: CallInput | _Note) -> None:
        if isinstance(item, _Note):
            if self.deps.lifecycle is not None:  # stored and its server messages queued
                self.deps.lifecycle.on_note(self.call_id, item.kind, item.data)
            elif item.kind == "message":
                persist.add_message(self.call_id, item.data)
            else:
                persist.record(self.call_id, item.kind[:64], item.data, source="pipeline")
            return
        self.counters["inputs"] += 1
        if isinstance(item, ChannelHangupComplete):
            self._hangup_complete = True
        was_live = self.is_live
        self.state, actions = reduce(self.state, item)
        if self.state.channel_uuid and self.state.channel_uuid != self.channel_uuid:
            self.channel_uuid = self.state.channel_uuid
            self.deps.registry.bind_uuid(self, self.channel_uuid)
        statuses = [a for a in actions if isinstance(a, PersistStatus)]
        records = [a for a in actions if isinstance(a, RecordEvent)]
        if (
            statuses
            and self.state.billsec is not None
            and not any("billsec" in a.fields for a in statuses)
        ):
            # the reducer's end-of-call PersistStatus carries no billsec when the ending event
            # itself is CHANNEL_HANGUP_COMPLETE: keep it anyway
            statuses.append(PersistStatus(self.state.status, {"billsec": self.state.billsec}))
        self._pending_events.extend((r, item.at) for r in records)
        if statuses or self._retry_statuses or len(self._pending_events) >= MAX_PENDING_EVENTS:
            self._flush(statuses)
        for action in actions:
            if isinstance(action, (PersistStatus, RecordEvent)):
                continue
            try:
                self._execute(action, item)
            except Exception:
                log.exception("call %s: action %s failed", self.call_id, type(action).__name__)
        if was_live and not self.is_live:
            log.info("call %s ended: %s", self.call_id, self.state.ended_reason)
        elif (
            self.is_live and not self._pipeline_tried and self.state.answered and not self.pipeline
        ):
            self._pipeline_tried = True
            self._maybe_build_pipeline()
        if self.state.answered and not self._answered_seen and self.deps.lifecycle is not None:
            self._answered_seen = True
            self._safe(self.deps.lifecycle.on_answered, self)

    def _maybe_build_pipeline(self) -> None:
        factory = self.deps.pipeline_factory
        if factory is None:
            return
        try:
            pipeline = factory(self)
        except Exception:
            log.exception("call %s: pipeline factory failed", self.call_id)
            return
        if pipeline is not None:
            self.attach_pipeline(pipeline)

    def _execute(self, action: Any, item: CallInput) -> None:
        if isinstance(action, ScheduleTimer):
            self.timers.schedule(action.name, action.seconds)
        elif isinstance(action, CancelTimer):
            self.timers.cancel(action.name)
        elif isinstance(action, (ControlAccepted, Rejected)):
            result = self._controls.get(item.event_id or "")
            if result is not None and not result.ready():
                result.set(action)
        elif isinstance(action, Answer):
            self._answer()
        elif isinstance(action, Originate):
            self._originate()
        elif isinstance(action, StartFork):
            self._start_fork()
        elif isinstance(action, StopFork):
            if self.channel_uuid and self.fork_url_enabled:
                self._api(cmds.audio_fork_stop(self.channel_uuid, FORK_BUG), "fork-stop")
        elif isinstance(action, Hangup):
            self._hangup(action.cause)
        elif isinstance(action, BreakPlayback):
            if self.fork_stream is not None:
                self._safe(self.fork_stream.kill_audio)
            self._uuid_api(cmds.uuid_break, "break")
        elif isinstance(action, Transfer):
            self._transfer(action)
        elif isinstance(action, SendDtmf):
            self._uuid_api(lambda u: cmds.uuid_send_dtmf(u, action.digits), "dtmf")
        elif isinstance(action, Hold):
            self._uuid_api(lambda u: f"uuid_hold {cmds.validate_uuid(u)}", "hold")
        elif isinstance(action, Unhold):
            self._uuid_api(lambda u: f"uuid_hold off {cmds.validate_uuid(u)}", "hold")
        elif isinstance(action, _PIPELINE_ACTIONS) or type(action).__name__ == "SayFirstMessage":
            self._to_pipeline(action)
        elif isinstance(action, SealArtifacts):
            pipeline, self.pipeline = self.pipeline, None
            if pipeline is not None:
                self._spawn(_stop_pipeline, pipeline, self.call_id)
        # EmitStatusUpdate: the webhook side reads status changes from the CallEvent log.

    @property
    def fork_url_enabled(self) -> bool:
        return self.deps.fork_url is not None

    # ------------------------------------------------------------------ ESL
    def _socket_usable(self) -> bool:
        sock = self.socket
        return sock is not None and not sock.closed.is_set() and not self._socket_stalled

    def _send(self, cmd: str) -> ApiResult:
        sock = self.socket
        if self._socket_usable() and sock.control == "full":
            try:
                return sock.api(cmd, timeout=self.deps.command_timeout)
            except ConnectionLost:
                pass
            except EslCommandTimeout:
                self._socket_stalled = True
                log.warning(
                    "call %s: socket not answering; using the inbound connection", self.call_id
                )
        inbound = self.deps.inbound
        if inbound is not None and getattr(inbound.state, "value", "") == "connected":
            return inbound.api(cmd, timeout=self.deps.command_timeout)
        raise NotConnected("no connection to FreeSWITCH")

    def _api(self, cmd: str, what: str) -> bool:
        """Send one API command; trouble comes back to the reducer as an input."""
        try:
            result = self._send(cmd)
        except EslCommandTimeout:
            log.warning("call %s: %s timed out", self.call_id, what)
            self.feed(CommandTimeout(at=utcnow(), what=what))
            return False
        except (ESLError, cmds.CommandError) as exc:
            self.feed(CommandFailed(at=utcnow(), what=what, reply=str(exc)))
            return False
        if not result.ok:
            self.feed(CommandFailed(at=utcnow(), what=what, reply=result.text[:200]))
            return False
        return True

    def channel_api(self, build: Callable[[str], str], what: str) -> bool:
        """Send ``build(channel_uuid)`` (the media port's uuid_broadcast / uuid_break); trouble
        comes back to the reducer as an input. False when it was not sent or failed."""
        return self._uuid_api(build, what)

    def _uuid_api(self, build: Callable[[str], str], what: str) -> bool:
        if not self.channel_uuid:
            self.feed(CommandFailed(at=utcnow(), what=what, reply="no channel"))
            return False
        try:
            cmd = build(self.channel_uuid)
        except cmds.CommandError as exc:
            self.feed(CommandFailed(at=utcnow(), what=what, reply=str(exc)))
            return False
        return self._api(cmd, what)

    def _answer(self) -> None:
        sock = self.socket
        if self._socket_usable():
            try:
                sock.execute_async("answer", timeout=self.deps.command_timeout)
                return
            except EslCommandTimeout:
                self._socket_stalled = True
                self.feed(CommandTimeout(at=utcnow(), what="answer"))
                return
            except ESLError as exc:
                log.info("call %s: answer over the socket failed (%s)", self.call_id, exc)
        self._uuid_api(cmds.uuid_answer, "answer")

    def _hangup(self, cause: str) -> None:
        if self.state.direction == "web":
            close = self._web_close
            if close is not None:
                self._safe(close)
            return
        if not self.channel_uuid:
            return
        self._uuid_api(lambda u: cmds.uuid_kill(u, cause), "hangup")

    def _start_fork(self) -> None:
        if self.deps.fork_url is None:
            return
        url = self.deps.fork_url(self.call_id)
        meta = {"callId": self.call_id}
        self._uuid_api(
            lambda u: cmds.audio_fork_start(
                u, url, mix="mono", rate="16k", bugname=FORK_BUG, metadata=meta
            ),
            "fork",
        )

    def _transfer(self, action: Transfer) -> None:
        if action.announcement and self.pipeline is not None:
            self._safe(self.pipeline.control, SayCommand(action.announcement))
        if action.mode == "refer":
            # FreeSWITCH sends the REFER, then hangs up with BLIND_TRANSFER: the hangup ends the call.
            self._uuid_api(lambda u: cmds.uuid_deflect(u, action.destination), "transfer")
            return
        dest = action.destination.lstrip("+") if action.destination else ""
        if self.gateway:
            ok = self._uuid_api(
                lambda u: cmds.uuid_setvar(u, "esl_transfer_gateway", self.gateway), "transfer"
            )
            if not ok:
                return
        ok = self._uuid_api(
            lambda u: cmds.uuid_transfer(
                u, dest, self.deps.transfer_dialplan, self.deps.transfer_context
            ),
            "transfer",
        )
        if ok:  # the channel left our park for the dialplan: it is no longer ours
            self.feed(TransferCompleted(at=utcnow()))

    def _originate(self) -> None:
        plan, inbound = self.plan, self.deps.inbound
        if plan is None or not self.channel_uuid:
            self.feed(CommandFailed(at=utcnow(), what="originate", reply="no originate plan"))
            return
        if inbound is None:
            self.feed(
                CommandFailed(at=utcnow(), what="originate", reply="FreeSWITCH not configured")
            )
            return
        try:
            line = cmds.originate(
                plan.dialstring,
                uuid=self.channel_uuid,
                variables=plan.variables,
                target=self.deps.socket_target,
                timeout_sec=plan.timeout_sec,
            )
            job = inbound.bgapi_start(line, timeout=self.deps.command_timeout)
        except EslCommandTimeout:
            self.feed(CommandTimeout(at=utcnow(), what="originate"))
            return
        except (ESLError, cmds.CommandError) as exc:
            self.feed(CommandFailed(at=utcnow(), what="originate", reply=str(exc)))
            return
        self._spawn(self._await_originate, job, plan.timeout_sec + self.deps.originate_grace)

    def _await_originate(self, job: Any, timeout: float) -> None:
        try:
            result = job.wait(timeout)
        except EslCommandTimeout:
            self.feed(CommandTimeout(at=utcnow(), what="originate"))
            return
        except ESLError as exc:
            self.feed(CommandFailed(at=utcnow(), what="originate", reply=str(exc)))
            return
        if result.ok:
            self.feed(
                OriginateAccepted(at=utcnow(), channel_uuid=result.value or self.channel_uuid)
            )
        else:
            cause = (result.value.split() or ["NORMAL_TEMPORARY_FAILURE"])[0]
            self.feed(OriginateFailed(at=utcnow(), cause=cause, message=result.text[:200]))

    # ------------------------------------------------------------------ pipeline
    def _to_pipeline(self, action: Any) -> None:
        pipeline = self.pipeline
        if pipeline is None:
            return
        command: Any
        if isinstance(action, Speak):
            command = SayCommand(
                action.text, action.end_call_after, action.interruptions_enabled, action.interrupt
            )
        elif isinstance(action, AddMessage):
            command = AddMessageCommand(action.role, action.content, action.trigger_response)
        elif isinstance(action, Handoff):
            command = HandoffCommand(
                action.assistant_id, action.assistant_name, action.assistant, action.content
            )
        else:
            name = {
                "MuteAssistant": "mute-assistant",
                "UnmuteAssistant": "unmute-assistant",
                "MuteCustomer": "mute-customer",
                "UnmuteCustomer": "unmute-customer",
                "SayFirstMessage": "say-first-message",
            }[type(action).__name__]
            command = ChannelControlCommand(name)
        self._safe(pipeline.control, command)

    # ------------------------------------------------------------------ helpers
    def _spawn(self, fn: Callable[..., Any], *args: Any) -> None:
        self._helpers = [g for g in self._helpers if not g.dead]
        self._helpers.append(gevent.spawn(fn, *args))

    def _safe(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            log.exception("call %s: %s failed", self.call_id, getattr(fn, "__name__", fn))

    def live_state(self) -> dict[str, Any]:
        s = self.state
        return {
            "id": s.call_id,
            "status": s.status,
            "channelUuid": self.channel_uuid,
            "answered": s.answered,
            "forkConnected": s.fork_connected,
            "assistantMuted": s.assistant_muted,
            "customerMuted": s.customer_muted,
            "onHold": s.on_hold,
            "pipelineAttached": self.pipeline is not None,
            "queuedSpeech": len(s.queued),
            "socket": self.socket is not None and not self.socket.closed.is_set(),
            "counters": dict(self.counters),
        }


def _start_pipeline(pipeline: Any, call_id: str) -> None:
    try:
        pipeline.start()
    except Exception:
        log.exception("call %s: pipeline.start failed", call_id)


def _stop_pipeline(pipeline: Any, call_id: str) -> None:
    try:
        pipeline.stop(timeout=5.0)
    except Exception:
        log.exception("call %s: pipeline.stop failed", call_id)
