"""Server messages (the webhooks Vapi POSTs), built by pure functions.

Every builder returns the whole request body, ``{"message": {"type": ..., "timestamp": ..., ...}}``, from
plain dicts that are already in wire shape (camelCase): the serialised call, assistant, customer, phone
number and artifact travel in a :class:`MessageContext`. Nothing here does I/O; the clock is read only when
the caller gives no ``timestamp_ms``.

Also here: ``wanted`` (the assistant's ``serverMessages`` filter), the ``messages[]`` /
``messagesOpenAIFormatted[]`` / plain transcript builders used by ``conversation-update``, ``status-update``
and ``end-of-call-report``, and the ``tool-calls`` item superset.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

#: types that expect an answer; they are sent whatever ``serverMessages`` says, since the call waits on them
SYNCHRONOUS_TYPES = frozenset(
    {
        "assistant-request",
        "tool-calls",
        "transfer-destination-request",
        "knowledge-base-request",
        "handoff-destination-request",
    }
)

#: Vapi's default ``serverMessages`` when an assistant sets none
DEFAULT_SERVER_MESSAGES: tuple[str, ...] = (
    "conversation-update",
    "end-of-call-report",
    "function-call",
    "hang",
    "speech-update",
    "status-update",
    "tool-calls",
    "transfer-destination-request",
    "handoff-destination-request",
    "user-interrupted",
)

FINAL_TRANSCRIPT_TYPE = 'transcript[transcriptType="final"]'

CALL_STATUSES = frozenset(
    {
        "scheduled",
        "queued",
        "ringing",
        "in-progress",
        "forwarding",
        "ended",
        "not-found",
        "deletion-failed",
    }
)


@dataclass(frozen=True)
class MessageContext:
    """The common envelope fields, each a wire-shaped dict (or None when absent, e.g. no phone number)."""

    call: Mapping[str, Any] | None = None
    assistant: Mapping[str, Any] | None = None
    customer: Mapping[str, Any] | None = None
    phone_number: Mapping[str, Any] | None = None
    artifact: Mapping[str, Any] | None = None
    #: epoch milliseconds; None reads the clock
    timestamp_ms: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def now_ms() -> int:
    return int(time.time() * 1000)


def envelope(message_type: str, ctx: MessageContext, fields: Mapping[str, Any]) -> dict[str, Any]:
    """``{"message": {type, timestamp, call, assistant, customer, phoneNumber, artifact, **fields}}``.

    Common fields that are None are left out (Vapi omits them); ``fields`` win over the common ones.
    """
    msg: dict[str, Any] = {
        "type": message_type,
        "timestamp": ctx.timestamp_ms if ctx.timestamp_ms is not None else now_ms(),
    }
    for key, value in (
        ("call", ctx.call),
        ("assistant", ctx.assistant),
        ("customer", ctx.customer if ctx.customer is not None else _customer_of(ctx.call)),
        ("phoneNumber", ctx.phone_number),
        ("artifact", ctx.artifact),
    ):
        if value is not None:
            msg[key] = dict(value)
    msg.update(ctx.extra)
    msg.update(fields)
    return {"message": msg}


def _customer_of(call: Mapping[str, Any] | None) -> Any:
    return call.get("customer") if call else None


# ---------------------------------------------------------------------------------------- filtering


def wanted_as(
    message_type: str,
    server_messages: Sequence[str] | None,
    *,
    transcript_type: str | None = None,
) -> str | None:
    """The type string to send ``message_type`` as, or None when the assistant did not subscribe to it.

    ``server_messages`` is the assistant's ``serverMessages`` (None: Vapi's default list). Synchronous types
    are always sent. A final transcript is wanted through ``transcript`` or
    ``transcript[transcriptType="final"]``; a partial one only through ``transcript``.
    """
    if message_type in SYNCHRONOUS_TYPES:
        return message_type
    subscribed = set(DEFAULT_SERVER_MESSAGES if server_messages is None else server_messages)
    if message_type == "transcript":
        if "transcript" in subscribed:
            return "transcript"
        if transcript_type == "final" and FINAL_TRANSCRIPT_TYPE in subscribed:
            return FINAL_TRANSCRIPT_TYPE
        return None
    return message_type if message_type in subscribed else None


def wanted(
    message_type: str,
    server_messages: Sequence[str] | None,
    *,
    transcript_type: str | None = None,
) -> bool:
    """Whether the assistant's ``serverMessages`` asks for this message (see :func:`wanted_as`)."""
    return wanted_as(message_type, server_messages, transcript_type=transcript_type) is not None


# ------------------------------------------------------------------------------ conversation history


