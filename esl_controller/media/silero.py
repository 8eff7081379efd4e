"""Silero VAD (v6, ONNX through onnxruntime) as a confidence function for ``VoiceActivityDetector``.

The noise-robust option (architecture.md section 7): about 3 ms CPU per second of audio against
webrtcvad's 0.1 ms, but it keeps finding speech at 5 dB SNR where webrtcvad does not.

**Selection.** Per assistant, with our own field in Vapi's ``startSpeakingPlan`` (unknown fields pass
through the API untouched)::

    "startSpeakingPlan": {"waitSeconds": 0.4, "vad": "silero"}

``"webrtc"`` (or no ``vad`` key) keeps the default webrtcvad; anything else is refused by
:func:`vad_choice`. ``assistantOverrides.startSpeakingPlan.vad`` wins over the assistant's value.

**The model.** ``silero_vad_v6.onnx`` is the file the faster-whisper package ships in its ``assets``
folder (found with ``importlib.resources``; never downloaded). Its graph, as inspected:
inputs ``input`` float32 ``[seq_len, 576]`` (64 samples of context from the previous window followed by
a 512-sample window), ``h`` and ``c`` float32 ``[1, 1, 128]`` (the LSTM state); outputs
``speech_probs`` ``[seq_len]``, ``hn``, ``cn``. It has **no** ``sr`` input: this export is 16 kHz only,
so 8 kHz streams are upsampled to 16 kHz (``codecs.Resampler``, state kept per stream) rather than
fed in 256-sample windows.

**Streaming.** One :class:`SileroConfidence` per stream keeps the recurrent state, the 64-sample
context and the part-filled window that maps 20 ms frames (320 samples at 16 kHz) onto 512-sample
windows; each frame is given the probability of the latest complete window (up to 32 ms behind), and
the model runs only when a window completes. One ``InferenceSession`` per process (intra- and
inter-op threads 1), shared by every stream: runs are thread-safe and all per-stream state (buffers
and ``IOBinding`` objects) lives in the stream's object. Samples are scaled straight into a
preallocated model input, nothing is concatenated or copied per frame: the detector costs about what
the model's own ``run()`` does (``bench/vad_cost.py``).
"""

from __future__ import annotations

import importlib.resources
import logging
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from esl_controller.media.codecs import Resampler

log = logging.getLogger("esl_controller.media.silero")

MODEL_PACKAGE = "faster_whisper"
MODEL_FILE = "silero_vad_v6.onnx"
MODEL_RATE = 16000
WINDOW = 512  # samples per window at 16 kHz
CONTEXT = 64  # samples of the previous window prepended to each one
STATE_SHAPE = (1, 1, 128)
CHOICES = ("webrtc", "silero")

_sessions: dict[str, Any] = {}
_lock = threading.Lock()


class SileroModelMissing(FileNotFoundError):
    """The Silero ONNX model file is not where it should be (faster-whisper not installed, or a path
    that does not exist)."""


def model_path() -> Path:
    """The ``silero_vad_v6.onnx`` shipped inside the faster-whisper package. Raises SileroModelMissing."""
    try:
        assets = importlib.resources.files(MODEL_PACKAGE) / "assets" / MODEL_FILE
    except ModuleNotFoundError as exc:
        raise SileroModelMissing(
            f"Silero VAD needs the {MODEL_PACKAGE!r} package (it ships {MODEL_FILE}): {exc}"
        ) from exc
    path = Path(str(assets))
    if not path.is_file():
        raise SileroModelMissing(f"Silero VAD model not found at {path}")
    return path


def session(path: str | Path | None = None) -> Any:
    """The process's InferenceSession for ``path`` (default: :func:`model_path`), made once."""
    resolved = Path(path) if path is not None else model_path()
    if not resolved.is_file():
        raise SileroModelMissing(f"Silero VAD model not found at {resolved}")
    key = str(resolved.resolve())
    with _lock:
        found = _sessions.get(key)
        if found is not None:
            return found
        import onnxruntime

        opts = onnxruntime.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        made = onnxruntime.InferenceSession(
            key, sess_options=opts, providers=["CPUExecutionProvider"]
        )
        _check_graph(made, key)
        _sessions[key] = made
        log.info("silero VAD model loaded from %s", key)
        return made


def _check_graph(sess: Any, path: str) -> None:
    inputs = {i.name: i.shape for i in sess.get_inputs()}
    want = {"input", "h", "c"}
    if set(inputs) != want or inputs["input"][-1] != WINDOW + CONTEXT:
        raise ValueError(f"{path}: not the expected Silero v6 graph (inputs {inputs})")


