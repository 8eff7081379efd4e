"""Database writes of a live call (I/O): the Call row, CallEvent rows, CallMessage rows.

Sessions write at status and event boundaries only: every reducer input's ``PersistStatus`` and
``RecordEvent`` actions go to the database in ONE short transaction (:func:`write_batch`). Each
helper opens (and closes) its own connection, so it works from any greenlet: on PostgreSQL the
pooled connection goes back to the pool at once; on SQLite writes stay short so no other
greenlet's transaction waits on them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from peewee import fn

from esl_controller.calls.state import ENDED, PersistStatus, RecordEvent
from esl_controller.db import database
from esl_controller.db.fields import new_id, utcnow
from esl_controller.db.models import Call, CallEvent, CallMessage

log = logging.getLogger("esl_controller.calls.persist")

#: PersistStatus.fields that are Call columns; the rest go into Call.data
_COLUMNS = ("started_at", "ended_at", "ended_reason", "channel_uuid")
_MAX_REASON = 128


class StatusListener(Protocol):
    """Told of every Call status change INSIDE the transaction that writes it (the webhook outbox:
    ``status_changed`` queues its jobs in that transaction; it must not raise), and told once the
    write committed (``committed``: e.g. wake the deliverer)."""

    def status_changed(self, call: Call, previous: str | None) -> None: ...

    def committed(self) -> None: ...


_listeners: list[StatusListener] = []


def add_status_listener(listener: StatusListener) -> None:
    if listener not in _listeners:
        _listeners.append(listener)


def remove_status_listener(listener: StatusListener) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def _status_changed(call: Call, previous: str | None) -> bool:
    for listener in list(_listeners):
        listener.status_changed(call, previous)
    return bool(_listeners)


def _committed() -> None:
    for listener in list(_listeners):
        try:
            listener.committed()
        except Exception:
            log.exception("status listener failed after commit")


#: PostgreSQL: greenlets that may hold a pooled connection for call writes at once. Kept below the
#: pool size so a burst of writers queues here instead of failing with MaxConnectionsExceeded.
_writers: Any = None
WRITER_WAIT_SECONDS = 30.0


def limit_writers(count: int) -> None:
    """Allow at most ``count`` concurrent connections for call writes (the controller sets this
    from ``database.max_connections``)."""
    global _writers
    from gevent.lock import BoundedSemaphore

    _writers = BoundedSemaphore(max(1, count))


@contextmanager
def transaction():
    """A connection (opened if needed) and a transaction around the block."""
    opened = database.is_closed()
    gate = _writers if opened else None
    if gate is not None and not gate.acquire(timeout=WRITER_WAIT_SECONDS):
        raise TimeoutError(f"no database connection for call writes in {WRITER_WAIT_SECONDS}s")
    try:
        if opened:
            database.connect()
        try:
            with database.atomic():
                yield
        finally:
            if opened and not database.in_transaction():
                database.close()
    finally:
        if gate is not None:
            gate.release()


def hold_connection() -> None:
    """SQLite: keep this greenlet's connection open across writes (a session's lifetime), so each
    write does not reconnect. PostgreSQL: nothing (pooled connections go back after each write)."""
    from esl_controller.db.connect import is_postgres

    if database.obj is not None and not is_postgres() and database.is_closed():
        database.connect()


def release_connection() -> None:
    if database.obj is not None and not database.is_closed() and not database.in_transaction():
        database.close()


@dataclass
class NewCall:
    """What a call is created with; :func:`create_call` writes it as the Call row."""

    type: str
    org_id: str
    node_id: str
    id: str = field(default_factory=new_id)
    status: str = "queued"
    name: str | None = None
    assistant_id: str | None = None
    phone_number_id: str | None = None
    customer_number: str | None = None
    channel_uuid: str | None = None
    data: dict[str, Any] = field(default_factory=dict)


def create_call(call: NewCall) -> Call:
    """Write the Call row (its own transaction unless one is open)."""
    now = utcnow()
    with transaction():
        row = Call.create(
            id=call.id,
            org_id=call.org_id,
            created_at=now,
            updated_at=now,
            type=call.type,
            status=call.status,
            name=call.name,
            assistant_id=call.assistant_id,
            phone_number_id=call.phone_number_id,
            customer_number=call.customer_number,
            channel_uuid=call.channel_uuid,
            node_id=call.node_id,
            data=call.data,
        )
        changed = _status_changed(row, None)
    if changed:
        _committed()
    return row


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _apply_status(row: Call, action: PersistStatus) -> None:
    if row.status != ENDED or action.status == ENDED:
        row.status = action.status
    data = dict(row.data or {})
    fs = dict(data.get("freeswitch") or {})
    for key, value in action.fields.items():
        if key in _COLUMNS:
            if key == "ended_reason" and isinstance(value, str):
                value = value[:_MAX_REASON]
            setattr(row, key, value)
        elif key == "ended_message":
            data["endedMessage"] = value
        elif key == "destination":
            data["destination"] = _jsonable(value)
        elif key in ("hangup_cause", "billsec", "duration_seconds"):
            fs[
                {"hangup_cause": "hangupCause", "duration_seconds": "durationSeconds"}.get(key, key)
            ] = value
    if fs:
        data["freeswitch"] = fs
    row.data = data
    row.touch()


def write_batch(
    call_id: str, statuses: Iterable[PersistStatus], events: Iterable[RecordEvent], at: datetime
) -> None:
    """One input's status changes and event records, in one transaction."""
    write(call_id, statuses, [(e, at) for e in events])


