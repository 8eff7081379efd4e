"""Fork-stream capacity: how many concurrent mod_audio_fork streams one hub (one core) carries.

The server side (this process) runs the real ForkServer (gevent; wsproto for the handshake, a lean
parser for data frames; one batch reader greenlet reads every socket each ``--read-interval`` ms)
and, per call, frames handled inline in the reader as the call session does (``--queue``: through
the per-call queue and a consumer greenlet instead): the webrtcvad VAD, a mono + stereo recording
to disk (made in the recording process, as the controller does: its CPU is reported next to the
hub's; ``--writer thread``: on the hub with a writer thread, whose CPU counts) and a stubbed STT
(each endpointed utterance gets a ``transcription`` text back and a "TTS" reply placed on the
assistant track). A separate plain (not gevent) client process plays N mod_audio_fork look-alikes:
handshake with the ``audio.drachtio.org`` subprotocol, metadata frame, then 16 kHz mono L16 speech
with pauses in 20 ms binary frames at real-time pace (one paced loop of non-blocking sends of
pre-built masked frames, so the client side stays cheap).

For each N it measures, during a window after warm-up: frame handling lateness (when VAD +
recording of a frame finished, against that frame's best-case time on the real-time schedule of
its stream: covers socket buffers, the reader's tick and the hub) p50/p99, frames dropped, hub
lateness (a 10 ms timer's overshoot), server CPU per frame (and the kernel's share), GC pauses and
RSS growth per call. The largest N with p99 lateness < 20 ms, hub lateness p99 < 20 ms and no drops
is the headline.

``--pipeline`` runs, per stream, the call session's real per-frame path instead of the stand-in above:
the objects ``calls.pipeline_factory.PipelineFactory`` builds for a fork call (a ``ForkMediaPort`` on a
minimal stand-in session, a ``Conversation`` with the scripted model, a ``ListenHub`` without
listeners, the recorder, a ``MediaPipeline``), each frame handed to ``MediaPipeline.feed`` as
``CallSession._on_fork_frame`` does. No database and no ESL: the STT returns a fixed text at once and
the voice is a cached 0.5 s tone, so what is measured is the hub's media path (VAD, turn-taking, the
playAudio replies over the fork socket, the paced virtual speaker, recording of both tracks), not the
providers. ``utterances`` then counts the pipeline's final user transcripts.

    .venv/bin/python bench/media_capacity.py --quick     # < 1 minute
    .venv/bin/python bench/media_capacity.py             # 100 .. 1000 streams, 10 s windows
    .venv/bin/python bench/media_capacity.py --no-record # without the recording
    .venv/bin/python bench/media_capacity.py --pipeline --steps 100,200 --window 3
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any

RATE = 16000
FRAME = 640  # 20 ms at 16 kHz
TICK = 0.02


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q / 100.0 * len(values)))]


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def speech_loop() -> list[bytes]:
    """About 10 s of 16 kHz speech with silences, cut in 20 ms frames."""
    from esl_controller.media.codecs import silence
    from esl_controller.pipeline.providers.tts import espeak_ng

    texts = (
        "Hello, I would like to book a table for two people tonight.",
        "Yes, seven thirty works for me.",
        "Thank you very much, goodbye.",
    )
    parts = []
    for text in texts:
        parts.append(espeak_ng.synthesize(text, sample_rate=RATE).audio)
        parts.append(silence(1.2, RATE))
    pcm = b"".join(parts)
    return [pcm[i : i + FRAME] for i in range(0, len(pcm) - FRAME + 1, FRAME)]


# ------------------------------------------------------------------------------------ client


def client_main(port: int, n: int, seconds: float) -> int:
    """N mod_audio_fork look-alikes in one plain (not gevent) process: blocking handshakes, then
    non-blocking sends of pre-built frames on one paced loop, so the client stays cheap per frame."""
    import select
    import socket

    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, BytesMessage, Request, TextMessage

    frames = speech_loop()
    # Pre-build masked binary frames once with a connection that did a handshake in memory.
    cli, srv = WSConnection(ConnectionType.CLIENT), WSConnection(ConnectionType.SERVER)
    srv.receive_data(cli.send(Request(host="x", target="/fork/x")))
    next(srv.events())
    cli.receive_data(srv.send(AcceptConnection()))
    list(cli.events())
    wire = [cli.send(BytesMessage(data=f)) for f in frames]

    def connect(i: int) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ws = WSConnection(ConnectionType.CLIENT)
        sock.sendall(
            ws.send(
                Request(
                    host="127.0.0.1",
                    target=f"/fork/bench-{i}?rate={RATE}",
                    subprotocols=["audio.drachtio.org"],
                )
            )
        )
        while True:
            data = sock.recv(4096)
            if not data:
                raise ConnectionError("closed during handshake")
            ws.receive_data(data)
            if any(isinstance(e, AcceptConnection) for e in ws.events()):
                break
        sock.sendall(ws.send(TextMessage(data=json.dumps({"callId": f"bench-{i}"}))))
        sock.setblocking(False)
        return sock

    socks: list[socket.socket] = []
    failures = 0
    for i in range(n):
        try:
            socks.append(connect(i))
        except OSError:
            failures += 1
    poller = select.epoll()
    for sock in socks:
        poller.register(sock.fileno(), select.EPOLLIN)
    received = 0
    offsets = [random.randrange(len(wire)) for _ in socks]
    groups = 4  # spread the sends over the 20 ms tick
    print("READY", flush=True)

    lateness: list[float] = []
    sent = 0
    short = 0
    start = time.monotonic()
    tick = 0
    while time.monotonic() - start < seconds:
        for g in range(groups):
            due = start + tick * TICK + g * TICK / groups
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            lateness.append(max(0.0, time.monotonic() - due))
            for j in range(g, len(socks), groups):
                frame = wire[(offsets[j] + tick) % len(wire)]
                try:
                    if socks[j].send(frame) != len(frame):
                        short += 1  # a torn frame: the stream is broken from here on
                    sent += 1
                except OSError:
                    failures += 1
        for fd, _ in poller.poll(0):  # drain what the server sends (transcriptions)
            try:
                while os.read(fd, 65536):
                    received += 1
            except OSError:
                pass
        tick += 1
    for sock in socks:
        sock.close()
    print(
        json.dumps(
            {
                "connected": len(socks),
                "failures": failures + short,
                "frames_sent": sent,
                "messages_received": received,
                "send_lateness_p99_ms": pct(lateness, 99) * 1000,
            }
        ),
        flush=True,
    )
    return 0


# ------------------------------------------------------------------------------------ server

#: ``--pipeline``: the assistant of every stream. It waits for the caller, so each endpointed utterance
#: of the looping speech gets a reply; the fixed transcript matches the rule.
PIPELINE_TRANSCRIPT = "I would like to book a table for two people tonight."
PIPELINE_ASSISTANT = {
    "firstMessageMode": "assistant-waits-for-user",
    "model": {
        "provider": "custom-llm",
        "model": "scripted",
        "url": "scripted://",
        "messages": [{"role": "system", "content": "You take bookings."}],
        "rules": [{"keywords": ["table"], "reply": "Sure, for how many people?"}],
    },
}


class BenchSession:
    """What ``ForkMediaPort`` uses of a ``CallSession``, without a database or ESL: the fork stream, a
    ``done`` event, channel commands that succeed at once and the pipeline's notices."""

    def __init__(self, call_id: str, fork_stream: Any, on_notice: Callable[[Any], None]) -> None:
        from gevent.event import Event

        self.call_id = call_id
        self.fork_stream = fork_stream
        self.done = Event()
        self.on_notice = on_notice

    def channel_api(self, build: Any, what: str) -> bool:
        return True

    def notify(self, notice: Any) -> None:
        self.on_notice(notice)


