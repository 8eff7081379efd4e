"""Benchmark: list and get calls through the real WSGI server over a large calls table.

    python bench/api_list.py            # 1,000,000 calls, SQLite and PostgreSQL
    python bench/api_list.py --quick    # 50,000 calls, under a minute

Seeds the calls table with a fast bulk insert, starts ``esl-controller serve`` as a separate process, and
measures from this process over keep-alive HTTP: p50/p95 of ``GET /call?limit=50&createdAtGt=…`` (and the same
with ``assistantId``), and GET-by-id requests per second. Prints the query plans used. Target: p95 <= 10 ms.
The last line is the headline figure.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PG_URL = os.environ.get("ESL_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")
ASSISTANTS = [str(uuid.UUID(int=i + 1, version=4)) for i in range(20)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed(url: str, rows: int) -> tuple[list[str], datetime, datetime, str]:
    from esl_controller import db
    from esl_controller.db.fields import to_micros
    from esl_controller.db.models import Call
    from esl_controller.security.api_keys import create_key

    database = db.connect(url)
    db.migrate()
    start = datetime(2025, 1, 1, tzinfo=timezone.utc)
    rng = random.Random(7)
    ids: list[str] = []
    batch = 2000 if db.is_postgres() else 5000
    t0 = time.perf_counter()
    data = {"customer": {"number": "+14155550100"}, "transport": {"provider": "vapi.sip"}}
    columns = [
        Call.id, Call.org_id, Call.created_at, Call.updated_at, Call.type, Call.status, Call.ended_reason,
        Call.assistant_id, Call.customer_number, Call.started_at, Call.ended_at, Call.data,
    ]  # fmt: skip
    for offset in range(0, rows, batch):
        chunk = []
        for i in range(offset, min(rows, offset + batch)):
            created = to_micros(start + timedelta(seconds=i * 2))
            cid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
            if i % max(1, rows // 2000) == 0:
                ids.append(cid)
            chunk.append(
                (
                    cid, "o", created, created + 90_000_000, "outboundPhoneCall", "ended",
                    "customer-ended-call", ASSISTANTS[i % len(ASSISTANTS)], "+14155550100",
                    created + 1_000_000, created + 90_000_000, data,
                )
            )  # fmt: skip
        with database.atomic():
            # raw tuples: no per-row model objects, no field conversion
            Call.insert_many(chunk, fields=columns).execute()
    seeded = time.perf_counter() - t0
    if not db.is_postgres():
        database.execute_sql("ANALYZE")
    else:
        database.execute_sql("ANALYZE call")
    key = create_key("bench", "o").key
    end = start + timedelta(seconds=rows * 2)
    print(f"  seeded {rows:,} calls in {seeded:.1f} s ({rows / seeded:,.0f} rows/s)")
    db.close()
    return ids, start, end, key


def plan(url: str, since: datetime) -> list[str]:
    from esl_controller import db
    from esl_controller.db.models import Call

    database = db.connect(url)
    query = Call.select().where(Call.created_at > since).order_by(Call.created_at.desc()).limit(50)
    sql, params = query.sql()
    prefix = "EXPLAIN " if db.is_postgres() else "EXPLAIN QUERY PLAN "
    rows = database.execute_sql(prefix + sql, params).fetchall()
    db.close()
    return [" ".join(str(c) for c in r) for r in rows]


def measure(conn: http.client.HTTPConnection, key: str, path: str, n: int) -> list[float]:
    out = []
    headers = {"Authorization": f"Bearer {key}"}
    for _ in range(n):
        t = time.perf_counter()
        conn.request("GET", path, headers=headers)
        resp = conn.getresponse()
        body = resp.read()
        out.append((time.perf_counter() - t) * 1000)
        if resp.status != 200:
            raise RuntimeError(f"{path}: {resp.status} {body[:200]!r}")
    return out


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def run_backend(name: str, url: str, rows: int, requests: int) -> dict:
    print(f"[{name}] seeding…", flush=True)
    ids, start, end, key = seed(url, rows)
    port = free_port()
    data_dir = tempfile.mkdtemp(prefix="bench-api-")
    proc = subprocess.Popen(
        [sys.executable, "-m", "esl_controller", "serve", "--data-dir", data_dir, "--port", str(port),
         "--database-url", url],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        line = proc.stdout.readline()
        if "listening" not in line:
            raise RuntimeError(f"server did not start: {line!r}")
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        since = start + (end - start) / 2
        iso = since.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        measure(conn, key, f"/call?limit=50&createdAtGt={iso}", 20)  # warm up
        lat = measure(conn, key, f"/call?limit=50&createdAtGt={iso}", requests)
        lat_a = measure(
            conn, key, f"/call?limit=50&assistantId={ASSISTANTS[3]}&createdAtGt={iso}", requests
        )
        t = time.perf_counter()
        n_get = 0
        for cid in (ids * (1 + requests // max(1, len(ids))))[:requests]:
            measure(conn, key, f"/call/{cid}", 1)
            n_get += 1
        rps = n_get / (time.perf_counter() - t)
        conn.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    result = {
        "list_p50": statistics.median(lat),
        "list_p95": pct(lat, 95),
        "list_assistant_p95": pct(lat_a, 95),
        "get_rps": rps,
        "plan": plan(url, since),
    }
    print(
        f"[{name}] GET /call?limit=50&createdAtGt=…  p50 {result['list_p50']:.2f} ms  p95 "
        f"{result['list_p95']:.2f} ms;  with assistantId p95 {result['list_assistant_p95']:.2f} ms;  "
        f"GET /call/:id {rps:,.0f} req/s"
    )
    for p in result["plan"]:
        print(f"[{name}]   plan: {p}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="50,000 rows, fewer requests (< 1 minute)"
    )
    parser.add_argument("--rows", type=int, help="calls to seed")
    parser.add_argument("--requests", type=int, help="requests per measurement")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args(argv)
    rows = args.rows or (50_000 if args.quick else 1_000_000)
    requests = args.requests or (300 if args.quick else 2000)
    results = {}
    tmp = tempfile.mkdtemp(prefix="bench-api-db-")
    results["sqlite"] = run_backend("sqlite", f"sqlite:///{tmp}/bench.db", rows, requests)
    if not args.no_postgres:
        try:
            import psycopg2

            schema = f"bench_{uuid.uuid4().hex[:8]}"
            conn = psycopg2.connect(PG_URL, connect_timeout=3)
            conn.autocommit = True
            conn.cursor().execute(f"CREATE SCHEMA {schema}")
            try:
                url = f"{PG_URL}?options=-csearch_path%3D{schema}"
                results["postgres"] = run_backend("postgres", url, rows, requests)
            finally:
                conn.cursor().execute(f"DROP SCHEMA {schema} CASCADE")
                conn.close()
        except Exception as exc:  # noqa: BLE001 - report and go on with SQLite's figures
            print(f"[postgres] skipped: {exc}")
    worst = max(r["list_p95"] for r in results.values())
    parts = ", ".join(f"{k} p95 {v['list_p95']:.2f} ms" for k, v in results.items())
    print(
        f"api_list: {rows:,} calls, GET /call?limit=50&createdAtGt: {parts}; worst p95 {worst:.2f} ms (target 10)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
