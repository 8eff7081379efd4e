"""Durable webhook delivery: deliveries per second per core, and enqueue-to-delivered latency.

A separate receiver process answers ``200 ok`` over HTTP/1.1 keep-alive on a loopback port. This
process runs the real outbox, queue and Deliverer against a fresh database (a SQLite file, then a
private schema in PostgreSQL when reachable) and measures:

* throughput: N jobs enqueued up front (one call each, so nothing waits on ordering), then delivered;
  deliveries per second of wall time and per CPU-second of this process (SQLite runs inside this
  process and is counted; the PostgreSQL server's CPU is not);
* latency: jobs enqueued at a steady rate (one small transaction each, as a call would) while the
  deliverer runs; ``delivered_at - created_at`` p50/p99 from the stored rows.

    .venv/bin/python bench/webhooks.py --quick     # under a minute
    .venv/bin/python bench/webhooks.py

The last line is the headline figure.
"""

from __future__ import annotations

from gevent import monkey

if __name__ == "__main__":
    monkey.patch_all()

import argparse  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PG_URL = os.environ.get("ESL_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q / 100.0 * len(values)))]


# ------------------------------------------------------------------------------------------ receiver


def serve_receiver() -> int:
    """A minimal keep-alive HTTP responder (its own process); prints its port, then serves."""
    from gevent.server import StreamServer

    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"

    def handle(sock, _addr):
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    data = sock.recv(65536)
                    if not data:
                        return
                    buf += data
                head, _, buf = buf.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(buf) < length:
                    data = sock.recv(65536)
                    if not data:
                        return
                    buf += data
                buf = buf[length:]
                sock.sendall(answer)
        except OSError:
            return
        finally:
            sock.close()

    server = StreamServer(("127.0.0.1", 0), handle, backlog=1024)
    server.start()
    print(server.server_port, flush=True)
    server.serve_forever()
    return 0


def start_receiver() -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve-receiver"], stdout=subprocess.PIPE, text=True
    )
    port = int(proc.stdout.readline())
    return proc, f"http://127.0.0.1:{port}"


# -------------------------------------------------------------------------------------- databases


def pg_schema_url() -> tuple[str, str] | None:
    try:
        import psycopg2

        conn = psycopg2.connect(PG_URL, connect_timeout=3)
    except Exception as exc:  # noqa: BLE001 - any failure means "skip PostgreSQL"
        print(f"postgresql: skipped ({PG_URL} not reachable: {str(exc).strip()[:120]})")
        return None
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    conn.autocommit = True
    conn.cursor().execute(f"CREATE SCHEMA {schema}")
    conn.close()
    return f"{PG_URL}?options=-csearch_path%3D{schema}", schema


def drop_pg_schema(schema: str) -> None:
    import psycopg2

    conn = psycopg2.connect(PG_URL, connect_timeout=3)
    conn.autocommit = True
    conn.cursor().execute(f"DROP SCHEMA {schema} CASCADE")
    conn.close()


# --------------------------------------------------------------------------------------- the runs


