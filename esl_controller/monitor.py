"""``esl-controller monitor`` (``scripts/esl-monitor``): a ``top``-like list of calls, read from the database.

Live calls (not ``ended``) first, then calls that ended in the last ``--recent`` seconds; columns: id,
type, status, duration, assistant and the latency of the last turn (``firstAudioOut - endOfSpeech`` of the
newest ``turn-timing`` call event). The screen is redrawn every ``--interval`` seconds with plain ANSI
escapes (no curses); ``--once`` prints one plain-text snapshot and exits. The table fits the terminal
width: the id and assistant columns shrink first.

:func:`render` is pure (rows in, lines out); :func:`snapshot` reads the database.
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from esl_controller.config import Settings

TURN_TIMING = "turn-timing"
CLEAR = "\x1b[H\x1b[2J"
SHORT_TYPES = {
    "inboundPhoneCall": "inbound",
    "outboundPhoneCall": "outbound",
    "webCall": "web",
    "vapi.websocketCall": "websocket",
}


@dataclasses.dataclass(frozen=True)
class CallRow:
    id: str
    type: str
    status: str
    created_at: datetime
    started_at: datetime | None = None
    ended_at: datetime | None = None
    assistant: str = "-"
    #: seconds, of the newest turn-timing event
    last_turn_latency: float | None = None
    turns: int = 0
    ended_reason: str | None = None


def turn_latency(data: Any) -> float | None:
    """``firstAudioOut - endOfSpeech`` of a turn-timing event's data (camelCase or snake_case)."""
    if not isinstance(data, Mapping):
        return None
    first = data.get("firstAudioOut", data.get("first_audio_out"))
    end = data.get("endOfSpeech", data.get("end_of_speech"))
    if any(isinstance(v, bool) or not isinstance(v, int | float) for v in (first, end)):
        return None
    return float(first) - float(end)


