"""Call recording: what ``CallRecorder.add_caller`` costs the hub per 20 ms frame, and commit bursts.

1. **per frame**: one recorder (mono + stereo files), ``--frames`` contiguous 20 ms frames at 16 kHz
   (640 bytes) fed with ``add_caller``; wall time of the whole loop over the number of calls, so
   commits (mix, interleave, file writes, or only the hand-off to the writer thread) are amortised in.
2. **commit**: the same feed timed call by call: the median plain call and the mean/max of the calls
   that committed (the hub-side cost of one commit).
3. **streams started together**: ``--streams`` recorders created in the same tick, fed one frame each per
   20 ms tick in real time for ``--seconds``: per-call cost, the slowest tick (all streams' frames),
   the most commits that landed in one tick, process CPU (the writer thread included) and any audio
   a lagging writer replaced by silence.

Runs gevent-patched like the server (``--no-gevent``: plain threads). Files go to a temporary directory.

    .venv/bin/python bench/recorder.py --quick
    .venv/bin/python bench/recorder.py --frames 100000 --streams 1000 --seconds 10
"""

from __future__ import annotations

import sys

if __name__ == "__main__" and "--no-gevent" not in sys.argv:
    from gevent import monkey

    monkey.patch_all()

import argparse  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from esl_controller.media.recorder import CallRecorder  # noqa: E402

RATE = 16000
FRAME = 640  # bytes: 20 ms of 16 kHz L16


def _frame(i: int) -> bytes:
    return bytes([i & 0xFF, (i >> 8) & 0x7F]) * (FRAME // 2)


def _close(rec: CallRecorder) -> float:
    started = time.perf_counter()
    rec.close()
    return time.perf_counter() - started


def per_frame(directory: str, n: int) -> tuple[float, float]:
    """(microseconds per add_caller, seconds close() took)."""
    rec = CallRecorder(RATE, os.path.join(directory, "a.wav"), os.path.join(directory, "as.wav"))
    frames = [_frame(i) for i in range(50)]
    add = rec.add_caller
    started = time.perf_counter()
    for i in range(n):
        add(frames[i % 50], i * 0.02)
    elapsed = time.perf_counter() - started
    return elapsed / n * 1e6, _close(rec)


def commit_cost(directory: str, n: int) -> tuple[float, float, float, int]:
    """(median plain call us, mean commit call us, max commit call us, commits)."""
    rec = CallRecorder(RATE, os.path.join(directory, "c.wav"), os.path.join(directory, "cs.wav"))
    frame = _frame(7)
    plain: list[float] = []
    commits: list[float] = []
    clock = time.perf_counter
    for i in range(n):
        before = rec.committed_seconds
        t = clock()
        rec.add_caller(frame, i * 0.02)
        d = clock() - t
        (commits if rec.committed_seconds != before else plain).append(d)
    _close(rec)
    return (
        statistics.median(plain) * 1e6,
        statistics.fmean(commits) * 1e6 if commits else 0.0,
        max(commits) * 1e6 if commits else 0.0,
        len(commits),
    )


def together(directory: str, streams: int, seconds: float) -> dict:
    """Streams created in the same tick and fed in real time (one frame each per 20 ms tick)."""
    recs = [
        CallRecorder(
            RATE, os.path.join(directory, f"s{k}.wav"), os.path.join(directory, f"s{k}s.wav")
        )
        for k in range(streams)
    ]
    frame = _frame(3)
    ticks = int(seconds * 50)
    tick_times: list[float] = []
    most_commits = 0
    cpu = time.process_time()
    started = time.perf_counter()
    for i in range(ticks):
        wait = started + i * 0.02 - time.perf_counter()
        if wait > 0:
            time.sleep(wait)  # gevent.sleep when patched: the hub runs meanwhile
        at = i * 0.02
        before = [r.committed_seconds for r in recs]
        t = time.perf_counter()
        for r in recs:
            r.add_caller(frame, at)
        tick_times.append(time.perf_counter() - t)
        most_commits = max(
            most_commits, sum(r.committed_seconds != b for r, b in zip(recs, before, strict=True))
        )
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu
    closing = sum(_close(r) for r in recs)
    per_call = sum(tick_times) / (ticks * streams) * 1e6
    return {
        "perCallUs": per_call,
        "slowestTickMs": max(tick_times) * 1e3,
        "medianTickMs": statistics.median(tick_times) * 1e3,
        "mostCommitsInATick": most_commits,
        "cpuPercent": 100.0 * cpu / wall,
        "closeSeconds": closing,
        "droppedSeconds": sum(getattr(r, "writer_samples_dropped", 0) for r in recs) / RATE,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--no-gevent", action="store_true", help="plain threads (no monkey-patching)"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.frames, args.streams, args.seconds = 25_000, 200, 5.0
    mode = "plain threads" if args.no_gevent else "gevent-patched"
    logging.getLogger("esl_controller.media").setLevel(logging.ERROR)  # drops are counted below
    with tempfile.TemporaryDirectory(prefix="bench-recorder-") as directory:
        best = float("inf")
        for _ in range(args.repeat):
            us, closing = per_frame(directory, args.frames)
            best = min(best, us)
            print(
                f"per frame ({args.frames} calls, {mode}): {us:.2f} us; close {closing * 1e3:.1f} ms"
            )
        median, mean, worst, n = commit_cost(directory, args.frames)
        print(
            f"call by call: plain median {median:.2f} us; {n} commits, mean {mean:.1f} us, "
            f"max {worst:.1f} us"
        )
        r = together(directory, args.streams, args.seconds)
        print(
            f"{args.streams} streams started together, {args.seconds:g}s of stream time: "
            f"{r['perCallUs']:.2f} us per call, median tick {r['medianTickMs']:.2f} ms, slowest tick "
            f"{r['slowestTickMs']:.1f} ms, most commits in one tick {r['mostCommitsInATick']}, "
            f"process CPU {r['cpuPercent']:.0f}% (writer included), closing all "
            f"{r['closeSeconds']:.2f} s, audio dropped by a lagging writer {r['droppedSeconds']:.1f} s"
        )
    print(f"add_caller per 20 ms 16 kHz frame (best of {args.repeat}, amortised): {best:.2f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
