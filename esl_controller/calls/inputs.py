"""Inputs of the call reducer (``calls/state.py``): ESL events normalised by the I/O layer, originate results,
API control requests, timers, media and pipeline events. Frozen, pure data; each carries ``at`` and an optional
``event_id`` (a repeated id is ignored by the reducer)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar

from esl_controller.calls import ended_reason as er
from esl_controller.calls.control import ControlCommand

# -- inputs ----------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CallInput:
    KIND: ClassVar[str] = "input"
    SOURCE: ClassVar[str] = "runtime"
    at: datetime
    #: Event-UUID, Core-UUID:Event-Sequence, a control request id...: repeated ids are ignored
    event_id: str | None = None


def _input(kind: str, source: str) -> Callable[[type], type]:
    def wrap(cls: type) -> type:
        cls.KIND, cls.SOURCE = kind, source
        return dataclass(frozen=True, kw_only=True)(cls)

    return wrap


@_input("call.created", "runtime")
class CallCreated(CallInput):
    """First input of every call: outbound calls originate, web calls wait for their client."""


@_input("channel.create", "esl")
class ChannelCreate(CallInput):
    channel_uuid: str | None = None
    #: Answer-State was already "answered" (answered in the dialplan): no Answer action
    already_answered: bool = False


@_input("channel.progress", "esl")
class ChannelProgress(CallInput):
    pass


@_input("channel.progress_media", "esl")
class ChannelProgressMedia(CallInput):
    pass


@_input("channel.answer", "esl")
class ChannelAnswer(CallInput):
    pass


@_input("channel.bridge", "esl")
class ChannelBridge(CallInput):
    other_uuid: str | None = None


@_input("channel.hangup", "esl")
class ChannelHangup(CallInput):
    #: Hangup-Cause name (or a Q.850 number)
    cause: str | None = None
    sip_code: int | None = None
    #: variable_sip_hangup_disposition: recv_bye, send_bye, recv_cancel, send_refuse...
    disposition: str | None = None


@_input("channel.hangup_complete", "esl")
class ChannelHangupComplete(ChannelHangup):
    billsec: int | None = None
    duration: int | None = None


@_input("channel.execute_complete", "esl")
class ChannelExecuteComplete(CallInput):
    application: str
    response: str | None = None


@_input("dtmf", "esl")
class Dtmf(CallInput):
    digit: str


@_input("fork.connected", "esl")
class ForkConnected(CallInput):
    pass


@_input("fork.closed", "esl")
class ForkClosed(CallInput):
    reason: str | None = None


@_input("fork.error", "esl")
class ForkError(CallInput):
    message: str = ""


@_input("web.connected", "runtime")
class WebClientConnected(CallInput):
    """The web call's client joined its transport: the web call's answer."""


@_input("originate.accepted", "esl")
class OriginateAccepted(CallInput):
    channel_uuid: str | None = None
    #: +OK from an originate with ignore_early_media=true means the leg answered
    answered: bool = True


@_input("originate.failed", "esl")
class OriginateFailed(CallInput):
    cause: str | None = None
    sip_code: int | None = None
    message: str | None = None


@_input("socket.disconnected", "esl")
class SocketDisconnected(CallInput):
    """The call's socket closed: ESL outbound socket (``notice``: FreeSWITCH sent its disconnect
    notice, i.e. the channel went down) or the web call's transport."""

    notice: bool = True


@_input("control", "api")
class ControlRequest(CallInput):
    command: ControlCommand


@_input("timer.max-duration", "runtime")
class MaxDurationElapsed(CallInput):
    pass


@_input("timer.ring", "runtime")
class RingTimeout(CallInput):
    pass


@_input("timer.silence", "pipeline")
class SilenceTimeout(CallInput):
    pass


@_input("timer.command", "runtime")
class CommandTimeout(CallInput):
    #: the timer name: answer, hangup, fork, transfer, originate...
    what: str


@_input("command.failed", "esl")
class CommandFailed(CallInput):
    """An ESL command we sent for an action answered -ERR (``what`` as in CommandTimeout)."""

    what: str
    reply: str = ""


@_input("pipeline.ready", "pipeline")
class PipelineReady(CallInput):
    pass


@_input("pipeline.error", "pipeline")
class PipelineError(CallInput):
    #: the endedReason, e.g. pipeline-error-openai-llm-failed
    kind: str
    message: str | None = None


@_input("assistant.ended-call", "pipeline")
class AssistantEndedCall(CallInput):
    reason: str = er.ASSISTANT_ENDED_CALL
    message: str | None = None


@_input("transfer.completed", "esl")
class TransferCompleted(CallInput):
    pass


@_input("call.setup-failed", "runtime")
class CallSetupFailed(CallInput):
    #: endedReason, e.g. assistant-request-failed
    reason: str
    message: str | None = None
    cause: str = "CALL_REJECTED"


@_input("runtime.shutdown", "runtime")
class RuntimeShutdown(CallInput):
    pass


@_input("runtime.restarted", "runtime")
class RuntimeRestarted(CallInput):
    """Found live after a restart and cannot be re-attached."""


@_input("reconcile.not-found", "runtime")
class ReconcileNotFound(CallInput):
    pass


@_input("reconcile.found", "runtime")
class ReconcileFound(CallInput):
    pass