def _epoch_ms(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return int(value.timestamp() * 1000)
    return value


def _pick(row: Mapping[str, Any], *names: str) -> Any:
    for name in names:
        if row.get(name) is not None:
            return row[name]
    return None


def call_messages(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Vapi's ``messages[]`` from CallMessage-like dicts (ordered as given).

    Each row has ``role`` (user/bot/system/tool_calls/tool_call_result), ``message``, ``time`` (epoch ms or
    datetime), ``endTime``/``end_time``, ``secondsFromStart``/``seconds_from_start``, ``duration`` and, for
    tool rows, ``toolCalls`` / ``toolCallId`` / ``name`` / ``result`` either on the row or in its ``data``.
    """
    out: list[dict[str, Any]] = []
    for row in rows:
        data = dict(row.get("data") or {})
        merged = {**data, **{k: v for k, v in row.items() if k != "data" and v is not None}}
        role = merged.get("role", "")
        item: dict[str, Any] = {"role": role}
        if role == "tool_call_result":
            item["toolCallId"] = _pick(merged, "toolCallId", "tool_call_id")
            item["name"] = merged.get("name")
            item["result"] = merged.get("result", merged.get("message"))
        else:
            if role == "tool_calls":
                item["toolCalls"] = list(_pick(merged, "toolCalls", "tool_calls") or [])
            item["message"] = merged.get("message", "")
        item["time"] = _epoch_ms(merged.get("time"))
        if role in ("user", "bot"):
            item["endTime"] = _epoch_ms(_pick(merged, "endTime", "end_time"))
        item["secondsFromStart"] = _pick(merged, "secondsFromStart", "seconds_from_start")
        if role in ("user", "bot") and merged.get("duration") is not None:
            item["duration"] = merged["duration"]
        out.append({k: v for k, v in item.items() if v is not None or k in ("message", "result")})
    return out


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def messages_openai_formatted(
    messages: Iterable[Mapping[str, Any]],
) -> list[dict[str, Any]]:
    """``messagesOpenAIFormatted[]`` from Vapi ``messages[]`` items (as :func:`call_messages` makes them)."""
    out: list[dict[str, Any]] = []
    for m in messages:
        role = m.get("role")
        if role == "bot" or role == "assistant":
            out.append({"role": "assistant", "content": m.get("message") or ""})
        elif role in ("user", "system"):
            out.append({"role": role, "content": m.get("message") or ""})
        elif role == "tool_calls":
            calls = [
                {
                    "id": c.get("id"),
                    "type": "function",
                    "function": {
                        "name": (c.get("function") or {}).get("name", c.get("name")),
                        "arguments": _arguments_text(c),
                    },
                }
                for c in m.get("toolCalls") or []
            ]
            entry: dict[str, Any] = {"role": "assistant", "tool_calls": calls}
            if m.get("message"):
                entry["content"] = m["message"]
            out.append(entry)
        elif role == "tool_call_result":
            out.append(
                {
                    "role": "tool",
                    "tool_call_id": m.get("toolCallId"),
                    "content": _as_text(m.get("result", "")),
                }
            )
    return out


def transcript_text(
    messages: Iterable[Mapping[str, Any]], *, assistant_name: str = "AI", user_name: str = "User"
) -> str:
    """The plain transcript: one ``AI: …`` / ``User: …`` line per spoken turn (``transcriptPlan`` names)."""
    lines = []
    for m in messages:
        text = (m.get("message") or "").strip()
        if not text:
            continue
        if m.get("role") in ("bot", "assistant"):
            lines.append(f"{assistant_name}: {text}")
        elif m.get("role") == "user":
            lines.append(f"{user_name}: {text}")
    return "\n".join(lines)


# -------------------------------------------------------------------------------- asynchronous types


def status_update(
    ctx: MessageContext,
    status: str,
    *,
    ended_reason: str | None = None,
    destination: Mapping[str, Any] | None = None,
    messages: Sequence[Mapping[str, Any]] | None = None,
    transcript: str | None = None,
    summary: str | None = None,
) -> dict[str, Any]:
    """``status-update``: ``endedReason`` when ended; destination and the conversation when forwarding."""
    if status not in CALL_STATUSES:
        raise ValueError(f"status-update: unknown call status {status!r}")
    fields: dict[str, Any] = {"status": status}
    if status == "ended":
        if not ended_reason:
            raise ValueError("status-update: endedReason is required when status is 'ended'")
        fields["endedReason"] = ended_reason
    if destination is not None:
        fields["destination"] = dict(destination)
    if messages is not None:
        fields["messages"] = [dict(m) for m in messages]
        fields["messagesOpenAIFormatted"] = messages_openai_formatted(messages)
    if transcript is not None:
        fields["transcript"] = transcript
    if summary is not None:
        fields["summary"] = summary
    return envelope("status-update", ctx, fields)


def transcript(
    ctx: MessageContext,
    role: str,
    transcript_type: str,
    text: str,
    *,
    as_type: str = "transcript",
    is_filtered: bool | None = None,
    original_transcript: str | None = None,
    detected_threats: Sequence[str] | None = None,
) -> dict[str, Any]:
    """``transcript`` (``as_type`` may be ``transcript[transcriptType="final"]``, see :func:`wanted_as`)."""
    if role not in ("user", "assistant"):
        raise ValueError(f"transcript: role must be user or assistant, not {role!r}")
    if transcript_type not in ("partial", "final"):
        raise ValueError(
            f"transcript: transcriptType must be partial or final, not {transcript_type!r}"
        )
    fields: dict[str, Any] = {"role": role, "transcriptType": transcript_type, "transcript": text}
    if is_filtered is not None:
        fields["isFiltered"] = is_filtered
    if original_transcript is not None:
        fields["originalTranscript"] = original_transcript
    if detected_threats is not None:
        fields["detectedThreats"] = list(detected_threats)
    assistant = ctx.assistant or {}
    if assistant.get("id"):
        fields["assistantId"] = assistant["id"]
    if assistant.get("name"):
        fields["assistantName"] = assistant["name"]
    return envelope(as_type, ctx, fields)


def conversation_update(
    ctx: MessageContext, messages: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """``conversation-update`` with ``messages[]`` (Vapi shape) and ``messagesOpenAIFormatted[]``."""
    return envelope(
        "conversation-update",
        ctx,
        {
            "messages": [dict(m) for m in messages],
            "messagesOpenAIFormatted": messages_openai_formatted(messages),
        },
    )


def speech_update(ctx: MessageContext, status: str, role: str, turn: int) -> dict[str, Any]:
    """``speech-update``: ``status`` started/stopped, ``role`` assistant/user, ``turn`` (0-based)."""
    if status not in ("started", "stopped"):
        raise ValueError(f"speech-update: status must be started or stopped, not {status!r}")
    if role not in ("assistant", "user"):
        raise ValueError(f"speech-update: role must be assistant or user, not {role!r}")
    return envelope("speech-update", ctx, {"status": status, "role": role, "turn": int(turn)})


def user_interrupted(ctx: MessageContext, turn_id: str | None = None) -> dict[str, Any]:
    """``user-interrupted``; ``turnId`` matches the interrupted ``model-output``."""
    return envelope("user-interrupted", ctx, {} if turn_id is None else {"turnId": turn_id})


def hang(ctx: MessageContext) -> dict[str, Any]:
    """``hang``: the model or voice is slow to answer."""
    return envelope("hang", ctx, {})


def model_output(ctx: MessageContext, output: Any, turn_id: str | None = None) -> dict[str, Any]:
    """``model-output``: a token (string) or a tool call (object)."""
    fields: dict[str, Any] = {"output": output}
    if turn_id is not None:
        fields["turnId"] = turn_id
    return envelope("model-output", ctx, fields)


def phone_call_control(
    ctx: MessageContext, request: str, destination: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """``phone-call-control``: ``request`` forward (with ``destination``) or hang-up."""
    if request not in ("forward", "hang-up"):
        raise ValueError(f"phone-call-control: request must be forward or hang-up, not {request!r}")
    if request == "forward" and destination is None:
        raise ValueError("phone-call-control: forward needs a destination")
    fields: dict[str, Any] = {"request": request}
    if destination is not None:
        fields["destination"] = dict(destination)
    return envelope("phone-call-control", ctx, fields)


def transfer_update(
    ctx: MessageContext,
    destination: Mapping[str, Any] | None,
    *,
    to_assistant: Mapping[str, Any] | None = None,
    from_assistant: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``transfer-update``: where the call went (a number/SIP destination or another assistant)."""
    fields: dict[str, Any] = {}
    if destination is not None:
        fields["destination"] = dict(destination)
    if to_assistant is not None:
        fields["toAssistant"] = dict(to_assistant)
    if from_assistant is not None:
        fields["fromAssistant"] = dict(from_assistant)
    return envelope("transfer-update", ctx, fields)


def _duration_fields(started_at: str | None, ended_at: str | None) -> dict[str, Any]:
    if not started_at or not ended_at:
        return {}
    start = datetime.fromisoformat(started_at.replace("Z", "+00:00"))
    end = datetime.fromisoformat(ended_at.replace("Z", "+00:00"))
    ms = max(0, round((end - start).total_seconds() * 1000))
    return {
        "durationMs": ms,
        "durationSeconds": round(ms / 1000, 3),
        "durationMinutes": round(ms / 60000, 4),
    }


def end_of_call_report(
    ctx: MessageContext,
    *,
    ended_reason: str,
    artifact: Mapping[str, Any],
    analysis: Mapping[str, Any] | None = None,
    cost_fields: Mapping[str, Any] | None = None,
    started_at: str | None = None,
    ended_at: str | None = None,
    destination: Mapping[str, Any] | None = None,
    compliance: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """``end-of-call-report``.

    ``artifact`` is the sealed ``call.artifact`` (``recordingUrl``, ``stereoRecordingUrl``, ``recording``,
    ``transcript``, ``messages``, ``messagesOpenAIFormatted``, ``structuredOutputs``, ``pcapUrl``,
    ``logUrl``…); ``analysis`` is ``{summary, structuredData, successEvaluation}``; ``cost_fields`` is
    ``{cost, costBreakdown, costs}`` (``CostReport.call_fields()``). ``startedAt``/``endedAt`` are ISO-8601.
    As in Vapi's real payloads, the summary, transcript, messages and recording URLs are repeated at the
    top level, with the durations.
    """
    if not ended_reason:
        raise ValueError("end-of-call-report: endedReason is required")
    art = dict(artifact)
    if "messages" in art and "messagesOpenAIFormatted" not in art:
        art["messagesOpenAIFormatted"] = messages_openai_formatted(art["messages"])
    ana = {"summary": None, "structuredData": None, "successEvaluation": None, **(analysis or {})}
    fields: dict[str, Any] = {"endedReason": ended_reason, "artifact": art, "analysis": ana}
    if cost_fields:
        for key in ("cost", "costBreakdown", "costs"):
            if key in cost_fields:
                fields[key] = cost_fields[key]
    if started_at is not None:
        fields["startedAt"] = started_at
    if ended_at is not None:
        fields["endedAt"] = ended_at
    fields.update(_duration_fields(started_at, ended_at))
    if destination is not None:
        fields["destination"] = dict(destination)
    if compliance is not None:
        fields["compliance"] = dict(compliance)
    if ana.get("summary") is not None:
        fields["summary"] = ana["summary"]
    for key in ("transcript", "messages", "recordingUrl", "stereoRecordingUrl"):
        if art.get(key) is not None:
            fields[key] = art[key]
    return envelope("end-of-call-report", ctx, fields)


# --------------------------------------------------------------------------------- synchronous types


def assistant_request(ctx: MessageContext) -> dict[str, Any]:
    """``assistant-request``: an inbound call on a number with no assistant; the answer names one."""
    return envelope("assistant-request", ctx, {})


def _arguments_text(call: Mapping[str, Any]) -> str:
    fn = call.get("function") or {}
    raw = fn.get("arguments", call.get("arguments", call.get("parameters", {})))
    return (
        raw if isinstance(raw, str) else json.dumps(raw, separators=(",", ":"), ensure_ascii=False)
    )


def tool_call_item(
    call_id: str, name: str, arguments: Mapping[str, Any] | str | None
) -> dict[str, Any]:
    """One ``toolCallList[]`` item in the superset shape.

    ``{id, type: "function", function: {name, arguments: <JSON text>}, name, arguments: {...},
    parameters: {...}}``. ``arguments`` may be an object or JSON text; text that is not a JSON object
    stays as-is in ``function.arguments`` and gives ``{}`` for the object forms.
    """
    if isinstance(arguments, str):
        text = arguments
        try:
            parsed = json.loads(arguments) if arguments.strip() else {}
        except ValueError:
            parsed = {}
        obj = parsed if isinstance(parsed, dict) else {}
    else:
        obj = dict(arguments or {})
        text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False)
    return {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": text},
        "name": name,
        "arguments": obj,
        "parameters": dict(obj),
    }


def tool_calls(
    ctx: MessageContext,
    calls: Sequence[Mapping[str, Any]],
    tools: Mapping[str, Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """``tool-calls`` with ``toolCallList[]`` and ``toolWithToolCallList[]``.

    ``calls``: ``{id, name, arguments}`` dicts (``arguments`` an object or JSON text). ``tools``: the
    tool definitions (wire shape) by function name; a call with no definition gets a minimal
    ``{type: "function", function: {name}}`` in ``toolWithToolCallList``.
    """
    tools = tools or {}
    items = [tool_call_item(c["id"], c["name"], c.get("arguments")) for c in calls]
    with_tools = []
    for item in items:
        definition = dict(
            tools.get(item["name"]) or {"type": "function", "function": {"name": item["name"]}}
        )
        definition["toolCall"] = item
        with_tools.append(definition)
    return envelope("tool-calls", ctx, {"toolCallList": items, "toolWithToolCallList": with_tools})
