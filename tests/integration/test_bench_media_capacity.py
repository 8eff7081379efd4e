"""bench/media_capacity.py ``--pipeline``: a few fork streams through the call session's real
MediaPipeline (ForkMediaPort, Conversation, recorder, listen hub) over real sockets, for a few
seconds. Checks that the frames reached the pipeline, that it endpointed the looping speech and
replied over the fork, and that both recordings of every stream were written, the assistant's
replies on the stereo file's right channel; and that the ended calls were freed at once, leaving
nothing for the cyclic garbage collector. No timing is asserted (speed is the bench's business)."""

import gc
import importlib.util
import os
import struct
import wave
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "media_capacity.py"
N = 4


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_media_capacity", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def right_channel_peak(path: Path) -> int:
    with wave.open(str(path), "rb") as w:
        assert w.getnchannels() == 2
        data = w.readframes(w.getnframes())
    samples = struct.unpack(f"<{len(data) // 2}h", data)
    return max((abs(s) for s in samples[1::2]), default=0)


def _call_of(obj) -> str:
    """The call an object belongs to, by its ``call_id`` (a playout: its ``name``), else ""."""
    try:
        value = getattr(obj, "call_id", None) or getattr(obj, "name", None)
    except Exception:  # noqa: BLE001 - whatever a foreign object's attribute lookup does
        return ""
    return value if isinstance(value, str) else ""


def test_pipeline_mode_runs_the_session_pipeline_per_stream(tmp_path):
    bench = load_bench()
    gc.collect()  # what earlier tests left
    r = bench.run_step(N, 1.0, 4.0, str(tmp_path), bench.rss_kb(), inline=True, pipeline=True)

    assert r["pipeline"] is True
    assert r["streams"] == N
    assert r["client"]["connected"] == N and r["client"]["failures"] == 0
    assert r["frames_handled"] > 0
    assert r["handler_errors"] == 0 and r["pipeline_errors"] == 0
    # the conversation endpointed the caller's speech, transcribed it and answered over the fork
    assert r["transcripts"] >= 1
    assert r["replies"] >= 1
    assert r["play_messages"] >= 1
    assert r["client"]["messages_received"] >= 1

    names = sorted(os.listdir(tmp_path))
    assert names == sorted(
        f"bench-{i}{suffix}" for i in range(N) for suffix in (".wav", "-stereo.wav")
    )
    for name in names:
        with wave.open(str(tmp_path / name), "rb") as w:
            assert w.getnframes() > 0, name
    # the replies went through the port's virtual speaker into the recording (port.on_assistant)
    peaks = [right_channel_peak(tmp_path / f"bench-{i}-stereo.wav") for i in range(N)]
    assert max(peaks) > 1000, peaks

    # every ended call was freed by reference counting: no cycle (a callback's bound method, a killed
    # greenlet's traceback, the connection and its stream) left it for a full collection, a pause for
    # every call on the hub
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        ours = sorted(  # the bench's calls only (other tests' leftovers may turn up meanwhile)
            {type(o).__qualname__ for o in gc.garbage if _call_of(o).startswith("bench-")}
        )
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert ours == []