def run_one(db_url: str, url: str, n_jobs: int, latency_seconds: float, rate: float) -> dict:
    import gevent
    from cryptography.fernet import Fernet

    from esl_controller import db
    from esl_controller.db.models import WebhookJob
    from esl_controller.security.secrets_box import SecretBox
    from esl_controller.webhooks import outbox
    from esl_controller.webhooks.delivery import Deliverer, DeliverySettings

    database = db.connect(db_url)
    with database.connection_context():
        db.migrate()
    box = SecretBox(Fernet.generate_key())
    settings = DeliverySettings(workers=32, poll_interval=0.02, batch_size=200)
    payload = {"message": {"type": "status-update", "status": "in-progress", "call": {"id": "x"}}}
    target = {"url": url + "/hook", "source": "assistant"}

    # throughput: a backlog, delivered as fast as possible
    with database.connection_context():
        for start in range(0, n_jobs, 500):
            with database.atomic():
                for _ in range(start, min(n_jobs, start + 500)):
                    outbox.enqueue("status-update", payload, target, str(uuid.uuid4()))
    deliverer = Deliverer(settings, box, node_id="bench")
    cpu0, t0 = time.process_time(), time.perf_counter()
    deliverer.start()
    with database.connection_context():
        while WebhookJob.select().where(WebhookJob.status != "delivered").count():
            gevent.sleep(0.05)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0

    # latency: a steady trickle of single-job transactions, as calls produce them
    marker = time.time()
    interval = 1.0 / rate
    sent = 0
    with database.connection_context():
        t_start = time.perf_counter()
        while time.perf_counter() - t_start < latency_seconds:
            with database.atomic():
                outbox.enqueue("status-update", payload, target, str(uuid.uuid4()))
            deliverer.wake()
            sent += 1
            gevent.sleep(max(0.0, t_start + sent * interval - time.perf_counter()))
        deadline = time.monotonic() + 30
        from esl_controller.db.fields import from_micros, to_micros

        since = from_micros(to_micros(__import__("datetime").datetime.fromtimestamp(marker)))
        while time.monotonic() < deadline:
            left = (
                WebhookJob.select()
                .where((WebhookJob.created_at >= since) & (WebhookJob.status != "delivered"))
                .count()
            )
            if not left:
                break
            gevent.sleep(0.05)
        rows = WebhookJob.select(WebhookJob.created_at, WebhookJob.delivered_at).where(
            (WebhookJob.created_at >= since) & (WebhookJob.status == "delivered")
        )
        lat = [(r.delivered_at - r.created_at).total_seconds() * 1000 for r in rows]
    deliverer.stop(10)
    db.close()
    return {
        "jobs": n_jobs,
        "wall_s": wall,
        "cpu_s": cpu,
        "per_s": n_jobs / wall,
        "per_cpu_s": n_jobs / cpu if cpu else float("nan"),
        "latency_n": len(lat),
        "p50_ms": pct(lat, 50),
        "p99_ms": pct(lat, 99),
        "rate": rate,
        "achieved": sent / latency_seconds,
    }


def report(name: str, r: dict) -> str:
    line = (
        f"{name}: {r['jobs']} jobs in {r['wall_s']:.2f} s = {r['per_s']:.0f}/s wall, "
        f"{r['per_cpu_s']:.0f}/s per core (controller CPU {r['cpu_s']:.2f} s); "
        f"latency at {r['rate']:.0f}/s offered ({r['achieved']:.0f}/s enqueued): p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms "
        f"({r['latency_n']} jobs)"
    )
    print(line, flush=True)
    return line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small run, under a minute")
    parser.add_argument("--serve-receiver", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--jobs", type=int, default=None)
    args = parser.parse_args(argv)
    if args.serve_receiver:
        return serve_receiver()
    n_jobs = args.jobs or (3000 if args.quick else 20000)
    latency_seconds = 4.0 if args.quick else 15.0
    rate = 200.0
    proc, url = start_receiver()
    results: dict[str, dict] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            results["sqlite"] = run_one(
                f"sqlite:///{tmp}/bench.db", url, n_jobs, latency_seconds, rate
            )
            report("sqlite", results["sqlite"])
        pg = pg_schema_url()
        if pg is not None:
            pg_url, schema = pg
            try:
                results["postgresql"] = run_one(pg_url, url, n_jobs, latency_seconds, rate)
                report("postgresql", results["postgresql"])
            finally:
                drop_pg_schema(schema)
    finally:
        proc.kill()
        proc.wait(timeout=5)
    parts = [
        f"{name} {r['per_cpu_s']:.0f}/s per core (p50 {r['p50_ms']:.0f} ms, p99 {r['p99_ms']:.0f} ms)"
        for name, r in results.items()
    ]
    print("webhooks: " + "; ".join(parts) + " — goal 1000/s per core")
    return 0


if __name__ == "__main__":
    sys.exit(main())
