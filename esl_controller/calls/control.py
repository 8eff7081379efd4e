"""Live call control bodies (``POST /call/:id/control``, ``monitor.controlUrl``) -> typed commands.

Pure. :func:`parse_control` takes the decoded JSON body and returns one frozen command, or raises
:class:`ControlError` with human-readable messages (the API answers 400 with them). Shapes follow
Vapi's live call control (api-compat.md section 12): ``say``, ``add-message``, ``end-call``,
``transfer``, ``handoff``, ``control`` (``mute-assistant``, ``unmute-assistant``, ``mute-customer``,
``unmute-customer``, ``say-first-message``), plus ours: ``dtmf`` and ``hold``/``unhold`` (either as
``{"type": "hold"}`` or ``{"type": "control", "control": "hold"}``).

Unknown fields are ignored (Vapi clients send extras); known fields are checked strictly. Values
that end up in ESL commands (numbers, SIP URIs, DTMF digits) are limited to characters that cannot
break FreeSWITCH's argument quoting.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator

MAX_TEXT_CHARS = 4000
MAX_DTMF_DIGITS = 64

CONTROL_NAMES = (
    "mute-assistant",
    "unmute-assistant",
    "mute-customer",
    "unmute-customer",
    "say-first-message",
    "hold",
    "unhold",
)
MESSAGE_ROLES = ("system", "user", "assistant")

_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
_LOOSE_NUMBER = re.compile(r"^\+?[0-9]{1,20}$")
_EXTENSION = re.compile(r"^[0-9*#]{1,16}$")
_SIP_URI = re.compile(
    r"^sips?:(?:[A-Za-z0-9\-_.!~*()&=+$,;?/%]+@)?"
    r"(?:[A-Za-z0-9\-.]+|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?"
    r"(?:;[A-Za-z0-9\-_.=%]+)*$"
)
_DTMF = re.compile(r"^[0-9*#A-Dw]+$")
_ASSISTANT_NAME = re.compile(r"^[^\x00-\x1f]{1,100}$")


class ControlError(ValueError):
    """A control body that cannot be accepted; ``messages`` are shown to the API client."""

    def __init__(self, messages: list[str]) -> None:
        super().__init__("; ".join(messages))
        self.messages = list(messages)


# -- commands (the output) -------------------------------------------------------------------------


@dataclass(frozen=True)
class SayCommand:
    content: str
    end_call_after_spoken: bool = False
    interruptions_enabled: bool = True
    #: replace what the assistant is saying now instead of queueing after it
    interrupt_assistant: bool = False


@dataclass(frozen=True)
class AddMessageCommand:
    role: str
    content: str
    #: false inserts the message silently, without an assistant turn
    trigger_response: bool = True


@dataclass(frozen=True)
class EndCallCommand:
    pass


@dataclass(frozen=True)
class TransferDestination:
    #: "number" or "sip"
    type: str
    number: str | None = None
    extension: str | None = None
    sip_uri: str | None = None

    @property
    def target(self) -> str:
        """The number or SIP URI to send the call to."""
        return self.sip_uri if self.type == "sip" else (self.number or "")


@dataclass(frozen=True)
class TransferCommand:
    destination: TransferDestination
    #: spoken to the caller before the transfer
    content: str | None = None


@dataclass(frozen=True)
class HandoffCommand:
    assistant_id: str | None = None
    assistant_name: str | None = None
    #: an inline assistant (validated by the assistant schema when the handoff runs)
    assistant: Mapping[str, Any] | None = field(default=None, hash=False, compare=True)
    content: str | None = None


@dataclass(frozen=True)
class DtmfCommand:
    #: 0-9 * # A-D, ``w`` = 0.5 s pause, ``W`` = 1 s pause (normalised to upper-case A-D)
    digits: str


@dataclass(frozen=True)
class ChannelControlCommand:
    #: one of CONTROL_NAMES
    name: str


ControlCommand = (
    SayCommand
    | AddMessageCommand
    | EndCallCommand
    | TransferCommand
    | HandoffCommand
    | DtmfCommand
    | ChannelControlCommand
)

# -- wire models (internal) ------------------------------------------------------------------------

_Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT_CHARS, strict=True)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=False, frozen=True)


class _Say(_Body):
    content: _Text
    endCallAfterSpoken: StrictBool = False
    interruptionsEnabled: StrictBool = True
    interruptAssistantEnabled: StrictBool = False

    @field_validator("content")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


class _Message(_Body):
    role: Literal["system", "user", "assistant"]
    content: _Text


class _AddMessage(_Body):
    message: _Message
    triggerResponseEnabled: StrictBool = True


class _Destination(_Body):
    type: Literal["number", "sip"]
    number: Annotated[str, Field(strict=True, max_length=32)] | None = None
    extension: Annotated[str, Field(strict=True, max_length=16)] | None = None
    sipUri: Annotated[str, Field(strict=True, max_length=256)] | None = None
    numberE164CheckEnabled: StrictBool = True
    message: _Text | None = None


class _Transfer(_Body):
    destination: _Destination
    content: _Text | None = None


class _AssistantDestination(_Body):
    type: Literal["assistant"] = "assistant"
    assistantId: Annotated[str, Field(strict=True, min_length=1, max_length=64)] | None = None
    assistantName: Annotated[str, Field(strict=True, min_length=1, max_length=100)] | None = None
    assistant: dict[str, Any] | None = None


class _Handoff(_Body):
    destination: _AssistantDestination
    content: _Text | None = None


class _Dtmf(_Body):
    digits: Annotated[str, Field(strict=True, min_length=1, max_length=MAX_DTMF_DIGITS)]


class _Control(_Body):
    control: str


def _errors(exc: ValidationError) -> list[str]:
    out = []
    for err in exc.errors():
        loc = ".".join(str(part) for part in err.get("loc", ()))
        msg = err.get("msg", "invalid")
        out.append(f"{loc}: {msg}" if loc else msg)
    return out


def _validate(model: type[_Body], body: Mapping[str, Any]) -> Any:
    try:
        return model.model_validate(dict(body))
    except ValidationError as exc:
        raise ControlError(_errors(exc)) from None


def _transfer(body: Mapping[str, Any]) -> TransferCommand:
    wire = _validate(_Transfer, body)
    dest = wire.destination
    problems = []
    if dest.type == "number":
        if not dest.number:
            problems.append("destination.number: required for a number destination")
        elif not (_E164 if dest.numberE164CheckEnabled else _LOOSE_NUMBER).match(dest.number):
            kind = "an E.164 number like +15551230001" if dest.numberE164CheckEnabled else "digits"
            problems.append(f"destination.number: must be {kind}")
        if dest.extension is not None and not _EXTENSION.match(dest.extension):
            problems.append("destination.extension: only digits, * and # (at most 16)")
        target = TransferDestination(type="number", number=dest.number, extension=dest.extension)
    else:
        if not dest.sipUri:
            problems.append("destination.sipUri: required for a sip destination")
        elif not _SIP_URI.match(dest.sipUri):
            problems.append(
                "destination.sipUri: must be a sip: or sips: URI without spaces, quotes or braces"
            )
        target = TransferDestination(type="sip", sip_uri=dest.sipUri)
    if problems:
        raise ControlError(problems)
    return TransferCommand(destination=target, content=wire.content or dest.message)


def _handoff(body: Mapping[str, Any]) -> HandoffCommand:
    wire = _validate(_Handoff, body)
    dest = wire.destination
    given = [x for x in (dest.assistantId, dest.assistantName, dest.assistant) if x is not None]
    if len(given) != 1:
        raise ControlError(
            ["destination: give exactly one of assistantId, assistantName or assistant"]
        )
    if dest.assistantName is not None and not _ASSISTANT_NAME.match(dest.assistantName):
        raise ControlError(["destination.assistantName: no control characters"])
    return HandoffCommand(
        assistant_id=dest.assistantId,
        assistant_name=dest.assistantName,
        assistant=dest.assistant,
        content=wire.content,
    )


def _dtmf(body: Mapping[str, Any]) -> DtmfCommand:
    wire = _validate(_Dtmf, body)
    digits = wire.digits.replace("a", "A").replace("b", "B").replace("c", "C").replace("d", "D")
    if not _DTMF.match(digits.replace("W", "w")):
        raise ControlError(["digits: only 0-9, *, #, A-D and the pauses w (0.5 s) and W (1 s)"])
    return DtmfCommand(digits=digits)


def _control(body: Mapping[str, Any]) -> ChannelControlCommand:
    wire = _validate(_Control, body)
    if wire.control not in CONTROL_NAMES:
        raise ControlError([f"control: must be one of {', '.join(CONTROL_NAMES)}"])
    return ChannelControlCommand(name=wire.control)


def _say(body: Mapping[str, Any]) -> SayCommand:
    wire = _validate(_Say, body)
    return SayCommand(
        content=wire.content,
        end_call_after_spoken=wire.endCallAfterSpoken,
        interruptions_enabled=wire.interruptionsEnabled,
        interrupt_assistant=wire.interruptAssistantEnabled,
    )


def _add_message(body: Mapping[str, Any]) -> AddMessageCommand:
    wire = _validate(_AddMessage, body)
    return AddMessageCommand(
        role=wire.message.role,
        content=wire.message.content,
        trigger_response=wire.triggerResponseEnabled,
    )


_PARSERS = {
    "say": _say,
    "add-message": _add_message,
    "end-call": lambda body: EndCallCommand(),
    "transfer": _transfer,
    "handoff": _handoff,
    "dtmf": _dtmf,
    "control": _control,
    "hold": lambda body: ChannelControlCommand(name="hold"),
    "unhold": lambda body: ChannelControlCommand(name="unhold"),
}
CONTROL_TYPES = tuple(_PARSERS)


def parse_control(body: object) -> ControlCommand:
    """Validate one control body and return its command; raise ControlError otherwise."""
    if not isinstance(body, Mapping):
        raise ControlError(["body: must be a JSON object"])
    kind = body.get("type")
    if not isinstance(kind, str):
        raise ControlError([f"type: required, one of {', '.join(CONTROL_TYPES)}"])
    parser = _PARSERS.get(kind)
    if parser is None:
        if kind == "send-transport-message":
            raise ControlError(["type: send-transport-message is not supported by this runtime"])
        raise ControlError(
            [f"type: unknown control type {kind[:40]!r}; one of {', '.join(CONTROL_TYPES)}"]
        )
    return parser(body)


def command_name(command: ControlCommand) -> str:
    """The wire name of a command, for event logs: ``say``, ``transfer``, ``mute-assistant``..."""
    if isinstance(command, ChannelControlCommand):
        return command.name
    return _NAMES[type(command)]


_NAMES: dict[type, str] = {
    SayCommand: "say",
    AddMessageCommand: "add-message",
    EndCallCommand: "end-call",
    TransferCommand: "transfer",
    HandoffCommand: "handoff",
    DtmfCommand: "dtmf",
}


__all__ = [
    "CONTROL_NAMES",
    "CONTROL_TYPES",
    "MAX_DTMF_DIGITS",
    "MAX_TEXT_CHARS",
    "MESSAGE_ROLES",
    "AddMessageCommand",
    "ChannelControlCommand",
    "ControlCommand",
    "ControlError",
    "DtmfCommand",
    "EndCallCommand",
    "HandoffCommand",
    "SayCommand",
    "TransferCommand",
    "TransferDestination",
    "command_name",
    "parse_control",
]
