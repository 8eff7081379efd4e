"""Portable field types: UTC timestamps as integer microseconds, JSON as text, UUID strings."""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from typing import Any

from peewee import BigIntegerField, CharField, TextField

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_id() -> str:
    return str(uuid.uuid4())


def to_micros(value: datetime) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    delta = value - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def from_micros(value: int) -> datetime:
    seconds, micros = divmod(int(value), 1_000_000)
    return datetime.fromtimestamp(seconds, timezone.utc).replace(microsecond=micros)


class UTCTimestampField(BigIntegerField):
    """A timezone-aware UTC datetime stored as microseconds since the epoch.

    Integers sort and compare the same on SQLite and PostgreSQL, index well, and make hour/day buckets
    a plain integer division in either database.
    """

    def db_value(self, value: Any) -> Any:
        if value is None:
            return None
        if isinstance(value, datetime):
            return to_micros(value)
        return int(value)

    def python_value(self, value: Any) -> Any:
        if value is None:
            return None
        return from_micros(value)


class JSONField(TextField):
    """JSON stored as text (portable across SQLite and PostgreSQL)."""

    def db_value(self, value: Any) -> Any:
        if value is None:
            return None
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)

    def python_value(self, value: Any) -> Any:
        if value is None:
            return None
        return json.loads(value)


class IdField(CharField):
    """A UUID primary or foreign key kept as its canonical 36-character string."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max_length", 36)
        super().__init__(*args, **kwargs)
