"""VAD cost: CPU per second of audio for webrtcvad and Silero, and the Silero wrapper's overhead.

Real speech with gaps (espeak-ng, ``tests/audio_fixtures.PHRASES``) in 20 ms frames through
:class:`~esl_controller.media.vad.VoiceActivityDetector`, single-threaded, ``time.process_time``:

* **webrtcvad**: the default detector (8 and 16 kHz);
* **silero model-only**: the ONNX model alone over the same audio at 16 kHz, one 512-sample window per
  ``InferenceSession.run(None, feed)`` with every input prepared beforehand (what the model costs
  however it is wrapped); also through a prebuilt ``IOBinding`` (the floor for one window at a time);
* **silero naive wrapper**: a straightforward per-frame wrapper (convert, concatenate, slice, run;
  what ``media.silero`` did before it was tuned), kept here for comparison;
* **silero detector**: the detector with :class:`~esl_controller.media.silero.SileroConfidence`
  (8 kHz includes upsampling to 16 kHz).

Each figure is the median (and minimum) over rounds; the machine is shared, so run it more than once.

    .venv/bin/python bench/vad_cost.py --quick     # a few seconds
    .venv/bin/python bench/vad_cost.py

The last line is the headline: the detector's Silero cost against the model's own.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import numpy as np  # noqa: E402

from esl_controller.media import silero  # noqa: E402
from esl_controller.media.codecs import Resampler  # noqa: E402
from esl_controller.media.vad import VoiceActivityDetector  # noqa: E402


class NaiveSilero:
    """The plain per-frame wrapper: new arrays every frame, ``run(None, ...)`` per window."""

    def __init__(self, sample_rate: int) -> None:
        self._session = silero.session()
        self._resampler = Resampler(sample_rate, 16000) if sample_rate != 16000 else None
        self._h = np.zeros(silero.STATE_SHAPE, dtype=np.float32)
        self._c = np.zeros(silero.STATE_SHAPE, dtype=np.float32)
        self._context = np.zeros(silero.CONTEXT, dtype=np.float32)
        self._buf = np.zeros(0, dtype=np.float32)
        self.probability = 0.0

    def __call__(self, frame: bytes) -> float:
        pcm = self._resampler.process(frame) if self._resampler is not None else frame
        samples = np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0
        buf = np.concatenate((self._buf, samples)) if self._buf.size else samples
        while buf.size >= silero.WINDOW:
            window, buf = buf[: silero.WINDOW], buf[silero.WINDOW :]
            batch = np.concatenate((self._context, window))[np.newaxis, :]
            probs, self._h, self._c = self._session.run(
                None, {"input": batch, "h": self._h, "c": self._c}
            )
            self._context = window[-silero.CONTEXT :].copy()
            self.probability = float(probs[-1])
        self._buf = buf.copy()
        return self.probability


def speech_audio(rate: int, repeat: int) -> tuple[list[bytes], float]:
    from audio_fixtures import PHRASES, frames, speech_with_gaps

    pcm = speech_with_gaps(PHRASES, rate=rate, gap=1.0, lead=0.8).audio * repeat
    fs = frames(pcm, rate)
    return fs, len(fs) * 0.02


def per_second(fn: Callable[[], None], seconds: float, rounds: int) -> tuple[float, float]:
    """(median, min) CPU ms per second of audio over ``rounds`` runs of ``fn``, after one warm-up."""
    fn()
    costs = []
    for _ in range(rounds):
        t0 = time.process_time()
        fn()
        costs.append((time.process_time() - t0) / seconds * 1000.0)
    return statistics.median(costs), min(costs)


def detector(
    rate: int, fs: list[bytes], make: Callable[[int], object] | None
) -> Callable[[], None]:
    def run() -> None:
        vad = VoiceActivityDetector(rate, confidence=make(rate) if make else None)
        for f in fs:
            vad.process(f)

    return run


def model_inputs(fs16: list[bytes]) -> list[np.ndarray]:
    x = np.frombuffer(b"".join(fs16), dtype="<i2").astype(np.float32) / 32768.0
    n = x.size // silero.WINDOW
    windows = x[: n * silero.WINDOW].reshape(n, silero.WINDOW)
    context = np.zeros_like(windows[:, : silero.CONTEXT])
    context[1:] = windows[:-1, -silero.CONTEXT :]
    rows = np.concatenate((context, windows), axis=1)
    return [rows[i : i + 1].copy() for i in range(n)]


def model_run(inputs: list[np.ndarray]) -> Callable[[], None]:
    sess = silero.session()

    def run() -> None:
        h = np.zeros(silero.STATE_SHAPE, dtype=np.float32)
        c = np.zeros(silero.STATE_SHAPE, dtype=np.float32)
        for row in inputs:
            _, h, c = sess.run(None, {"input": row, "h": h, "c": c})

    return run


def model_iobinding(inputs: list[np.ndarray]) -> Callable[[], None]:
    from onnxruntime import OrtValue

    sess = silero.session()
    row = np.zeros((1, silero.CONTEXT + silero.WINDOW), dtype=np.float32)
    states = [np.zeros(silero.STATE_SHAPE, dtype=np.float32) for _ in range(4)]
    prob = OrtValue.ortvalue_from_numpy(np.zeros(1, dtype=np.float32))
    bindings = []
    for read, write in ((0, 2), (2, 0)):
        b = sess.io_binding()
        b.bind_cpu_input("input", row)
        b.bind_cpu_input("h", states[read])
        b.bind_cpu_input("c", states[read + 1])
        b.bind_ortvalue_output("speech_probs", prob)
        b.bind_ortvalue_output("hn", OrtValue.ortvalue_from_numpy(states[write]))
        b.bind_ortvalue_output("cn", OrtValue.ortvalue_from_numpy(states[write + 1]))
        bindings.append(b)

    def run() -> None:
        for s in states:
            s.fill(0.0)
        turn = 0
        for r in inputs:
            row[:] = r
            sess.run_with_iobinding(bindings[turn])
            turn ^= 1

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer rounds, shorter audio")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args(argv)
    rounds = args.rounds or (5 if args.quick else 15)
    repeat = 1 if args.quick else 3

    audio = {rate: speech_audio(rate, repeat) for rate in (8000, 16000)}
    fs16, secs16 = audio[16000]
    inputs = model_inputs(fs16)
    rows: list[tuple[str, float, float]] = []

    def measure(label: str, fn: Callable[[], None], seconds: float) -> float:
        med, low = per_second(fn, seconds, rounds)
        rows.append((label, med, low))
        print(f"{label:42s} {med:6.2f} ms (min {low:5.2f})", flush=True)
        return med

    print(f"{secs16:.1f} s of speech with gaps, {rounds} rounds; CPU ms per second of audio")
    web = measure("webrtcvad detector, 16 kHz", detector(16000, fs16, None), secs16)
    measure("webrtcvad detector, 8 kHz", detector(8000, *audio[8000][:1], None), audio[8000][1])
    model = measure("silero model-only run(), 16 kHz", model_run(inputs), secs16)
    measure("silero model-only IOBinding, 16 kHz", model_iobinding(inputs), secs16)
    measure("silero naive wrapper detector, 16 kHz", detector(16000, fs16, NaiveSilero), secs16)
    sil = measure("silero detector, 16 kHz", detector(16000, fs16, silero.SileroConfidence), secs16)
    sil8 = measure(
        "silero detector, 8 kHz (upsampled)",
        detector(8000, audio[8000][0], silero.SileroConfidence),
        audio[8000][1],
    )
    print(
        f"vad_cost: silero detector {sil:.2f} ms CPU per s of audio at 16 kHz ({sil8:.2f} at 8 kHz)"
        f" = {sil / model:.2f}x the model-only run() ({model:.2f} ms); webrtcvad {web:.2f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
