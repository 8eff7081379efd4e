"""Actions: what a call session does when the reducer (``calls/state.py``) asks. Frozen, pure data."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from esl_controller.calls.control import ControlCommand

# -- actions (what the session does) ---------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """uuid_answer the channel."""


@dataclass(frozen=True)
class Originate:
    """Place the outbound leg (bgapi originate with origination_uuid); the session builds it."""


@dataclass(frozen=True)
class StartFork:
    """uuid_audio_fork start towards our fork WebSocket server."""


@dataclass(frozen=True)
class StopFork:
    pass


@dataclass(frozen=True)
class Hangup:
    """Phone calls: uuid_kill with ``cause``. Web calls: close the client transport."""

    cause: str = "NORMAL_CLEARING"


@dataclass(frozen=True)
class BreakPlayback:
    pass


@dataclass(frozen=True)
class Speak:
    text: str
    end_call_after: bool = False
    interruptions_enabled: bool = True
    #: replace current speech (the session breaks playback first)
    interrupt: bool = False


@dataclass(frozen=True)
class AddMessage:
    role: str
    content: str
    trigger_response: bool = True


@dataclass(frozen=True)
class SayFirstMessage:
    pass


@dataclass(frozen=True)
class Transfer:
    """``mode`` "blind": uuid_transfer to bridge the number through the gateway; "refer": deflect."""

    destination: str
    mode: str
    extension: str | None = None
    #: spoken before transferring, when given
    announcement: str | None = None


@dataclass(frozen=True)
class Handoff:
    assistant_id: str | None = None
    assistant_name: str | None = None
    assistant: Mapping[str, Any] | None = field(default=None, hash=False)
    content: str | None = None


@dataclass(frozen=True)
class SendDtmf:
    digits: str


@dataclass(frozen=True)
class MuteAssistant:
    pass


@dataclass(frozen=True)
class UnmuteAssistant:
    pass


@dataclass(frozen=True)
class MuteCustomer:
    pass


@dataclass(frozen=True)
class UnmuteCustomer:
    pass


@dataclass(frozen=True)
class Hold:
    pass


@dataclass(frozen=True)
class Unhold:
    pass


@dataclass(frozen=True)
class PersistStatus:
    """Write the Call row. ``fields`` keys: started_at, ended_at, ended_reason, ended_message,
    hangup_cause, duration_seconds, channel_uuid, destination, billsec (only those given)."""

    status: str
    fields: Mapping[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class EmitStatusUpdate:
    """Queue a Vapi ``status-update`` server message."""

    status: str
    ended_reason: str | None = None


@dataclass(frozen=True)
class RecordEvent:
    """Append a CallEvent. ``source``: esl | api | pipeline | runtime."""

    kind: str
    data: Mapping[str, Any] = field(default_factory=dict, hash=False)
    source: str = "runtime"
    level: str = "INFO"


@dataclass(frozen=True)
class ScheduleTimer:
    """(Re)start the named timer."""

    name: str
    seconds: float


@dataclass(frozen=True)
class CancelTimer:
    name: str


@dataclass(frozen=True)
class SealArtifacts:
    """Close recordings, transcript and logs; queue the end-of-call report."""


@dataclass(frozen=True)
class ControlAccepted:
    command: ControlCommand
    #: held in ``CallState.queued`` until the pipeline is ready
    queued: bool = False
    duplicate: bool = False


@dataclass(frozen=True)
class Rejected:
    command: ControlCommand
    message: str
    status_code: int = 409


Action = (
    Answer
    | Originate
    | StartFork
    | StopFork
    | Hangup
    | BreakPlayback
    | Speak
    | AddMessage
    | SayFirstMessage
    | Transfer
    | Handoff
    | SendDtmf
    | MuteAssistant
    | UnmuteAssistant
    | MuteCustomer
    | UnmuteCustomer
    | Hold
    | Unhold
    | PersistStatus
    | EmitStatusUpdate
    | RecordEvent
    | ScheduleTimer
    | CancelTimer
    | SealArtifacts
    | ControlAccepted
    | Rejected
)
QueuedItem = Speak | AddMessage | SayFirstMessage