def _utc(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def duration(row: CallRow, now: datetime) -> float:
    """Seconds since the call was answered (or created, when it never was), to its end or ``now``."""
    start = _utc(row.started_at or row.created_at)
    end = _utc(row.ended_at) if row.ended_at else now
    return max(0.0, (end - start).total_seconds())


def format_duration(seconds: float) -> str:
    s = int(seconds)
    if s >= 3600:
        return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"
    return f"{s // 60}:{s % 60:02d}"


def _fit(text: str, width: int) -> str:
    if len(text) <= width:
        return text.ljust(width)
    return text[: max(0, width - 1)] + "…" if width > 1 else text[:width]


def render(rows: Sequence[CallRow], now: datetime, width: int = 100) -> list[str]:
    """The screen as lines no wider than ``width``: a summary, a header and one line per call."""
    live = [r for r in rows if r.status != "ended"]
    counts: dict[str, int] = {}
    for r in live:
        counts[r.status] = counts.get(r.status, 0) + 1
    by_status = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    summary = f"{len(live)} live call(s)"
    if by_status:
        summary += f" ({by_status})"
    summary += f"  {now.strftime('%Y-%m-%d %H:%M:%S')}Z  esl-controller monitor"
    width = max(width, 40)
    # fixed columns: type 9, status 11, duration 8, latency 9; id and assistant share what is left
    fixed = 9 + 11 + 8 + 9 + 5
    rest = max(width - fixed, 16)
    id_w = 36 if rest >= 36 + 12 else max(8, rest - 12)
    asst_w = max(4, rest - id_w - 1)
    header = (
        f"{_fit('ID', id_w)} {_fit('TYPE', 9)} {_fit('STATUS', 11)} {_fit('DURATION', 8)} "
        f"{_fit('TURN', 9)} {_fit('ASSISTANT', asst_w)}"
    )
    lines = [summary[:width], header.rstrip()[:width]]
    if not rows:
        lines.append("(no calls)")
        return lines
    for r in rows:
        latency = "-" if r.last_turn_latency is None else f"{r.last_turn_latency * 1000:.0f}ms"
        line = (
            f"{_fit(r.id, id_w)} {_fit(SHORT_TYPES.get(r.type, r.type), 9)} "
            f"{_fit(r.status, 11)} {_fit(format_duration(duration(r, now)), 8)} "
            f"{_fit(latency, 9)} {_fit(r.assistant or '-', asst_w)}"
        )
        lines.append(line.rstrip()[:width])
    return lines


# ------------------------------------------------------------------------------------ database


def snapshot(now: datetime, recent_seconds: float = 60.0, limit: int = 200) -> list[CallRow]:
    """Live calls (oldest first) then calls ended within ``recent_seconds`` (newest first)."""
    from peewee import fn

    from esl_controller.db.models import Assistant, Call, CallEvent

    live = list(
        Call.select()
        .where(Call.status != "ended")
        .order_by(Call.created_at.asc())
        .limit(max(1, limit))
    )
    ended: list[Any] = []
    if recent_seconds > 0 and len(live) < limit:
        since = now - timedelta(seconds=recent_seconds)
        ended = list(
            Call.select()
            .where((Call.status == "ended") & (Call.ended_at >= since))
            .order_by(Call.ended_at.desc())
            .limit(limit - len(live))
        )
    calls = live + ended
    ids = [c.id for c in calls]
    latest: dict[str, tuple[int, Any]] = {}
    if ids:
        newest = (
            CallEvent.select(CallEvent.call, fn.MAX(CallEvent.id), fn.COUNT(CallEvent.id))
            .where(CallEvent.call.in_(ids) & (CallEvent.kind == TURN_TIMING))
            .group_by(CallEvent.call)
            .tuples()
        )
        event_ids = {eid: (cid, n) for cid, eid, n in newest}
        if event_ids:
            for ev in CallEvent.select(CallEvent.id, CallEvent.data).where(
                CallEvent.id.in_(list(event_ids))
            ):
                cid, n = event_ids[ev.id]
                latest[cid] = (n, ev.data)
    names: dict[str, str] = {}
    assistant_ids = {c.assistant_id for c in calls if c.assistant_id}
    if assistant_ids:
        for a in Assistant.select(Assistant.id, Assistant.name).where(
            Assistant.id.in_(list(assistant_ids))
        ):
            names[a.id] = a.name or a.id
    out = []
    for c in calls:
        n, data = latest.get(c.id, (0, None))
        transient = (c.data or {}).get("assistant") if isinstance(c.data, Mapping) else None
        assistant = names.get(c.assistant_id or "", "")
        if not assistant and isinstance(transient, Mapping):
            assistant = str(transient.get("name") or "(transient)")
        out.append(
            CallRow(
                id=c.id,
                type=c.type,
                status=c.status,
                created_at=c.created_at,
                started_at=c.started_at,
                ended_at=c.ended_at,
                assistant=assistant or (c.assistant_id or "-"),
                last_turn_latency=turn_latency(data),
                turns=n,
                ended_reason=c.ended_reason,
            )
        )
    return out


# ------------------------------------------------------------------------------------ command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--interval", type=float, default=2.0, help="seconds between refreshes (default 2)"
    )
    parser.add_argument("--once", action="store_true", help="print one snapshot and exit")
    parser.add_argument(
        "--recent",
        type=float,
        default=60.0,
        help="also list calls that ended this many seconds ago (default 60; 0: live calls only)",
    )
    parser.add_argument("--limit", type=int, default=200, help="most calls listed (default 200)")
    parser.add_argument("--width", type=int, help="table width (default: the terminal's)")


def command(settings: Settings, args: argparse.Namespace) -> int:
    """``esl-controller monitor``: redraw until Ctrl-C (exit 0), or one snapshot with ``--once``."""
    from peewee import DatabaseError

    from esl_controller import db
    from esl_controller.db.fields import utcnow

    if not 0.1 <= args.interval <= 3600 or args.limit < 1 or args.recent < 0:
        print(
            "monitor: --interval must be 0.1 to 3600 s, --limit at least 1, --recent not negative",
            file=sys.stderr,
        )
        return 2
    database = db.connect(settings.database_url, 1, 60, settings.database.busy_timeout)
    try:
        while True:
            size = shutil.get_terminal_size((100, 24))
            width = args.width or size.columns
            now = utcnow()
            try:
                with database.connection_context():
                    rows = snapshot(now, args.recent, args.limit)
            except DatabaseError as exc:
                print(
                    f"monitor: cannot read calls ({exc}); is the database migrated?",
                    file=sys.stderr,
                )
                return 1
            lines = render(rows, now, width)
            if args.once:
                print("\n".join(lines))
                return 0
            height = max(size.lines - 1, 3)
            if len(lines) > height:
                lines = lines[: height - 1] + [f"… {len(lines) - height + 1} more"]
            sys.stdout.write(CLEAR + "\n".join(lines) + "\n")
            sys.stdout.flush()
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0
    finally:
        db.close()


def main(argv: list[str] | None = None) -> int:
    """``scripts/esl-monitor``: the same as ``esl-controller monitor``."""
    from esl_controller.cli import tool_main

    return tool_main(("monitor",), argv, "esl-monitor")
