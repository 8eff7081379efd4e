"""Embedded STT on the worker-process pool: accuracy, latency, throughput, hub lateness, memory.

Speech is synthesized with the embedded espeak-ng (known sentences, 8 and 16 kHz). A greenlet ticking
every 10 ms records how late the hub wakes it while the workers decode.

1. whisper, one utterance at a time: word error rate per sample rate and latency after the end of the
   utterance (the whole utterance is sent when it ends: request to transcript) p50/p95.
2. whisper, N utterances submitted at once: utterances per second on the pool, hub lateness p99.
3. pocketsphinx streaming at real-time pace (20 ms frames): final latency after the last frame, dictation
   WER, and the yes/no grammar's accuracy.

Worker RSS is read from /proc. The last line is the headline.

    .venv/bin/python bench/stt_workers.py --quick     # < 1 minute
    .venv/bin/python bench/stt_workers.py [--workers N] [--utterances N]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time

from gevent import monkey

monkey.patch_all()

import gevent  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from esl_controller.media.codecs import silence  # noqa: E402
from esl_controller.pipeline.providers.stt import sphinx, whisper  # noqa: E402
from esl_controller.pipeline.workers import PoolConfig, WorkerPool  # noqa: E402
from tests.audio_fixtures import frames, speech  # noqa: E402

SENTENCES = (
    "Hello, I would like to book a table for two people tonight.",
    "Thank you very much, goodbye.",
    "Please send the invoice to my email address.",
    "I need to change my delivery address.",
    "What time do you open tomorrow?",
    "Can you tell me the status of my order?",
    "I would like to speak to someone about my account.",
    "The package arrived yesterday but it was damaged.",
)
YES_NO = {
    "Yes.": "yes",
    "No.": "no",
    "Yes please.": "yes",
    "No thank you.": "no",
    "Nope.": "no",
    "Yeah.": "yes",
    "Wrong.": "no",
    "That is correct.": "yes",
}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q / 100.0 * len(values)))]


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def edit_distance(ref: list[str], hyp: list[str]) -> int:
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


def wer(pairs: list[tuple[str, str]]) -> float:
    errors = sum(edit_distance(words(r), words(h)) for r, h in pairs)
    return errors / max(1, sum(len(words(r)) for r, _ in pairs))


class HubLateness:
    """A greenlet sleeping 10 ms at a time; records how late each wake-up is (ms)."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._g = gevent.spawn(self._run)
        self.recording = False

    def _run(self) -> None:
        while True:
            t0 = time.perf_counter()
            gevent.sleep(0.01)
            if self.recording:
                self.samples.append(max(0.0, (time.perf_counter() - t0 - 0.01) * 1000.0))

    def stop(self) -> None:
        self._g.kill()


def with_pauses(text: str, rate: int) -> bytes:
    return silence(0.3, rate) + speech(text, rate) + silence(0.3, rate)


def bench_whisper(args: argparse.Namespace, hub: HubLateness) -> dict:
    t0 = time.monotonic()
    pool = WorkerPool(PoolConfig(engine="whisper", size=args.workers, queue_limit=256)).start(
        timeout=180
    )
    start_s = time.monotonic() - t0
    stt = whisper.WhisperTranscriber(pool)
    sentences = SENTENCES[:4] if args.quick else SENTENCES
    out: dict = {"start_s": start_s}
    hub.recording = True
    for rate in (16000, 8000):
        pairs, lat = [], []
        for text in sentences:
            pcm = speech(text, rate)
            t = time.perf_counter()
            result = stt.transcribe(pcm, rate, timeout=60)
            lat.append((time.perf_counter() - t) * 1000.0)
            pairs.append((text, result.text))
        out[rate] = {"wer": wer(pairs), "p50": pct(lat, 50), "p95": pct(lat, 95), "pairs": pairs}
    hub.samples.clear()
    n = args.utterances or (12 if args.quick else 48)
    batch = [
        (speech(sentences[i % len(sentences)], 16000 if i % 2 else 8000), 16000 if i % 2 else 8000)
        for i in range(n)
    ]
    t = time.perf_counter()
    jobs = [gevent.spawn(stt.transcribe, pcm, rate, timeout=300) for pcm, rate in batch]
    gevent.joinall(jobs, timeout=600, raise_error=True)
    elapsed = time.perf_counter() - t
    audio_s = sum(len(p) / (2 * r) for p, r in batch)
    out["throughput"] = n / elapsed
    out["rtf"] = elapsed / audio_s
    out["n"] = n
    out["lateness_p99"] = pct(hub.samples, 99)
    out["lateness_max"] = max(hub.samples) if hub.samples else float("nan")
    hub.recording = False
    stats = pool.stats()
    out["rss_mb"] = [kb / 1024 for kb in stats.rss_kb.values()]
    out["workers"] = stats.workers
    pool.close()
    return out