def build_pipeline(stream: Any, recorder: Any, hub: Any, on_notice: Callable[[Any], None]) -> Any:
    """The ``MediaPipeline`` of one fork stream, made as ``PipelineFactory.__call__`` makes it for a
    fork call (the providers aside: a fixed transcript at once, the scripted model, a cached tone)."""
    from esl_controller.calls.media import ForkMediaPort, MediaPipeline
    from esl_controller.calls.pipeline_factory import FORK_RATE
    from esl_controller.pipeline.assistant import AssistantConfig
    from esl_controller.pipeline.conversation import Conversation
    from esl_controller.pipeline.providers import registry
    from esl_controller.pipeline.providers.testing import FakeSynthesizer, FakeTranscriber

    t0 = time.monotonic()

    def clock() -> float:
        return time.monotonic() - t0

    session = BenchSession(stream.call_id, stream, on_notice)
    port = ForkMediaPort(session, FORK_RATE, clock=clock)
    config = AssistantConfig.from_dict(PIPELINE_ASSISTANT, None)
    conversation = Conversation(
        config,
        port,
        stt=FakeTranscriber(default=PIPELINE_TRANSCRIPT),
        llm=registry.build_model(config.model),
        # 5 words x 0.1 s: a 0.5 s reply, as the stand-in's; the tone is cached, so no synthesis
        tts=FakeSynthesizer(seconds_per_word=0.1),
        call_id=stream.call_id,
        clock=clock,
    )
    pipeline = MediaPipeline(
        conversation, port, call_id=stream.call_id, clock=clock, recorder=recorder, hub=hub
    )
    port.on_assistant = pipeline.add_assistant
    return pipeline


