"""Which of a tool's ``messages[]`` to speak, and when (pure).

Vapi's tool message types (api-compat.md §4):

* ``request-start`` ``{content, blocking, conditions[]}``: said when the tool call starts. Never for async
  tools. ``blocking: true`` holds the request until the message has been spoken. With no request-start message a
  short filler ("One moment") is said for tools that call a server; a request-start with empty content means
  "say nothing".
* ``request-complete`` / ``request-failed`` ``{content, role, endCallAfterSpokenEnabled, conditions[]}``: after
  the result (for async tools: at once). ``role: assistant`` (default) is spoken *instead of* a model reply
  (exclusive or); ``role: system`` is not spoken but given to the model as a system message, and the model
  replies. ``endCallAfterSpokenEnabled`` ends the call once it has been spoken (ignored for ``role: system``).
  A ``message`` object in the server's result overrides the tool's own.
* ``request-response-delayed`` ``{content, timingMilliseconds}``: said when the server has not answered
  ``timingMilliseconds`` after the request started.

``conditions[]`` are ``{param, operator (eq|neq|gt|gte|lt|lte), value}`` over the tool call's arguments; every
condition must hold. Among the messages of one type, a message whose conditions hold wins over one without
conditions; one without conditions is the default.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

START = "request-start"
COMPLETE = "request-complete"
FAILED = "request-failed"
DELAYED = "request-response-delayed"
TYPES = (START, COMPLETE, FAILED, DELAYED)

#: spoken when a server-calling tool has no request-start message (Vapi's defaults)
DEFAULT_FILLERS = (
    "Hold on a sec.",
    "One moment.",
    "Just a sec.",
    "Give me a moment.",
    "This'll just take a sec.",
)

OPERATORS = ("eq", "neq", "gt", "gte", "lt", "lte")


@dataclass(frozen=True)
class ToolMessage:
    """One message to say (or, for ``role == "system"``, to give the model)."""

    type: str
    content: str
    role: str = "assistant"
    blocking: bool = False
    #: request-response-delayed only: milliseconds after the request started
    timing_ms: int | None = None
    end_call_after_spoken: bool = False
    conditions: tuple[Mapping[str, Any], ...] = ()

    @property
    def spoken(self) -> bool:
        """Whether this message is said to the caller (an assistant message with some text)."""
        return self.role != "system" and bool(self.content.strip())


def _content(raw: Mapping[str, Any]) -> str:
    content = raw.get("content")
    if isinstance(content, str):
        return content
    for item in raw.get("contents") or ():
        if isinstance(item, Mapping) and isinstance(item.get("text"), str):
            return item["text"]
    return ""


def parse_message(raw: Mapping[str, Any]) -> ToolMessage | None:
    """A :class:`ToolMessage` from one wire item, or None for an unknown type."""
    kind = raw.get("type")
    if kind not in TYPES:
        return None
    role = str(raw.get("role") or "assistant")
    timing = raw.get("timingMilliseconds")
    try:
        timing_ms = None if timing is None else max(0, int(timing))
    except (TypeError, ValueError):
        timing_ms = None
    if kind == DELAYED and timing_ms is None:
        timing_ms = 1000
    conditions = tuple(c for c in raw.get("conditions") or () if isinstance(c, Mapping))
    return ToolMessage(
        type=str(kind),
        content=_content(raw),
        role=role if role in ("assistant", "system") else "assistant",
        blocking=bool(raw.get("blocking", False)),
        timing_ms=timing_ms if kind == DELAYED else None,
        end_call_after_spoken=bool(raw.get("endCallAfterSpokenEnabled", False))
        and role != "system",
        conditions=conditions,
    )


def parse_messages(raw: Iterable[Any] | None) -> tuple[ToolMessage, ...]:
    out = []
    for item in raw or ():
        if isinstance(item, Mapping):
            msg = parse_message(item)
            if msg is not None:
                out.append(msg)
    return tuple(out)


# ----------------------------------------------------------------------------------------- conditions


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return None
    return None


def _lookup(arguments: Mapping[str, Any], param: str) -> tuple[bool, Any]:
    if param in arguments:
        return True, arguments[param]
    value: Any = arguments
    for part in param.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        else:
            return False, None
    return True, value


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


def condition_holds(condition: Mapping[str, Any], arguments: Mapping[str, Any]) -> bool:
    """One ``{param, operator, value}`` over the arguments. A missing param or unknown operator fails."""
    op = str(condition.get("operator") or "eq")
    if op not in OPERATORS:
        return False
    found, left = _lookup(arguments, str(condition.get("param") or ""))
    if not found:
        return op == "neq"
    right = condition.get("value")
    ln, rn = _number(left), _number(right)
    if op in ("eq", "neq"):
        equal = ln == rn if ln is not None and rn is not None else _text(left) == _text(right)
        return equal if op == "eq" else not equal
    if ln is None or rn is None:
        return False
    return {"gt": ln > rn, "gte": ln >= rn, "lt": ln < rn, "lte": ln <= rn}[op]


def conditions_hold(conditions: Sequence[Mapping[str, Any]], arguments: Mapping[str, Any]) -> bool:
    return all(condition_holds(c, arguments) for c in conditions)


def pick(
    messages: Sequence[ToolMessage], kind: str, arguments: Mapping[str, Any]
) -> ToolMessage | None:
    """The message of ``kind`` to use: the first whose conditions hold, else the first without any."""
    default = None
    for msg in messages:
        if msg.type != kind:
            continue
        if msg.conditions:
            if conditions_hold(msg.conditions, arguments):
                return msg
        elif default is None:
            default = msg
    return default


# --------------------------------------------------------------------------------------------- plans


def filler_for(call_id: str, fillers: Sequence[str] = DEFAULT_FILLERS) -> str:
    """A filler picked by the call id (stable for a given tool call, so tests and replays agree)."""
    if not fillers:
        return ""
    return fillers[sum(call_id.encode()) % len(fillers)]


def start_message(
    messages: Sequence[ToolMessage],
    arguments: Mapping[str, Any],
    *,
    is_async: bool = False,
    call_id: str = "",
    fillers: Sequence[str] = (),
) -> ToolMessage | None:
    """The request-start message, or None. ``fillers`` are used when the tool defines none (pass () for tools
    that call no server, such as endCall)."""
    if is_async:
        return None
    chosen = pick(messages, START, arguments)
    if chosen is not None:
        return chosen if chosen.spoken else None
    if any(m.type == START for m in messages):
        return None  # request-start messages exist but none applies: say nothing
    filler = filler_for(call_id, fillers)
    return ToolMessage(START, filler) if filler else None


def delayed_messages(
    messages: Sequence[ToolMessage], arguments: Mapping[str, Any]
) -> tuple[ToolMessage, ...]:
    """request-response-delayed messages that apply, earliest first (each said at most once)."""
    out = [
        m
        for m in messages
        if m.type == DELAYED and m.spoken and conditions_hold(m.conditions, arguments)
    ]
    return tuple(sorted(out, key=lambda m: m.timing_ms or 0))


def result_message(
    messages: Sequence[ToolMessage],
    arguments: Mapping[str, Any],
    *,
    failed: bool,
    server_message: Any = None,
) -> ToolMessage | None:
    """The request-complete (or request-failed) message; a ``message`` from the server's result wins."""
    kind = FAILED if failed else COMPLETE
    if isinstance(server_message, Mapping):
        raw = dict(server_message)
        raw.setdefault("type", kind)
        msg = parse_message(raw)
        if msg is not None and msg.type in (COMPLETE, FAILED) and (msg.content or msg.role):
            return msg
    elif isinstance(server_message, str) and server_message.strip():
        return ToolMessage(kind, server_message)
    return pick(messages, kind, arguments)
