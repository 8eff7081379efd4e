"""Call setup through the FreeSWITCH peer: N concurrent inbound calls into the outbound-socket
server (connect, myevents, linger, execute answer), a period of events on every call, hangup.

Prints calls/s set up, setup latency p50/p95 (socket connect -> CHANNEL_EXECUTE_COMPLETE of
answer), ESL events/s processed by the controller side, and RSS per live call.

    python bench/call_setup.py --calls 200 --hold 30 --event-interval 0.1
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
    args = ap.parse_args(argv)

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


if __name__ == "__main__":
    raise SystemExit(main())