def write(
    call_id: str,
    statuses: Iterable[PersistStatus],
    events: Iterable[tuple[RecordEvent, datetime]],
) -> None:
    """Status changes and ``(event, at)`` records (possibly of several inputs), in one transaction."""
    statuses, events = list(statuses), list(events)
    if not statuses and not events:
        return
    changed = False
    with transaction():
        if statuses:
            row = Call.get_or_none(Call.id == call_id)
            if row is None:
                log.warning("call %s: row gone, status %s not stored", call_id, statuses[-1].status)
            else:
                for action in statuses:
                    before = row.status
                    _apply_status(row, action)
                    if row.status != before:
                        changed = _status_changed(row, before) or changed
                row.save()
        if events:
            CallEvent.insert_many(
                [
                    {
                        "call": call_id,
                        "at": at,
                        "kind": e.kind[:64],
                        "source": e.source[:16],
                        "level": e.level[:8],
                        "data": _jsonable(e.data),
                    }
                    for e, at in events
                ]
            ).execute()
    if changed:
        _committed()


def record(call_id: str, kind: str, data: Mapping[str, Any], source: str = "runtime") -> None:
    """One CallEvent outside a reducer step (pipeline notes, audio counters...)."""
    write_batch(call_id, (), (RecordEvent(kind, dict(data), source),), utcnow())


def add_message(call_id: str, data: Mapping[str, Any]) -> None:
    """A conversation entry from the pipeline (Vapi's call.messages[] item) as a CallMessage row."""
    with transaction():
        top = (
            CallMessage.select(fn.MAX(CallMessage.seq)).where(CallMessage.call == call_id).scalar()
        )
        extra = {
            k: _jsonable(v)
            for k, v in data.items()
            if k not in ("role", "message", "secondsFromStart", "duration")
        }
        CallMessage.create(
            call=call_id,
            seq=(top or 0) + 1,
            role=str(data.get("role") or "system")[:32],
            message=data.get("message"),
            seconds_from_start=data.get("secondsFromStart"),
            duration=data.get("duration"),
            data=extra,
        )


def set_data(call_id: str, **values: Any) -> None:
    """Merge keys into Call.data (e.g. the resolved assistant)."""
    with transaction():
        row = Call.get_or_none(Call.id == call_id)
        if row is None:
            return
        data = dict(row.data or {})
        data.update({k: _jsonable(v) for k, v in values.items()})
        row.data = data
        row.touch()
        row.save()


def live_calls(node_id: str) -> list[Call]:
    """Calls this node owns that are not ended (restart reconciliation)."""
    with transaction():
        return list(
            Call.select()
            .where((Call.node_id == node_id) & (Call.status.not_in(("ended", "scheduled"))))
            .order_by(Call.created_at)
        )
