"""The call state machine: ``reduce(state, input) -> (state, actions)``.

Pure: no gevent, Flask, peewee or sockets. Inputs are frozen dataclasses normalised by the I/O
layer from ESL events, originate results, API control requests, timers, media and pipeline events.
Actions are frozen dataclasses the call session executes in order. Every input yields exactly one
``RecordEvent`` (the CallEvent log) first; a ``ControlRequest`` always ends with exactly one
``ControlAccepted`` or ``Rejected`` (the API answers 409 on ``Rejected``).

Rules:
* statuses only move forward: queued -> ringing -> in-progress -> forwarding -> ended (steps may be
  skipped, e.g. an answer with no progress before it); nothing leaves ``ended``;
* an input whose ``event_id`` was seen before is ignored (no actions; a duplicate control request
  gets ``ControlAccepted(duplicate=True)``); inputs after ``ended`` are only recorded (a late
  CHANNEL_HANGUP_COMPLETE still contributes its billsec);
* ``started_at`` is set at answer, ``ended_at`` when the call ends; the endedReason is the first
  cause that ended it: a hangup we requested (control, tool, timers, pipeline) wins over the
  hangup event that follows it.

Timers: ``ScheduleTimer(name, seconds)`` asks the session to feed an input back when it fires:
``ring`` -> :class:`RingTimeout`, ``max-duration`` -> :class:`MaxDurationElapsed`, any other name
(``answer``, ``hangup``, ``fork``, ``transfer``) -> ``CommandTimeout(what=name)``. The silence
timer belongs to the pipeline, which feeds :class:`SilenceTimeout`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields, is_dataclass, replace
from datetime import datetime
from typing import Any

from esl_controller.calls import ended_reason as er
from esl_controller.calls.actions import (  # noqa: F401 - re-exported: the reducer's public names
    Action,
    AddMessage,
    Answer,
    BreakPlayback,
    CancelTimer,
    ControlAccepted,
    EmitStatusUpdate,
    Handoff,
    Hangup,
    Hold,
    MuteAssistant,
    MuteCustomer,
    Originate,
    PersistStatus,
    QueuedItem,
    RecordEvent,
    Rejected,
    SayFirstMessage,
    ScheduleTimer,
    SealArtifacts,
    SendDtmf,
    Speak,
    StartFork,
    StopFork,
    Transfer,
    Unhold,
    UnmuteAssistant,
    UnmuteCustomer,
)
from esl_controller.calls.control import (
    AddMessageCommand,
    ChannelControlCommand,
    ControlCommand,
    DtmfCommand,
    EndCallCommand,
    HandoffCommand,
    SayCommand,
    TransferCommand,
    command_name,
)
from esl_controller.calls.inputs import (  # noqa: F401 - re-exported
    AssistantEndedCall,
    CallCreated,
    CallInput,
    CallSetupFailed,
    ChannelAnswer,
    ChannelBridge,
    ChannelCreate,
    ChannelExecuteComplete,
    ChannelHangup,
    ChannelHangupComplete,
    ChannelProgress,
    ChannelProgressMedia,
    CommandFailed,
    CommandTimeout,
    ControlRequest,
    Dtmf,
    ForkClosed,
    ForkConnected,
    ForkError,
    MaxDurationElapsed,
    OriginateAccepted,
    OriginateFailed,
    PipelineError,
    PipelineReady,
    ReconcileFound,
    ReconcileNotFound,
    RingTimeout,
    RuntimeRestarted,
    RuntimeShutdown,
    SilenceTimeout,
    SocketDisconnected,
    TransferCompleted,
    WebClientConnected,
)

QUEUED, RINGING, IN_PROGRESS, FORWARDING, ENDED = (
    "queued",
    "ringing",
    "in-progress",
    "forwarding",
    "ended",
)
STATUS_ORDER = (QUEUED, RINGING, IN_PROGRESS, FORWARDING, ENDED)
CALL_TYPES: Mapping[str, str] = {
    "inbound": "inboundPhoneCall",
    "outbound": "outboundPhoneCall",
    "web": "webCall",
}
TIMER_RING, TIMER_MAX_DURATION, TIMER_ANSWER = "ring", "max-duration", "answer"
TIMER_HANGUP, TIMER_FORK, TIMER_TRANSFER = "hangup", "fork", "transfer"


@dataclass(frozen=True)
class CallConfig:
    """Per-call knobs, taken from the assistant and the runtime config when the call is created."""

    max_duration_seconds: float | None = 600.0
    ring_timeout_seconds: float | None = 60.0
    command_timeout_seconds: float = 10.0
    transfer_timeout_seconds: float = 60.0
    #: phone calls: start mod_audio_fork when answered
    start_fork: bool = True


# -- state -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CallState:
    call_id: str
    #: inbound | outbound | web
    direction: str
    config: CallConfig = CallConfig()
    status: str = QUEUED
    channel_uuid: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    ended_reason: str | None = None
    ended_message: str | None = None
    #: as FreeSWITCH reported it (Hangup-Cause / -ERR cause), with the SIP side when known
    hangup_cause: str | None = None
    sip_code: int | None = None
    hangup_disposition: str | None = None
    billsec: int | None = None
    answered: bool = False
    fork_started: bool = False
    fork_connected: bool = False
    assistant_muted: bool = False
    customer_muted: bool = False
    on_hold: bool = False
    pipeline_ready: bool = False
    #: we asked for a hangup and wait for FreeSWITCH to confirm it; its reason wins
    hangup_pending: bool = False
    hangup_reason: str | None = None
    hangup_message: str | None = None
    pending_transfer: TransferCommand | None = None
    #: speech and messages accepted before the pipeline was ready, in order
    queued: tuple[QueuedItem, ...] = ()
    seen_event_ids: frozenset[str] = frozenset()
    #: timers currently scheduled
    timers: frozenset[str] = frozenset()

    @property
    def type(self) -> str:
        return CALL_TYPES[self.direction]

    @property
    def is_live(self) -> bool:
        return self.status != ENDED

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return max(0.0, (self.ended_at - self.started_at).total_seconds())


def new_call(
    call_id: str,
    direction: str,
    *,
    at: datetime | None = None,
    channel_uuid: str | None = None,
    config: CallConfig | None = None,
) -> CallState:
    """A queued call. Feed it :class:`CallCreated` next."""
    if direction not in CALL_TYPES:
        raise ValueError(f"direction must be one of {sorted(CALL_TYPES)}, not {direction!r}")
    return CallState(
        call_id=call_id,
        direction=direction,
        config=config or CallConfig(),
        channel_uuid=channel_uuid,
        created_at=at,
    )


_ASSISTANT_REASONS = frozenset(
    {
        er.ASSISTANT_ENDED_CALL,
        er.ASSISTANT_SAID_END_CALL_PHRASE,
        er.ASSISTANT_ENDED_CALL_AFTER_MESSAGE_SPOKEN,
        er.ASSISTANT_ENDED_CALL_WITH_HANGUP_TASK,
    }
)
_TIMER_OF: Mapping[type, str] = {RingTimeout: TIMER_RING, MaxDurationElapsed: TIMER_MAX_DURATION}

Result = tuple[CallState, list[Action]]


# -- helpers ---------------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(v) for k, v in asdict(value).items()}
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _describe(event: CallInput) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for f in fields(event):
        if f.name in ("at", "event_id"):
            continue
        value = getattr(event, f.name)
        if f.name == "command":
            data["command"] = command_name(value)
            data["body"] = _jsonable(value)
        elif value is not None:
            data[f.name] = _jsonable(value)
    return data


def _record(event: CallInput, level: str = "INFO", **extra: Any) -> RecordEvent:
    kind = event.KIND
    if isinstance(event, ControlRequest):
        kind = f"control.{command_name(event.command)}"
    elif isinstance(event, CommandTimeout):
        kind = f"timer.{event.what}"
    return RecordEvent(kind, {**_describe(event), **extra}, event.SOURCE, level)


def _schedule(state: CallState, name: str, seconds: float | None, out: list[Action]) -> CallState:
    if seconds is None or seconds <= 0:
        return state
    out.append(ScheduleTimer(name, float(seconds)))
    return replace(state, timers=state.timers | {name})


def _cancel(state: CallState, names: tuple[str, ...], out: list[Action]) -> CallState:
    live = [n for n in names if n in state.timers]
    out.extend(CancelTimer(n) for n in live)
    return replace(state, timers=state.timers - set(live)) if live else state


def _advance(state: CallState, to: str, out: list[Action], **persist: Any) -> CallState:
    """Move the status forward (never back); persist and announce it."""
    if STATUS_ORDER.index(to) <= STATUS_ORDER.index(state.status):
        return state
    out.append(PersistStatus(to, persist))
    out.append(EmitStatusUpdate(to))
    out.append(RecordEvent("status.changed", {"from": state.status, "to": to}))
    return replace(state, status=to)


def _end(
    state: CallState,
    at: datetime,
    reason: str,
    out: list[Action],
    *,
    message: str | None = None,
    hangup: str | None = None,
    cause: str | None = None,
    sip_code: int | None = None,
    disposition: str | None = None,
) -> CallState:
    """End the call. A hangup we requested earlier keeps its reason; ``hangup`` sends one now."""
    if state.hangup_pending and state.hangup_reason:
        reason, message = state.hangup_reason, state.hangup_message or message
    prior = state.status
    state = _cancel(state, tuple(sorted(state.timers)), out)
    if state.fork_started:
        out.append(StopFork())
    if hangup is not None:
        out.append(Hangup(hangup))
    state = replace(
        state,
        status=ENDED,
        ended_at=at,
        ended_reason=reason,
        ended_message=message,
        hangup_cause=cause or state.hangup_cause,
        sip_code=sip_code if sip_code is not None else state.sip_code,
        hangup_disposition=disposition or state.hangup_disposition,
        fork_started=False,
        fork_connected=False,
        hangup_pending=False,
        pending_transfer=None,
        queued=(),
    )
    persist: dict[str, Any] = {"ended_at": at, "ended_reason": reason}
    if message:
        persist["ended_message"] = message
    if state.hangup_cause:
        persist["hangup_cause"] = state.hangup_cause
    if state.duration_seconds is not None:
        persist["duration_seconds"] = state.duration_seconds
    out.append(PersistStatus(ENDED, persist))
    out.append(EmitStatusUpdate(ENDED, reason))
    out.append(RecordEvent("status.changed", {"from": prior, "to": ENDED, "endedReason": reason}))
    out.append(SealArtifacts())
    return state


def _request_hangup(
    state: CallState,
    at: datetime,
    reason: str,
    out: list[Action],
    *,
    cause: str = "NORMAL_CLEARING",
    message: str | None = None,
) -> CallState:
    """Ask for a hangup; the call ends when FreeSWITCH confirms it (web calls: at once)."""
    if state.hangup_pending:
        return state
    if state.direction == "web":
        return _end(state, at, reason, out, message=message, hangup=cause)
    out.append(Hangup(cause))
    out.append(RecordEvent("hangup.requested", {"reason": reason, "cause": cause}))
    state = replace(state, hangup_pending=True, hangup_reason=reason, hangup_message=message)
    return _schedule(state, TIMER_HANGUP, state.config.command_timeout_seconds, out)


def _answer(state: CallState, at: datetime, out: list[Action]) -> CallState:
    if state.answered:
        return state
    state = replace(state, answered=True, started_at=at)
    state = _cancel(state, (TIMER_RING, TIMER_ANSWER), out)
    state = _advance(state, IN_PROGRESS, out, started_at=at)
    if state.hangup_pending:
        # Answered while our hangup was in flight (e.g. a cancelled originate that won the race).
        out.append(Hangup("NORMAL_CLEARING"))
        return state
    state = _schedule(state, TIMER_MAX_DURATION, state.config.max_duration_seconds, out)
    if state.direction != "web" and state.config.start_fork:
        out.append(StartFork())
        state = replace(state, fork_started=True)
        state = _schedule(state, TIMER_FORK, state.config.command_timeout_seconds, out)
    return state


# -- handlers (state is live here) -----------------------------------------------------------------

Handler = Callable[[CallState, Any, list], CallState]


def _on_created(state: CallState, event: CallCreated, out: list[Action]) -> CallState:
    if state.created_at is None:
        state = replace(state, created_at=event.at)
    if state.direction == "outbound" and state.status == QUEUED:
        out.append(Originate())
    if state.direction in ("outbound", "web") and not state.answered:
        state = _schedule(state, TIMER_RING, state.config.ring_timeout_seconds, out)
    return state


def _on_channel_create(state: CallState, event: ChannelCreate, out: list[Action]) -> CallState:
    if event.channel_uuid and not state.channel_uuid:
        state = replace(state, channel_uuid=event.channel_uuid)
    if state.direction != "inbound" or state.answered:
        return state
    state = _advance(state, RINGING, out, channel_uuid=state.channel_uuid)
    if not event.already_answered and TIMER_ANSWER not in state.timers:
        out.append(Answer())
        state = _schedule(state, TIMER_ANSWER, state.config.command_timeout_seconds, out)
    return state


def _on_progress(state: CallState, event: CallInput, out: list[Action]) -> CallState:
    return _advance(state, RINGING, out)


def _on_answer(state: CallState, event: CallInput, out: list[Action]) -> CallState:
    return _answer(state, event.at, out)


def _on_web_connected(state: CallState, event: WebClientConnected, out: list[Action]) -> CallState:
    return _answer(state, event.at, out) if state.direction == "web" else state


def _on_originate_accepted(
    state: CallState, event: OriginateAccepted, out: list[Action]
) -> CallState:
    if event.channel_uuid and not state.channel_uuid:
        state = replace(state, channel_uuid=event.channel_uuid)
    if event.answered:
        return _answer(state, event.at, out)
    return _advance(state, RINGING, out)


def _on_originate_failed(state: CallState, event: OriginateFailed, out: list[Action]) -> CallState:
    if state.answered:
        return state  # a stale job result; the channel events decide
    reason = er.originate_failure_reason(event.cause, event.sip_code)
    cause = er.normalize_cause(event.cause, event.sip_code)
    return _end(
        state, event.at, reason, out, message=event.message, cause=cause, sip_code=event.sip_code
    )


def _on_bridge(state: CallState, event: ChannelBridge, out: list[Action]) -> CallState:
    if state.status == FORWARDING:
        return _end(state, event.at, er.ASSISTANT_FORWARDED_CALL, out)
    return state


def _on_hangup(state: CallState, event: ChannelHangup, out: list[Action]) -> CallState:
    if isinstance(event, ChannelHangupComplete) and event.billsec is not None:
        state = replace(state, billsec=event.billsec)
    reason = er.hangup_reason(
        event.cause,
        direction=state.direction,
        answered=state.answered,
        sip_code=event.sip_code,
        disposition=event.disposition,
        forwarding=state.status == FORWARDING,
    )
    return _end(
        state,
        event.at,
        reason,
        out,
        cause=er.normalize_cause(event.cause, event.sip_code),
        sip_code=event.sip_code,
        disposition=event.disposition,
    )


def _on_socket_disconnected(
    state: CallState, event: SocketDisconnected, out: list[Action]
) -> CallState:
    if state.direction == "web":
        return _end(state, event.at, er.CUSTOMER_ENDED_CALL, out)
    if state.status == FORWARDING:
        # uuid_transfer takes the channel out of our socket's park: it has gone where we sent it.
        return _end(state, event.at, er.ASSISTANT_FORWARDED_CALL, out)
    if event.notice or state.hangup_pending:
        reason = er.hangup_reason(None, direction=state.direction, answered=state.answered)
        return _end(state, event.at, reason, out)
    return _end(
        state,
        event.at,
        er.PROVIDER_CLOSED_CONNECTION,
        out,
        message="connection to FreeSWITCH dropped",
        hangup="NORMAL_CLEARING",
    )


def _on_fork_connected(state: CallState, event: ForkConnected, out: list[Action]) -> CallState:
    state = _cancel(state, (TIMER_FORK,), out)
    return replace(state, fork_connected=True)


def _on_fork_closed(state: CallState, event: ForkClosed, out: list[Action]) -> CallState:
    return replace(state, fork_connected=False, fork_started=False)


def _fork_failed(state: CallState, at: datetime, message: str, out: list[Action]) -> CallState:
    if state.fork_started and not state.fork_connected and state.answered:
        return _end(
            state, at, er.TRANSPORT_NEVER_CONNECTED, out, message=message, hangup="NORMAL_CLEARING"
        )
    return state


def _on_fork_error(state: CallState, event: ForkError, out: list[Action]) -> CallState:
    return _fork_failed(state, event.at, event.message or "audio fork failed", out)


def _on_timer(state: CallState, event: CallInput, out: list[Action]) -> CallState:
    if isinstance(event, MaxDurationElapsed) and state.answered:
        return _request_hangup(state, event.at, er.EXCEEDED_MAX_DURATION, out)
    if isinstance(event, RingTimeout) and not state.answered:
        return _request_hangup(state, event.at, er.CUSTOMER_DID_NOT_ANSWER, out, cause="NO_ANSWER")
    if isinstance(event, SilenceTimeout) and state.status == IN_PROGRESS:
        return _request_hangup(state, event.at, er.SILENCE_TIMED_OUT, out)
    return state


def _command_trouble(
    state: CallState, at: datetime, what: str, detail: str, out: list
) -> CallState:
    """A command for one of our actions failed or was never answered."""
    if what == TIMER_HANGUP and state.hangup_pending:
        return _end(state, at, state.hangup_reason or er.MANUALLY_CANCELED, out, message=detail)
    if what == TIMER_ANSWER and not state.answered:
        return _end(
            state,
            at,
            er.SIP_INBOUND_FAILED_TO_CONNECT,
            out,
            message=detail,
            hangup="NORMAL_CLEARING",
        )
    if what == TIMER_FORK:
        return _fork_failed(state, at, detail, out)
    if what == TIMER_TRANSFER and state.status == FORWARDING:
        return _end(state, at, er.TRANSFER_FAILED, out, message=detail, hangup="NORMAL_CLEARING")
    if what == "originate" and not state.answered:
        return _end(
            state,
            at,
            er.SIP_OUTBOUND_FAILED_TO_CONNECT,
            out,
            message=detail,
            hangup="NORMAL_CLEARING",
        )
    return state


def _on_command_timeout(state: CallState, event: CommandTimeout, out: list[Action]) -> CallState:
    detail = f"FreeSWITCH did not confirm {event.what} in time"
    return _command_trouble(state, event.at, event.what, detail, out)


def _on_command_failed(state: CallState, event: CommandFailed, out: list[Action]) -> CallState:
    detail = f"{event.what} failed: {event.reply}".strip().rstrip(":")
    return _command_trouble(state, event.at, event.what, detail, out)


def _on_pipeline_ready(state: CallState, event: PipelineReady, out: list[Action]) -> CallState:
    out.extend(state.queued)
    return replace(state, pipeline_ready=True, queued=())


def _on_pipeline_error(state: CallState, event: PipelineError, out: list[Action]) -> CallState:
    reason = er.pipeline_reason(event.kind)
    return _request_hangup(state, event.at, reason, out, message=event.message)


def _on_assistant_ended(
    state: CallState, event: AssistantEndedCall, out: list[Action]
) -> CallState:
    reason = event.reason if event.reason in _ASSISTANT_REASONS else er.ASSISTANT_ENDED_CALL
    return _request_hangup(state, event.at, reason, out, message=event.message)


def _on_transfer_completed(
    state: CallState, event: TransferCompleted, out: list[Action]
) -> CallState:
    return _end(state, event.at, er.ASSISTANT_FORWARDED_CALL, out)


def _on_setup_failed(state: CallState, event: CallSetupFailed, out: list[Action]) -> CallState:
    has_leg = state.direction == "web" or state.channel_uuid is not None
    return _end(
        state,
        event.at,
        event.reason,
        out,
        message=event.message,
        hangup=event.cause if has_leg else None,
    )


def _on_runtime(state: CallState, event: CallInput, out: list[Action]) -> CallState:
    if isinstance(event, RuntimeShutdown):
        return _end(state, event.at, er.WORKER_SHUTDOWN, out, hangup="SYSTEM_SHUTDOWN")
    if isinstance(event, RuntimeRestarted):
        message = "the runtime restarted and could not re-attach the call"
        return _end(state, event.at, er.WORKER_DIED, out, message=message, hangup="NORMAL_CLEARING")
    if isinstance(event, ReconcileNotFound):
        message = "the channel was gone when the runtime restarted"
        return _end(state, event.at, er.WORKER_DIED, out, message=message)
    return state


def _noop(state: CallState, event: CallInput, out: list[Action]) -> CallState:
    return state


# -- control ---------------------------------------------------------------------------------------

_TOGGLES: Mapping[str, tuple[str, bool, Action]] = {
    "mute-assistant": ("assistant_muted", True, MuteAssistant()),
    "unmute-assistant": ("assistant_muted", False, UnmuteAssistant()),
    "mute-customer": ("customer_muted", True, MuteCustomer()),
    "unmute-customer": ("customer_muted", False, UnmuteCustomer()),
    "hold": ("on_hold", True, Hold()),
    "unhold": ("on_hold", False, Unhold()),
}
_NEEDS_ANSWER = (TransferCommand, DtmfCommand)


def _speech(state: CallState, item: QueuedItem, command: ControlCommand, out: list) -> CallState:
    """Say/add-message/say-first-message: now if the pipeline is ready, else queued in state."""
    if state.pipeline_ready:
        if isinstance(item, Speak) and item.interrupt:
            out.append(BreakPlayback())
        out.append(item)
        out.append(ControlAccepted(command))
        return state
    out.append(ControlAccepted(command, queued=True))
    return replace(state, queued=(*state.queued, item))


def _on_control(state: CallState, event: ControlRequest, out: list[Action]) -> CallState:
    cmd = event.command
    name = command_name(cmd)
    if isinstance(cmd, EndCallCommand):
        state = _request_hangup(state, event.at, er.MANUALLY_CANCELED, out)
        out.append(ControlAccepted(cmd))
        return state
    if state.hangup_pending:
        out.append(Rejected(cmd, "the call is ending"))
        return state
    if state.status == FORWARDING:
        out.append(Rejected(cmd, "the call is being transferred"))
        return state
    needs_answer = isinstance(cmd, _NEEDS_ANSWER) or name in ("hold", "unhold")
    if needs_answer and state.status != IN_PROGRESS:
        out.append(Rejected(cmd, f"{name} needs an answered call; the call is {state.status}"))
        return state
    if isinstance(cmd, SayCommand):
        item: QueuedItem = Speak(
            cmd.content,
            end_call_after=cmd.end_call_after_spoken,
            interruptions_enabled=cmd.interruptions_enabled,
            interrupt=cmd.interrupt_assistant,
        )
        return _speech(state, item, cmd, out)
    if isinstance(cmd, AddMessageCommand):
        item = AddMessage(cmd.role, cmd.content, trigger_response=cmd.trigger_response)
        return _speech(state, item, cmd, out)
    if isinstance(cmd, ChannelControlCommand) and cmd.name == "say-first-message":
        return _speech(state, SayFirstMessage(), cmd, out)
    if isinstance(cmd, ChannelControlCommand) and cmd.name in _TOGGLES:
        flag, value, action = _TOGGLES[cmd.name]
        if getattr(state, flag) != value:
            out.append(action)
            state = replace(state, **{flag: value})
        out.append(ControlAccepted(cmd))
        return state
    if isinstance(cmd, DtmfCommand):
        out.append(SendDtmf(cmd.digits))
    elif isinstance(cmd, HandoffCommand):
        out.append(Handoff(cmd.assistant_id, cmd.assistant_name, cmd.assistant, cmd.content))
    elif isinstance(cmd, TransferCommand):
        dest = cmd.destination
        mode = "refer" if dest.type == "sip" else "blind"
        out.append(Transfer(dest.target, mode, dest.extension, cmd.content))
        state = replace(state, pending_transfer=cmd)
        state = _advance(state, FORWARDING, out, destination=_jsonable(dest))
        state = _schedule(state, TIMER_TRANSFER, state.config.transfer_timeout_seconds, out)
    else:  # a command type this reducer does not know: refuse rather than drop it
        out.append(Rejected(cmd, f"{name} is not supported", status_code=400))
        return state
    out.append(ControlAccepted(cmd))
    return state


_HANDLERS: Mapping[type, Handler] = {
    CallCreated: _on_created,
    ChannelCreate: _on_channel_create,
    ChannelProgress: _on_progress,
    ChannelProgressMedia: _on_progress,
    ChannelAnswer: _on_answer,
    ChannelBridge: _on_bridge,
    ChannelHangup: _on_hangup,
    ChannelHangupComplete: _on_hangup,
    ChannelExecuteComplete: _noop,
    Dtmf: _noop,
    ForkConnected: _on_fork_connected,
    ForkClosed: _on_fork_closed,
    ForkError: _on_fork_error,
    WebClientConnected: _on_web_connected,
    OriginateAccepted: _on_originate_accepted,
    OriginateFailed: _on_originate_failed,
    SocketDisconnected: _on_socket_disconnected,
    ControlRequest: _on_control,
    MaxDurationElapsed: _on_timer,
    RingTimeout: _on_timer,
    SilenceTimeout: _on_timer,
    CommandTimeout: _on_command_timeout,
    CommandFailed: _on_command_failed,
    PipelineReady: _on_pipeline_ready,
    PipelineError: _on_pipeline_error,
    AssistantEndedCall: _on_assistant_ended,
    TransferCompleted: _on_transfer_completed,
    CallSetupFailed: _on_setup_failed,
    RuntimeShutdown: _on_runtime,
    RuntimeRestarted: _on_runtime,
    ReconcileNotFound: _on_runtime,
    ReconcileFound: _noop,
}
INPUT_TYPES = tuple(_HANDLERS)


def _after_end(state: CallState, event: CallInput, out: list[Action]) -> CallState:
    """Inputs that arrive once the call has ended: recorded, and answered if they need it."""
    if isinstance(event, ControlRequest):
        out.append(_record(event, ignored="call ended"))
        out.append(Rejected(event.command, "the call has ended"))
        return state
    if isinstance(event, ChannelHangupComplete):
        out.append(_record(event, late=True))
        if event.billsec is not None and state.billsec is None:
            state = replace(state, billsec=event.billsec)
            out.append(PersistStatus(ENDED, {"billsec": event.billsec}))
        return state
    out.append(_record(event, ignored="call ended"))
    return state


def reduce(state: CallState, event: CallInput) -> Result:
    """Apply one input; return the new state and the actions to execute, in order."""
    handler = _HANDLERS.get(type(event))
    if handler is None:
        raise TypeError(f"not a call input: {type(event).__name__}")
    out: list[Action] = []
    if event.event_id is not None:
        if event.event_id in state.seen_event_ids:
            if isinstance(event, ControlRequest):
                out.append(ControlAccepted(event.command, duplicate=True))
            return state, out
        state = replace(state, seen_event_ids=state.seen_event_ids | {event.event_id})
    timer = event.what if isinstance(event, CommandTimeout) else _TIMER_OF.get(type(event))
    if timer is not None and timer in state.timers:
        state = replace(state, timers=state.timers - {timer})
    if state.status == ENDED:
        return _after_end(state, event, out), out
    out.append(_record(event))
    return handler(state, event, out), out
