"""Benchmark: /analytics/summary and the /slo window queries over a large calls table.

    python bench/analytics.py            # 100,000 calls (5 turn-timing events each), SQLite and PostgreSQL
    python bench/analytics.py --quick    # 20,000 calls

Seeds calls spread over 30 days with durations, costs, ended reasons and turn timings, then times
``analytics.summary`` (7 days, step=day; the same for one assistant) and the three SLO windows'
database figures, calling the functions directly (no HTTP). Prints the median of 5 runs of each.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PG_URL = os.environ.get("ESL_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
ASSISTANTS = [str(uuid.UUID(int=i + 1, version=4)) for i in range(20)]
REASONS = ["customer-ended-call", "assistant-ended-call", "silence-timed-out", "pipeline-error-openai-llm-failed"]  # fmt: skip
TYPES = ["inboundPhoneCall", "outboundPhoneCall", "webCall"]


def seed(rows: int, now: datetime) -> None:
    from esl_controller import db
    from esl_controller.db.models import Call, CallEvent

    rng = random.Random(11)
    batch = 2000
    for offset in range(0, rows, batch):
        calls, events = [], []
        for _ in range(offset, min(rows, offset + batch)):
            created = now - timedelta(seconds=rng.uniform(0, 30 * 86400))
            duration = rng.uniform(5, 600)
            cid = str(uuid.uuid4())
            calls.append(
                {
                    "id": cid,
                    "org_id": "o",
                    "created_at": created,
                    "updated_at": created,
                    "type": rng.choice(TYPES),
                    "status": "ended",
                    "ended_reason": rng.choice(REASONS),
                    "assistant_id": rng.choice(ASSISTANTS),
                    "started_at": created,
                    "ended_at": created + timedelta(seconds=duration),
                    "cost": round(duration / 60 * 0.07, 6),
                    "data": {},
                }
            )
            for turn in range(5):
                eos = turn * 10.0
                events.append(
                    {
                        "call": cid,
                        "at": created + timedelta(seconds=eos),
                        "kind": "turn-timing",
                        "source": "pipeline",
                        "level": "INFO",
                        "data": {
                            "turn": turn,
                            "endOfSpeech": eos,
                            "firstAudioOut": eos + rng.uniform(0.3, 2.0),
                        },  # fmt: skip
                    }
                )
        with db.database.atomic():
            Call.insert_many(calls).execute()
            CallEvent.insert_many(events).execute()


def timed(fn, runs: int = 5) -> float:
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples) * 1000


def run(url: str, rows: int) -> None:
    from esl_controller import db
    from esl_controller.observe import analytics, slo

    db.connect(url)
    db.migrate()
    now = datetime.now(timezone.utc)
    t0 = time.perf_counter()
    seed(rows, now)
    kind = "postgresql" if db.is_postgres() else "sqlite"
    print(f"{kind}: seeded {rows} calls, {rows * 5} events in {time.perf_counter() - t0:.1f} s")
    start = now - timedelta(days=7)
    ms = timed(lambda: analytics.summary(start, now, "day"))
    print(f"{kind}: summary 7 days step=day: {ms:.0f} ms")
    ms = timed(lambda: analytics.summary(start, now, "day", ASSISTANTS[0]))
    print(f"{kind}: summary 7 days one assistant: {ms:.0f} ms")
    for label, seconds in slo.WINDOWS:
        ms = timed(lambda s=seconds: analytics.window_figures(now, s, (0, 0, None)))
        print(f"{kind}: slo window {label}: {ms:.0f} ms")
    db.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rows", type=int)
    parser.add_argument("--no-pg", action="store_true")
    args = parser.parse_args(argv)
    rows = args.rows or (20_000 if args.quick else 100_000)
    with tempfile.TemporaryDirectory() as tmp:
        run(f"sqlite:///{tmp}/bench.db", rows)
    if not args.no_pg:
        import psycopg2

        schema = f"bench_{uuid.uuid4().hex[:8]}"
        conn = psycopg2.connect(PG_URL)
        conn.autocommit = True
        conn.cursor().execute(f"CREATE SCHEMA {schema}")
        try:
            run(f"{PG_URL}?options=-csearch_path%3D{schema}", rows)
        finally:
            conn.cursor().execute(f"DROP SCHEMA {schema} CASCADE")
            conn.close()
    return 0


if __name__ == "__main__":
    from gevent import monkey

    monkey.patch_all()
    raise SystemExit(main())