class Stats:
    def __init__(self) -> None:
        self.measuring = False
        self.handling: list[float] = []
        self.frames = 0
        self.utterances = 0
        #: ``--pipeline``: over the whole step (not only the window)
        self.transcripts = 0
        self.replies = 0
        self.pipeline_errors = 0
        self.play_messages = 0

    def reset(self) -> None:
        self.handling = []
        self.frames = 0
        self.utterances = 0


def run_step(
    n: int,
    warmup: float,
    window: float,
    record_dir: str | None,
    baseline_kb: int,
    vad_on: bool = True,
    inline: bool = False,
    read_interval: float = 0.005,
    writer_kind: str = "process",
    pipeline: bool = False,
) -> dict:
    import gevent

    from esl_controller.media.fork_server import ForkServer, StreamClosed
    from esl_controller.media.recorder import CallRecorder
    from esl_controller.media.recording_process import RecordingProcess
    from esl_controller.media.recording_writer import shared_writer
    from esl_controller.media.vad import SpeechEnded, VoiceActivityDetector
    from esl_controller.waits import IDLE_POLL_SECONDS

    stats = Stats()
    writer = None
    if record_dir:
        writer = RecordingProcess() if writer_kind == "process" else shared_writer()
        if writer_kind == "process":
            writer.start()
    reply = b"\x10\x00" * (RATE // 2)  # stand-in TTS audio, 0.5 s
    hub = None
    if pipeline:
        from esl_controller.media.listen import ListenHub

        hub = ListenHub()  # the process's live-listen hub, no listeners
    sinks: list = []  # one greenlet per stream's on_stream: joined before the writer stops

    def on_notice(notice: Any) -> None:
        data = notice.data or {}
        if (
            notice.kind == "transcript"
            and data.get("role") == "user"
            and data.get("transcriptType") == "final"
        ):
            stats.transcripts += 1
            if stats.measuring:
                stats.utterances += 1
        elif notice.kind == "turn-timing":
            stats.replies += 1
        elif notice.kind == "error":
            stats.pipeline_errors += 1

    def handled(timestamp: float, best: list[float]) -> None:
        """A frame's handling is done: its lateness against the real-time schedule, i.e. how much later
        than its best-case arrival it was handled (covers socket buffers, the queue and the hub)."""
        d = time.monotonic() - timestamp
        if d < best[0]:
            best[0] = d
        if stats.measuring:
            stats.handling.append(d - best[0])
            stats.frames += 1

    def make_recorder(stream):
        if not record_dir:
            return None
        base = os.path.join(record_dir, stream.call_id)
        if writer_kind == "process":
            return writer.recorder(stream.sample_rate, base + ".wav", base + "-stereo.wav")
        return CallRecorder(stream.sample_rate, base + ".wav", base + "-stereo.wav")

    def on_stream(stream) -> None:
        sinks.append(gevent.getcurrent())
        if pipeline:
            return on_pipeline_stream(stream)
        vad = VoiceActivityDetector(stream.sample_rate) if vad_on else None
        rec = make_recorder(stream)

        best = [float("inf")]

        def handle(frame) -> None:
            for event in vad.process(frame.caller) if vad else ():
                if isinstance(event, SpeechEnded):  # STT stubbed: a fixed transcript
                    try:
                        stream.send_text({"type": "transcription", "data": {"text": "stub"}})
                    except StreamClosed:  # the step is ending
                        pass
                    if rec:
                        rec.add_assistant(reply, event.detected_at + 0.3)
                    if stats.measuring:
                        stats.utterances += 1
            if rec:
                rec.add_caller(frame.caller, frame.timestamp)
            handled(frame.timestamp, best)

        try:
            if inline:
                stream.set_frame_handler(handle)
                stream.closed.wait(timeout=seconds + 30)
            else:
                for frame in stream.frames(poll=1.0):
                    handle(frame)
        finally:
            if rec:
                rec.close()

    def on_pipeline_stream(stream) -> None:
        rec = make_recorder(stream)
        pipe = build_pipeline(stream, rec, hub, on_notice)  # closes rec when stopped
        pipe.start()
        feed = pipe.feed
        best = [float("inf")]

        def handle(frame) -> None:
            feed(frame.caller, frame.timestamp)  # CallSession._on_fork_frame
            handled(frame.timestamp, best)

        try:
            if inline:  # as CallSession does: inline, then what was queued before the handler
                stream.set_frame_handler(handle)
            for frame in stream.frames(poll=IDLE_POLL_SECONDS):
                handle(frame)
        finally:
            pipe.port.session.done.set()
            pipe.stop()
            stats.play_messages += pipe.port.counters["play_messages"]

    lateness: list[float] = []
    stop_probe = [False]
    gc_pauses: list[float] = []
    gc_started = [0.0]

    def on_gc(phase: str, info: dict) -> None:
        if phase == "start":
            gc_started[0] = time.perf_counter()
        elif stats.measuring:
            gc_pauses.append(time.perf_counter() - gc_started[0])

    gc.callbacks.append(on_gc)

    def probe() -> None:
        while not stop_probe[0]:
            t = time.monotonic()
            gevent.sleep(0.01)
            if stats.measuring:
                lateness.append(time.monotonic() - t - 0.01)

    seconds = warmup + window + 1.0
    server = ForkServer(
        "127.0.0.1", 0, on_stream, queue_frames=25, idle_timeout=30, read_interval=read_interval
    )
    server.start()
    port = server.address[1]
    gevent.spawn(probe)
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), "--client", str(port), str(n), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    ready = proc.stdout.readline().strip()
    if ready != "READY":
        raise RuntimeError(f"client did not start: {ready!r}")
    gevent.sleep(warmup)
    dropped_before = sum(s.frames_dropped for s in server.streams.values())
    child_pid = writer.pid if writer_kind == "process" and writer is not None else None
    child0 = proc_cpu(child_pid)
    client0 = proc_cpu(proc.pid)
    cpu0 = os.times()
    t0 = time.monotonic()
    stats.measuring = True
    gevent.sleep(window)
    stats.measuring = False
    wall = time.monotonic() - t0
    cpu1 = os.times()
    child1 = proc_cpu(child_pid)
    client1 = proc_cpu(proc.pid)
    rss = rss_kb()
    streams = list(server.streams.values())
    dropped = sum(s.frames_dropped for s in streams) - dropped_before
    out, _ = proc.communicate(timeout=seconds + 30)
    client = json.loads(out.strip().splitlines()[-1])
    stop_probe[0] = True
    gc.callbacks.remove(on_gc)
    server.stop(timeout=5)
    gevent.joinall(sinks, timeout=15)  # every stream's recording closed before the writer stops
    if writer_kind == "process" and writer is not None:
        writer.stop(timeout=10)
    expected = n * window / TICK
    writer_cpu = (
        (child1 - child0) if child_pid and child_pid == getattr(writer, "pid", None) else 0.0
    )
    return {
        "n": n,
        "streams": len(streams),
        "frames_handled": stats.frames,
        "frames_expected": int(expected),
        "dropped": dropped + server.frames_dropped_total,
        "p50_ms": pct(stats.handling, 50) * 1000,
        "p99_ms": pct(stats.handling, 99) * 1000,
        "hub_lateness_p99_ms": pct(lateness, 99) * 1000,
        "hub_lateness_max_ms": max(lateness, default=float("nan")) * 1000,
        "cpu": ((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)) / wall,
        "kb_per_call": (rss - baseline_kb) / max(1, n),
        "us_per_frame": (
            ((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)) / max(1, stats.frames) * 1e6
        ),
        "sys_us_per_frame": (cpu1.system - cpu0.system) / max(1, stats.frames) * 1e6,
        "writer_cpu": writer_cpu / wall,
        "client_cpu": (client1 - client0) / wall,
        "writer_us_per_frame": writer_cpu / max(1, stats.frames) * 1e6,
        "utterances": stats.utterances,
        "handler_errors": sum(s.handler_errors for s in streams),
        "pipeline": pipeline,
        "transcripts": stats.transcripts,
        "replies": stats.replies,
        "play_messages": stats.play_messages,
        "pipeline_errors": stats.pipeline_errors,
        "gc_max_ms": max(gc_pauses, default=0.0) * 1000,
        "gc_total_ms": sum(gc_pauses) * 1000,
        "client": client,
    }


