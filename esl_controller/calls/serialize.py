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