def stream_paced(stream, pcm: bytes, rate: int) -> tuple[str, float, int]:
    partials = 0
    next_t = time.perf_counter()
    for frame in frames(pcm, rate):
        stream.push(frame)
        partials += len(list(stream.results(0)))
        next_t += 0.02
        gevent.sleep(max(0.0, next_t - time.perf_counter()))
    t = time.perf_counter()
    final = stream.finish(timeout=30)
    return (final.text if final else ""), (time.perf_counter() - t) * 1000.0, partials


def bench_sphinx(args: argparse.Namespace, hub: HubLateness) -> dict:
    pool = sphinx.start_pool(1, timeout=60)
    out: dict = {}
    sentences = SENTENCES[:3] if args.quick else SENTENCES
    hub.samples.clear()
    hub.recording = True
    lat, pairs = [], []
    for rate in (16000, 8000):
        stream = sphinx.SphinxTranscriber(pool).open_stream(rate)
        for text in sentences:
            heard, ms, _ = stream_paced(stream, with_pauses(text, rate), rate)
            lat.append(ms)
            pairs.append((text, heard))
        stream.close()
        out[rate] = wer(pairs[-len(sentences) :])
    right = total = 0
    for rate in (16000, 8000):
        stt = sphinx.SphinxTranscriber(pool, grammar="yesno")
        stream = stt.open_stream(rate)
        for text, meaning in YES_NO.items():
            pcm = with_pauses(text, rate)
            for frame in frames(pcm, rate):
                stream.push(frame)
            final = stream.finish(timeout=30)
            right += final is not None and sphinx.classify_yes_no(final.text) == meaning
            total += 1
        stream.close()
    hub.recording = False
    out.update(
        final_p50=pct(lat, 50),
        final_p95=pct(lat, 95),
        yes_no=(right, total),
        lateness_p99=pct(hub.samples, 99),
        rss_mb=[kb / 1024 for kb in pool.stats().rss_kb.values()],
    )
    pool.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--workers", type=int, default=0, help="0: one per core")
    parser.add_argument("--utterances", type=int, default=0)
    args = parser.parse_args(argv)
    hub = HubLateness()
    w = bench_whisper(args, hub)
    print(f"whisper tiny.en int8: {w['workers']} workers started in {w['start_s']:.1f} s")
    for rate in (16000, 8000):
        r = w[rate]
        print(
            f"  {rate // 1000} kHz: WER {r['wer'] * 100:.1f}%  latency after end of utterance "
            f"p50 {r['p50']:.0f} ms p95 {r['p95']:.0f} ms"
        )
        for ref, hyp in r["pairs"]:
            print(f"    {ref!r} -> {hyp!r}")
    print(
        f"  {w['n']} utterances at once: {w['throughput']:.2f} utt/s ({w['rtf']:.3f}x real time); "
        f"hub lateness p99 {w['lateness_p99']:.1f} ms, max {w['lateness_max']:.1f} ms"
    )
    print("  worker RSS: " + ", ".join(f"{mb:.0f} MB" for mb in w["rss_mb"]))
    s = bench_sphinx(args, hub)
    print(
        f"pocketsphinx streaming (real-time pace): final {s['final_p50']:.0f} ms p50 / {s['final_p95']:.0f} ms p95 "
        f"after the last frame; dictation WER 16 kHz {s[16000] * 100:.0f}%, 8 kHz {s[8000] * 100:.0f}%; "
        f"yes/no grammar {s['yes_no'][0]}/{s['yes_no'][1]}; hub lateness p99 {s['lateness_p99']:.1f} ms; "
        f"worker RSS {', '.join(f'{mb:.0f} MB' for mb in s['rss_mb'])}"
    )
    hub.stop()
    print(
        f"stt_workers: whisper {w['throughput']:.2f} utt/s on {w['workers']} workers, "
        f"p50 {w[16000]['p50']:.0f} ms / p95 {max(w[16000]['p95'], w[8000]['p95']):.0f} ms after end of utterance, "
        f"WER {w[16000]['wer'] * 100:.0f}% (16 kHz) {w[8000]['wer'] * 100:.0f}% (8 kHz), "
        f"hub lateness p99 {max(w['lateness_p99'], s['lateness_p99']):.1f} ms, "
        f"{max(w['rss_mb']):.0f} MB per worker"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
