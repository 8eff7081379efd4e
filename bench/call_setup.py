"""Call setup through the FreeSWITCH peer: N concurrent inbound calls into the outbound-socket
server (connect, myevents, linger, execute answer), a period of events on every call, hangup.

Prints calls/s set up, setup latency p50/p95 (socket connect -> CHANNEL_EXECUTE_COMPLETE of
answer), ESL events/s processed by the controller side, and RSS per live call.

    python bench/call_setup.py --calls 200 --hold 30 --event-interval 0.1
    python bench/call_setup.py --sessions [--database-url postgresql://...]   # through the controller

``--sessions`` runs the real controller (outbound server, inbound ESL connection, registry, call
sessions, reducer, database writes of every status change and CallEvent) against the peer: setup
latency is then place_call -> the call's session is ``in-progress`` (row written, answered, fork
started), and "events" are reducer inputs processed by the sessions.
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402

from esl_controller.esl.outbound import OutboundServer  # noqa: E402
from esl_controller.testing import FreeSwitchPeer  # noqa: E402


def rss_kib() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))] if s else float("nan")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--hold", type=float, default=30.0, help="seconds of events per call")
    ap.add_argument("--event-interval", type=float, default=0.1, help="seconds between DTMF events")
    ap.add_argument("--sessions", action="store_true", help="through the real call sessions")
    ap.add_argument(
        "--database-url", default="", help="with --sessions (default: SQLite in a temp dir)"
    )
    args = ap.parse_args(argv)
    if args.sessions:
        return run_sessions(args)

    peer = FreeSwitchPeer()
    peer.start()
    counts = {"events": 0}
    started: dict[str, float] = {}
    setup: list[float] = []
    answered_all = gevent.event.Event()
    finished = gevent.event.Event()
    done = {"n": 0}

    def count(item) -> None:
        counts["events"] += 1

    def on_call(call) -> None:
        call.add_handler(count)
        call.myevents()
        call.linger()
        call.execute("answer", timeout=30)
        setup.append(time.perf_counter() - started[call.uuid])
        if len(setup) == args.calls:
            answered_all.set()
        call.expect(lambda ev: ev.name == "CHANNEL_HANGUP_COMPLETE").get(timeout=args.hold + 60)
        done["n"] += 1
        if done["n"] == args.calls:
            finished.set()

    server = OutboundServer("127.0.0.1", 0, on_call, command_timeout=30)
    server.start()
    rss0 = rss_kib()
    t0 = time.perf_counter()
    legs = []
    for _ in range(args.calls):
        leg = peer.place_call("127.0.0.1", server.port)
        started[leg.uuid] = time.perf_counter()
        legs.append(leg)
    if not answered_all.wait(timeout=120):
        print(f"only {len(setup)} of {args.calls} calls answered")
        return 1
    t_setup = time.perf_counter() - t0
    rss_live = rss_kib()
    ev0, t1 = counts["events"], time.perf_counter()

    def talk(leg) -> None:
        end = time.perf_counter() + args.hold
        while time.perf_counter() < end and not leg.closed.is_set():
            leg.dtmf("5")
            gevent.sleep(args.event_interval)  # load generator pacing, not a test synchronisation

    gevent.joinall([gevent.spawn(talk, leg) for leg in legs])
    ev_hold, t_hold = counts["events"] - ev0, time.perf_counter() - t1
    for leg in legs:
        leg.hangup("NORMAL_CLEARING")
    finished.wait(timeout=60)
    server.stop()
    peer.stop()

    print(f"calls:                     {args.calls} (hold {args.hold:.0f} s)")
    print(f"calls set up per second:   {args.calls / t_setup:.1f}")
    print(
        f"setup latency p50 / p95:   {pct(setup, 50) * 1000:.1f} ms / {pct(setup, 95) * 1000:.1f} ms"
    )
    print(
        f"ESL events/s processed:    {ev_hold / t_hold:.0f} (during hold, both peer and controller in this process)"
    )
    print(
        f"RSS per live call:         {(rss_live - rss0) / args.calls:.1f} KiB (peer + controller)"
    )
    return 0


def run_sessions(args) -> int:
    import tempfile

    from esl_controller import db
    from esl_controller.config import load_settings
    from esl_controller.controller import Controller
    from esl_controller.db.models import Assistant, Call, CallEvent, PhoneNumber

    tmp = tempfile.mkdtemp(prefix="bench-calls-")
    peer = FreeSwitchPeer()
    peer.start()
    over = {
        "data_dir": tmp,
        "freeswitch": {
            "enabled": True,
            "port": peer.port,
            "outbound_port": 0,
            "fork_port": 0,
            "command_timeout": 30.0,
        },
        "calls": {"max_duration_seconds": args.hold + 300, "end_grace_seconds": 2.0},
    }
    over["database"] = {"max_connections": 50}
    if args.database_url:
        over["database"]["url"] = args.database_url
    settings = load_settings(None, environ={}, overrides=over)
    database = db.connect(settings.database_url, settings.database.max_connections)
    with database.connection_context():
        db.migrate()
        a = Assistant.create(org_id=settings.org_id, name="bench", data={"name": "bench"})
        PhoneNumber.create(
            org_id=settings.org_id, provider="byo-phone-number", number="+15557654321", assistant=a
        )
    ctl = Controller(settings)
    ctl.start()
    if not ctl.inbound.wait_connected(10) or not ctl.reconciled.wait(10):
        print("controller did not start")
        return 1
    reg = ctl.registry
    setup: list[float] = []
    sessions: list = []
    all_up = gevent.event.Event()

    def follow(leg, t_start: float) -> None:
        session = reg.wait_for(lambda: reg.by_channel(leg.uuid), 120)
        if session is None or not session.wait_until(lambda st: st.status == "in-progress", 120):
            return
        setup.append(time.perf_counter() - t_start)
        sessions.append(session)
        if len(setup) == args.calls:
            all_up.set()

    import resource

    rss0 = rss_kib()
    cpu0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    legs = []
    for _ in range(args.calls):
        leg = peer.place_call("127.0.0.1", ctl.outbound.port, destination="15557654321")
        gevent.spawn(follow, leg, time.perf_counter())
        legs.append(leg)
    if not all_up.wait(timeout=180):
        print(f"only {len(setup)} of {args.calls} calls in progress")
        return 1
    t_setup = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu_setup = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    rss_live = rss_kib()
    in0 = sum(s.counters["inputs"] for s in sessions)
    t1 = time.perf_counter()

    def talk(leg) -> None:
        end = time.perf_counter() + args.hold
        while time.perf_counter() < end and not leg.closed.is_set():
            leg.dtmf("5")
            gevent.sleep(args.event_interval)  # load generator pacing, not a test synchronisation

    gevent.joinall([gevent.spawn(talk, leg) for leg in legs])
    inputs = sum(s.counters["inputs"] for s in sessions) - in0
    t_hold = time.perf_counter() - t1
    t2 = time.perf_counter()
    for leg in legs:
        leg.hangup("NORMAL_CLEARING")
    ended = all(s.wait(120) for s in sessions)
    t_end = time.perf_counter() - t2
    with database.connection_context():
        n_ended = Call.select().where(Call.ended_reason == "customer-ended-call").count()
        n_events = CallEvent.select().count()
    ctl.stop()
    peer.stop()
    print(f"through the call sessions ({'PostgreSQL' if args.database_url else 'SQLite'})")
    print(f"calls:                     {args.calls} (hold {args.hold:.0f} s), ended ok: {n_ended}")
    print(f"calls set up per second:   {args.calls / t_setup:.1f}")
    print(
        f"setup latency p50 / p95:   {pct(setup, 50) * 1000:.1f} ms / {pct(setup, 95) * 1000:.1f} ms"
    )
    print(f"CPU per call set up:       {cpu_setup / args.calls * 1000:.1f} ms (peer + controller)")
    print(
        f"reducer inputs/s:          {inputs / t_hold:.0f} (during hold; each recorded as a CallEvent)"
    )
    print(
        f"hangup -> all sessions done: {t_end:.2f} s (ended: {ended}); CallEvent rows: {n_events}"
    )
    print(
        f"RSS per live call:         {(rss_live - rss0) / args.calls:.1f} KiB (peer + controller)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