class SileroConfidence:
    """``frame -> speech probability`` for one stream (mono L16 at 8 or 16 kHz, any frame size).

    No array is built per frame: samples are scaled straight into a preallocated ``[1, 576]`` input
    row (context, then window) and the model runs through an ``IOBinding`` whose inputs and
    outputs are this stream's own arrays; the LSTM state ping-pongs between two pairs of buffers,
    so no output is ever written over an input of the same run.
    """

    def __init__(self, sample_rate: int, path: str | Path | None = None) -> None:
        import numpy as np
        from onnxruntime import OrtValue

        if sample_rate not in (8000, 16000):
            raise ValueError(f"Silero VAD runs at 8 or 16 kHz, not {sample_rate} Hz")
        self._np = np
        self.sample_rate = sample_rate
        self._session = session(path)
        self._resampler = Resampler(sample_rate, MODEL_RATE) if sample_rate != MODEL_RATE else None
        self._scale = np.float32(1.0 / 32768.0)  # a power of two: the same floats as / 32768
        self._input = np.zeros((1, CONTEXT + WINDOW), dtype=np.float32)
        self._row = self._input[0]
        self._fill = CONTEXT  # next free sample of the row; the first CONTEXT are context
        self._states = [np.zeros(STATE_SHAPE, dtype=np.float32) for _ in range(4)]  # h0 c0 h1 c1
        self._prob = np.zeros(1, dtype=np.float32)
        prob = OrtValue.ortvalue_from_numpy(self._prob)
        self._bindings = []
        for read, write in ((0, 2), (2, 0)):
            binding = self._session.io_binding()
            binding.bind_cpu_input("input", self._input)
            binding.bind_cpu_input("h", self._states[read])
            binding.bind_cpu_input("c", self._states[read + 1])
            binding.bind_ortvalue_output("speech_probs", prob)
            for name, index in (("hn", write), ("cn", write + 1)):
                state = OrtValue.ortvalue_from_numpy(self._states[index])
                binding.bind_ortvalue_output(name, state)
            self._bindings.append(binding)
        self._turn = 0  # which binding runs next (its outputs are the other one's inputs)
        self.probability = 0.0
        self.windows = 0

    def __call__(self, frame: bytes) -> float:
        pcm = self._resampler.process(frame) if self._resampler is not None else frame
        samples = self._np.frombuffer(pcm, dtype="<i2")
        row, fill, total = self._row, self._fill, CONTEXT + WINDOW
        done, count = 0, samples.size
        while done < count:
            take = min(total - fill, count - done)
            self._np.multiply(samples[done : done + take], self._scale, out=row[fill : fill + take])
            fill += take
            done += take
            if fill == total:
                self._run()
                row[:CONTEXT] = row[-CONTEXT:]
                fill = CONTEXT
        self._fill = fill
        return self.probability

    def _run(self) -> None:
        """One window (the row as it stands); the state moves to the other pair of buffers."""
        self._session.run_with_iobinding(self._bindings[self._turn])
        self._turn ^= 1
        self.windows += 1
        self.probability = float(self._prob[0])

    def reset(self) -> None:
        """Back to a fresh stream: state, context, part-filled window and resampler."""
        if self._resampler is not None:
            self._resampler.reset()
        for state in self._states:
            state.fill(0.0)
        self._input.fill(0.0)
        self._fill = CONTEXT
        self._turn = 0
        self.probability = 0.0


def vad_choice(
    start_speaking_plan: Mapping[str, Any] | None,
    overrides_plan: Mapping[str, Any] | None = None,
) -> str:
    """``"webrtc"`` (default) or ``"silero"`` from ``startSpeakingPlan.vad``. Raises ValueError."""
    value = None
    for plan in (overrides_plan, start_speaking_plan):
        if isinstance(plan, Mapping) and plan.get("vad") is not None:
            value = plan.get("vad")
            break
    if value is None:
        return "webrtc"
    choice = str(value).strip().lower()
    if choice not in CHOICES:
        raise ValueError(
            f"startSpeakingPlan.vad must be one of {', '.join(CHOICES)}, not {value!r}"
        )
    return choice


def confidence_for(choice: str, sample_rate: int) -> SileroConfidence | None:
    """The confidence function for a :func:`vad_choice` result (None: the detector's webrtcvad)."""
    if choice == "silero":
        return SileroConfidence(sample_rate)
    return None
