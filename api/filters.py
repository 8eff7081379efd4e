"""List query parameters shared by every list route: ``limit`` and the eight createdAt/updatedAt bounds."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from api.errors import ApiError

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000

_ISO_RE = re.compile(
    r"^(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[T ](?P<h>\d{2}):(?P<m>\d{2})(?::(?P<s>\d{2})(?:[.,](?P<frac>\d{1,9}))?)?)?"
    r"(?P<tz>Z|z|[+\- ]\d{2}(?::?\d{2})?)?$"
)

BOUNDS = {
    "createdAtGt": ("created_at", "gt"),
    "createdAtLt": ("created_at", "lt"),
    "createdAtGe": ("created_at", "ge"),
    "createdAtLe": ("created_at", "le"),
    "updatedAtGt": ("updated_at", "gt"),
    "updatedAtLt": ("updated_at", "lt"),
    "updatedAtGe": ("updated_at", "ge"),
    "updatedAtLe": ("updated_at", "le"),
}


def parse_iso8601(value: str) -> datetime:
    """Parse the ISO-8601 forms the SDKs send: 0-6 (up to 9) fraction digits, ``Z`` or an offset, a ``+`` that
    arrived as a space, or no zone at all (taken as UTC). Raises ValueError."""
    text = value.strip() if value else ""
    m = _ISO_RE.match(text) if text else None
    if not m:
        # a '+' offset decoded to a space and then stripped at the end
        raise ValueError("not an ISO-8601 timestamp")
    year, month, day = (int(p) for p in m.group("date").split("-"))
    hour = int(m.group("h") or 0)
    minute = int(m.group("m") or 0)
    second = int(m.group("s") or 0)
    frac = (m.group("frac") or "")[:6].ljust(6, "0")
    tz = m.group("tz")
    if tz is None or tz in ("Z", "z"):
        tzinfo = timezone.utc
    else:
        sign = -1 if tz[0] == "-" else 1
        digits = tz[1:].replace(":", "")
        hh, mm = int(digits[:2]), int(digits[2:4] or 0)
        if hh > 23 or mm > 59:
            raise ValueError("offset out of range")
        tzinfo = timezone(sign * timedelta(hours=hh, minutes=mm))
    return datetime(year, month, day, hour, minute, second, int(frac), tzinfo=tzinfo).astimezone(
        timezone.utc
    )


def parse_limit(raw: str | None, default: int = DEFAULT_LIMIT, maximum: int = MAX_LIMIT) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ApiError(400, "limit must be a number") from exc
    if not math.isfinite(value) or value != int(value):
        raise ApiError(400, "limit must be a whole number")
    if value < 0 or value > maximum:
        raise ApiError(400, f"limit must be between 0 and {maximum}")
    return int(value)


@dataclass(frozen=True)
class ListQuery:
    limit: int
    bounds: tuple[tuple[str, str, datetime], ...]  # (column, op, value)


def parse_list_query(args: Any, default_limit: int = DEFAULT_LIMIT) -> ListQuery:
    limit = parse_limit(args.get("limit"), default_limit)
    bounds = []
    for name, (column, op) in BOUNDS.items():
        raw = args.get(name)
        if raw is None:
            continue
        try:
            bounds.append((column, op, parse_iso8601(raw)))
        except ValueError as exc:
            raise ApiError(400, f"{name} must be an ISO-8601 date-time, got {raw!r}") from exc
    return ListQuery(limit, tuple(bounds))


def apply_list_query(query, model, lq: ListQuery):
    """Apply bounds, newest-first order and the limit to a peewee select on ``model``."""
    for column, op, value in lq.bounds:
        field = getattr(model, column)
        if value.microsecond % 1000 == 0 and op in ("gt", "le"):
            # Responses show milliseconds while rows keep microseconds: a bound copied from a response means
            # "that whole millisecond", so createdAtGt=<an object's createdAt> does not return the object again.
            value = value + timedelta(microseconds=999)
        if op == "gt":
            query = query.where(field > value)
        elif op == "lt":
            query = query.where(field < value)
        elif op == "ge":
            query = query.where(field >= value)
        else:
            query = query.where(field <= value)
    # created_at alone: its index serves both the bounds and the order, so a page stops after `limit` rows
    return query.order_by(model.created_at.desc()).limit(lq.limit)
