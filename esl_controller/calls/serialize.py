"""A Call row as Vapi's Call object (api-compat.md §6). Used by the API and by server messages."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any


def iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    value = value.astimezone(timezone.utc) if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def call_to_wire(row: Any) -> dict[str, Any]:
    """The call object: stored Vapi-shaped data, overlaid with the columns that are the source of truth."""
    out: dict[str, Any] = dict(row.data or {})
    out.update(
        {
            "id": row.id,
            "orgId": row.org_id,
            "createdAt": iso(row.created_at),
            "updatedAt": iso(row.updated_at),
            "type": row.type,
            "status": row.status,
        }
    )
    optional = {
        "endedReason": row.ended_reason,
        "name": row.name,
        "assistantId": row.assistant_id,
        "phoneNumberId": row.phone_number_id,
        "startedAt": iso(row.started_at),
        "endedAt": iso(row.ended_at),
        "cost": row.cost,
    }
    for key, value in optional.items():
        if value is not None:
            out[key] = value
        else:
            out.pop(key, None)
    return out


def message_rows_as_dicts(rows: Any) -> list[dict[str, Any]]:
    """CallMessage rows as the dicts ``webhooks.messages.call_messages`` turns into Vapi's ``messages[]``."""
    return [
        {
            "role": r.role,
            "message": r.message,
            "time": r.time,
            "endTime": r.end_time,
            "secondsFromStart": r.seconds_from_start,
            "duration": r.duration,
            **(r.data or {}),
        }
        for r in rows
    ]


def with_history(call: dict[str, Any], rows: Any) -> dict[str, Any]:
    """The call object with its conversation: ``messages`` and ``artifact.{messages, messagesOpenAIFormatted,
    transcript}`` built from its CallMessage rows (in ``seq`` order)."""
    from esl_controller.webhooks import messages as m

    history = m.call_messages(message_rows_as_dicts(rows))
    if not history:
        return call
    out = dict(call)
    out["messages"] = history
    artifact = dict(out.get("artifact") or {})
    artifact["messages"] = history
    artifact["messagesOpenAIFormatted"] = m.messages_openai_formatted(history)
    artifact["transcript"] = m.transcript_text(history)
    out["artifact"] = artifact
    return out
