"""Live-listen fan-out: what ``ListenHub.publish`` costs on the media path, and CPU per streaming listener.

1. **publish cost** (in memory, no sockets): microseconds per 20 ms frame with 0 listeners (the common
   case: one dict lookup), and with 1 and 4 listeners, for 16 kHz and 8 kHz (resampled) calls.
2. **fan-out over loopback**: ``--calls`` calls with ``--listeners`` listeners each, frames published at real
   time (50 per second per call) for ``--seconds``; listeners are raw sockets in this process that only
   count bytes (no WebSocket parsing), so the CPU figure is mostly the server's. Reports process CPU per
   100 listeners, bytes delivered against expected, and dropped listeners (should be 0).

    .venv/bin/python bench/listen_fanout.py --quick
    .venv/bin/python bench/listen_fanout.py --calls 50 --listeners 2 --seconds 10
"""

from __future__ import annotations

from gevent import monkey

if __name__ == "__main__":
    monkey.patch_all()

import argparse  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402

import gevent  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

from wsproto import ConnectionType, WSConnection  # noqa: E402
from wsproto.events import AcceptConnection, Request  # noqa: E402

from esl_controller.media.listen import ListenHub, ListenServer  # noqa: E402


def speech_frames(rate: int) -> list[bytes]:
    from audio_fixtures import frames, speech

    return frames(speech("Hello, I would like to book a table for two people tonight.", rate), rate)


def publish_cost(rate: int, listeners: int, n: int = 20000) -> float:
    hub = ListenHub(queue_frames=n + 10)
    call = str(uuid.uuid4())
    subs = [hub.add_listener(call) for _ in range(listeners)]
    frames = speech_frames(rate)
    started = time.perf_counter()
    for i in range(n):
        f = frames[i % len(frames)]
        hub.publish(call, f, f, rate)
    elapsed = time.perf_counter() - started
    del subs
    return elapsed / n * 1e6


def connect(address: tuple[str, int], path: str) -> socket.socket:
    ws = WSConnection(ConnectionType.CLIENT)
    sock = socket.create_connection(address, timeout=10)
    sock.sendall(ws.send(Request(host=f"{address[0]}:{address[1]}", target=path)))
    while True:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed during handshake")
        ws.receive_data(data)
        if any(isinstance(e, AcceptConnection) for e in ws.events()):
            return sock


def fanout(calls: int, listeners: int, seconds: float, rate: int) -> dict[str, float]:
    hub = ListenHub(max_listeners_per_call=listeners, queue_frames=50)
    server = ListenServer("127.0.0.1", 0, hub)
    server.start()
    ids = [str(uuid.uuid4()) for _ in range(calls)]
    received = [0]
    socks = []
    for cid in ids:
        for _ in range(listeners):
            socks.append(
                connect(server.address, f"/call/{cid}/listen?token={hub.issue_token(cid)}")
            )

    def drain(sock: socket.socket) -> None:
        sock.settimeout(seconds + 10)
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    return
                received[0] += len(data)
        except OSError:
            return

    readers = [gevent.spawn(drain, s) for s in socks]
    frames = speech_frames(rate)
    ticks = int(seconds * 50)
    cpu0, t0 = os.times(), time.monotonic()
    late = 0
    for i in range(ticks):
        f = frames[i % len(frames)]
        for cid in ids:
            hub.publish(cid, f, f, rate)
        due = t0 + (i + 1) * 0.02
        wait = due - time.monotonic()
        if wait > 0:
            gevent.sleep(wait)
        else:
            late += 1
            gevent.sleep(0)
    wall = time.monotonic() - t0
    cpu1 = os.times()
    for cid in ids:
        hub.close_call(cid)
    gevent.joinall(readers, timeout=10)
    server.stop(timeout=2)
    cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    total = calls * listeners
    expected_audio = ticks * 1280 * total  # 20 ms of 16 kHz stereo per frame
    return {
        "listeners": total,
        "cpuPercent": 100.0 * cpu / wall,
        "cpuPercentPer100Listeners": 100.0 * cpu / wall * 100.0 / total,
        "deliveredRatio": received[0] / expected_audio,
        "dropped": hub.listeners_dropped,
        "lateTicks": late,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--listeners", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.calls, args.seconds = 10, 3.0
    for rate in (16000, 8000):
        costs = ", ".join(f"{n} listeners {publish_cost(rate, n):.1f} us" for n in (0, 1, 4))
        print(f"publish per frame at {rate} Hz: {costs}")
    for rate in (16000, 8000):
        r = fanout(args.calls, args.listeners, args.seconds, rate)
        print(
            f"fan-out {args.calls} calls x {args.listeners} listeners at {rate} Hz for {args.seconds:g}s: "
            f"CPU {r['cpuPercent']:.1f}% ({r['cpuPercentPer100Listeners']:.1f}% per 100 listeners), "
            f"delivered {r['deliveredRatio']:.3f} of the audio bytes, dropped {r['dropped']}, "
            f"late ticks {r['lateTicks']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