def proc_cpu(pid: int | None) -> float:
    """User + system CPU seconds of another process (the recording writer), 0 when gone."""
    if not pid:
        return 0.0
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def passes(r: dict) -> bool:
    return (
        r["streams"] == r["n"]
        and r["dropped"] == 0
        and r["p99_ms"] < 20.0
        and r["hub_lateness_p99_ms"] < 20.0
        and r["frames_handled"] >= 0.95 * r["frames_expected"]
    )


def show(r: dict) -> None:
    c = r["client"]
    print(
        f"N={r['n']:5d} streams={r['streams']:5d} frames={r['frames_handled']}/"
        f"{r['frames_expected']} dropped={r['dropped']} handling p50={r['p50_ms']:.2f} ms "
        f"p99={r['p99_ms']:.2f} ms hub lateness p99={r['hub_lateness_p99_ms']:.2f} ms "
        f"max={r['hub_lateness_max_ms']:.1f} ms cpu={r['cpu'] * 100:.0f}% "
        f"({r['us_per_frame']:.0f} us/frame, {r['sys_us_per_frame']:.0f} in the kernel) "
        + (
            f"recording process cpu={r['writer_cpu'] * 100:.0f}% ({r['writer_us_per_frame']:.1f} us/frame) "
            if r["writer_cpu"]
            else ""
        )
        + f"mem={r['kb_per_call']:.0f} KB/call utterances={r['utterances']} "
        + (
            f"(step: transcripts={r['transcripts']} replies={r['replies']} "
            f"playAudio={r['play_messages']} errors={r['pipeline_errors'] + r['handler_errors']}) "
            if r["pipeline"]
            else ""
        )
        + f"gc max={r['gc_max_ms']:.1f} ms total={r['gc_total_ms']:.0f} ms "
        f"client send lateness p99={c['send_lateness_p99_ms']:.1f} ms cpu={r['client_cpu'] * 100:.0f}% "
        f"{'PASS' if passes(r) else 'FAIL'}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a short ramp, under a minute")
    parser.add_argument("--steps", type=str, default=None, help="comma-separated N values")
    parser.add_argument("--window", type=float, default=None, help="measured seconds per step")
    parser.add_argument(
        "--record-dir", default=None, help="where recordings go (default: a temp dir)"
    )
    parser.add_argument("--no-record", action="store_true", help="skip the recording")
    parser.add_argument(
        "--queue",
        action="store_true",
        help="frames through the per-call queue and a consumer greenlet (default: inline in the "
        "socket greenlet, as the call session does)",
    )
    parser.add_argument("--no-vad", action="store_true", help="skip the VAD")
    parser.add_argument(
        "--pipeline",
        action="store_true",
        help="run the call session's real per-frame path per stream (MediaPipeline: recorder, "
        "listen hub, Conversation with VAD and turn-taking; fixed-text STT, scripted model, "
        "cached-tone voice) instead of the bench's VAD + recorder stand-in",
    )
    parser.add_argument(
        "--writer",
        choices=("process", "thread"),
        default="process",
        help="where recordings are made: the recording process (the controller's default) or on "
        "the hub with a writer thread",
    )
    parser.add_argument(
        "--read-interval",
        type=float,
        default=5.0,
        help="the fork server's batch-read tick in ms (default 5)",
    )
    parser.add_argument(
        "--client", nargs=3, metavar=("PORT", "N", "SECONDS"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    if args.pipeline and args.no_vad:
        parser.error("--pipeline has the conversation's own VAD: --no-vad does not apply")
    if args.client:
        return client_main(int(args.client[0]), int(args.client[1]), float(args.client[2]))

    from gevent import monkey

    monkey.patch_all()
    import logging

    logging.basicConfig(level=logging.ERROR)
    if args.quick:
        steps = [100, 300, 500, 700]
        warmup, window = 1.5, args.window or 4.0
    else:
        steps = [100, 200, 300, 400, 500, 600, 800, 1000]
        warmup, window = 3.0, args.window or 10.0
    if args.steps:
        steps = [int(s) for s in args.steps.split(",")]
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores; 16 kHz mono, 20 ms frames;")
    recording = "" if args.no_record else f" + mono & stereo WAV (writer {args.writer})"
    if args.pipeline:
        print(
            "per call: fork WebSocket (wsproto handshake, lean data frames, one batch reader) + "
            "session pipeline (MediaPipeline.feed: recorder, listen hub without listeners, "
            "Conversation with webrtcvad and turn-taking; STT a fixed text at once, scripted model, "
            f"0.5 s cached-tone replies as playAudio over the fork){recording}; "
            f"frames {'queued' if args.queue else 'inline'}"
        )
    else:
        print(
            "per call: fork WebSocket (wsproto handshake, lean data frames, one batch reader)"
            f"{'' if args.no_vad else ' + webrtcvad'}{recording}; STT stubbed; "
            f"frames {'queued' if args.queue else 'inline'}"
        )
    if args.pipeline:  # imported before the baseline, so memory per call is the calls' own
        import esl_controller.calls.media  # noqa: F401
        import esl_controller.calls.pipeline_factory  # noqa: F401
        import esl_controller.pipeline.conversation  # noqa: F401
        import esl_controller.pipeline.providers.llm.scripted  # noqa: F401
    from esl_controller.server import settle_after_startup

    settle_after_startup()  # as the controller does once started
    baseline = rss_kb()
    best: dict | None = None
    with tempfile.TemporaryDirectory(prefix="media-capacity-", dir=args.record_dir) as tmp:
        for n in steps:
            step_dir = None if args.no_record else os.path.join(tmp, str(n))
            if step_dir:
                os.mkdir(step_dir)
            r = run_step(
                n,
                warmup,
                window,
                step_dir,
                baseline,
                vad_on=not args.no_vad,
                inline=not args.queue,
                read_interval=args.read_interval / 1000.0,
                writer_kind=args.writer,
                pipeline=args.pipeline,
            )
            show(r)
            for name in os.listdir(step_dir) if step_dir else ():
                os.unlink(os.path.join(step_dir, name))
            if not passes(r):
                break
            best = r
    if best is None:
        print("media_capacity: no step passed (p99 frame handling < 20 ms, no drops)")
        return 1
    work = " + ".join(
        name
        for name, on in (
            ("the session pipeline", args.pipeline),
            ("VAD", not args.no_vad and not args.pipeline),
            ("recording", not args.no_record),
        )
        if on
    )
    print(
        f"media_capacity: {best['n']} concurrent 16 kHz fork streams on one hub (one core) with "
        f"{work or 'transport only'}: p99 frame handling {best['p99_ms']:.2f} ms, 0 drops, hub lateness "
        f"p99 {best['hub_lateness_p99_ms']:.2f} ms, {best['kb_per_call']:.0f} KB RSS per call, "
        f"cpu {best['cpu'] * 100:.0f}% ({best['us_per_frame']:.0f} us server CPU per frame)"
        + (
            f" + recording process {best['writer_cpu'] * 100:.0f}% of a core "
            f"({best['writer_us_per_frame']:.1f} us per frame)"
            if best["writer_cpu"]
            else ""
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
