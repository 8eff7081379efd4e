"""Turn latency: what the runtime adds between the caller's end of speech and the first audio out.

Measurements, all through the real :class:`~esl_controller.pipeline.conversation.Conversation`
(VAD on espeak-ng speech, sentence chunking, notices, the playout pacer):

1. **runtime-added, one call**: fake STT/model/TTS with fixed latencies (``--stt-ms``, ``--llm-ms``,
   ``--tts-ms``); per turn ``firstAudioOut - endOfSpeech`` minus the three provider times (from each turn's
   ``turn-timing`` notice). Caller audio is fed faster than real time; the VAD runs on stream time, so the
   end of speech is still detected at the right point of the audio.
2. **runtime-added under load**: ``--calls`` concurrent calls fed at real-time pace (20 ms frames) whose replies
   go out through :class:`~esl_controller.media.playout.Playout` pacers; also the hub's lateness.
3. **offline voice-to-voice** with the embedded providers: espeak-ng voice, the scripted model and, when it is
   installed, the embedded whisper STT in a worker process. Reported as detection -> first audio and as
   end of voice -> first audio (adds the endpointing wait, ``startSpeakingPlan.waitSeconds`` = 0.4 s).

4. **web calls** over the WebSocket transport (client in another process).
5. **hosted** (``--hosted``, on its own): the real hosted provider classes (OpenAI transcriptions,
   OpenAI-compatible chat SSE, ElevenLabs stream) against the fakes of ``tests/fakes`` run in another
   process (``bench/_hosted_fakes.py``) with configured latencies, with and without a function tool call
   through the ToolRunner (``--tool-ms``); runtime-added = end of speech -> first audio out minus the
   configured latencies.

    .venv/bin/python bench/turn_latency.py --quick     # < 1 minute
    .venv/bin/python bench/turn_latency.py
    .venv/bin/python bench/turn_latency.py --hosted [--quick]

The last line is the headline.
"""

from __future__ import annotations

from gevent import monkey

if __name__ == "__main__":
    monkey.patch_all()

import argparse  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

RATE = 16000
FRAME = 640
UTTERANCE = "Hello, I would like to book a table for two people tonight."
MODEL = {
    "provider": "custom-llm",
    "model": "scripted",
    "url": "scripted://",
    "rules": [
        {"keywords": ["table"], "reply": "Sure, for how many people? We have room at seven."}
    ],
}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q / 100.0 * len(values)))]


def added_ms(t: dict) -> float:
    provider = (
        (t["sttFinal"] - t["sttStart"])
        + (t["modelFirstToken"] - t["modelRequest"])
        + (t["ttsFirstByte"] - t["ttsRequest"])
    )
    return (t["firstAudioOut"] - t["endOfSpeech"] - provider) * 1000.0


def reply_timings(port) -> list[dict]:
    return [t for t in port.of("turn-timing") if "endOfSpeech" in t and "firstAudioOut" in t]


def utterance_pcm() -> bytes:
    from audio_fixtures import speech

    from esl_controller.media.codecs import silence

    return speech(UTTERANCE, RATE) + silence(0.6, RATE)


def fakes(args):
    from esl_controller.pipeline.providers.testing import (
        FakeModel,
        FakeSynthesizer,
        FakeTranscriber,
    )

    return (
        FakeTranscriber(default="a table please", delay=args.stt_ms / 1000.0),
        FakeModel(
            default="Sure, for how many people? We have room at seven.",
            first_token_delay=args.llm_ms / 1000.0,
        ),
        FakeSynthesizer(first_byte_delay=args.tts_ms / 1000.0),
    )


# -- 1. one call, fast feed -------------------------------------------------------------------------


def single_call(args, turns: int) -> list[float]:
    from esl_controller.pipeline.conversation import Conversation
    from esl_controller.pipeline.providers.testing import RecordingPort

    stt, llm, tts = fakes(args)
    port = RecordingPort(RATE, speed=1000.0)  # playback "ends" at once: turns do not wait on audio
    conv = Conversation(
        {"firstMessageMode": "assistant-waits-for-user"}, port, stt=stt, llm=llm, tts=tts
    )
    conv.start()
    pcm = utterance_pcm()
    try:
        for n in range(1, turns + 1):
            for i in range(0, len(pcm), FRAME):
                conv.feed(pcm[i : i + FRAME], 0.0)
            port.wait_for(
                "turn-timing", lambda t, n=n: "endOfSpeech" in t and len(reply_timings(port)) >= n
            )
            port.wait_played(lambda p: not p.playing(), timeout=5)
    finally:
        conv.stop()
    return [added_ms(t) for t in reply_timings(port)]


# -- 2. many calls at real-time pace ------------------------------------------------------------------


class PacedPort:
    """A MediaPort whose speech goes out through a real Playout pacer into a null sink."""

    def __init__(self) -> None:
        from esl_controller.media.playout import Playout
        from esl_controller.pipeline.providers.testing import RecordingPort

        self.sample_rate = RATE
        self.playout = Playout(RATE, lambda frame: None)
        self.rec = RecordingPort(RATE)

    def play(self, pcm16: bytes, *, text: str = "") -> None:
        self.playout.enqueue(pcm16)

    def stop_playback(self) -> float:
        return self.playout.stop()

    def playing(self) -> bool:
        return self.playout.playing()

    def notify(self, notice) -> None:
        self.rec.notify(notice)


def load(args, calls: int, seconds: float) -> tuple[list[float], list[float]]:
    from esl_controller.media.codecs import silence
    from esl_controller.pipeline.conversation import Conversation

    pcm = utterance_pcm() + silence(2.5, RATE)  # room for the reply before the next utterance
    ports, convs = [], []
    for _ in range(calls):
        stt, llm, tts = fakes(args)
        port = PacedPort()
        conv = Conversation(
            {"firstMessageMode": "assistant-waits-for-user"}, port, stt=stt, llm=llm, tts=tts
        )
        conv.start()
        ports.append(port)
        convs.append(conv)
    lateness: list[float] = []
    stop = False

    def hub_probe() -> None:
        while not stop:
            t = time.monotonic()
            gevent.sleep(0.01)
            lateness.append((time.monotonic() - t - 0.01) * 1000.0)

    probe = gevent.spawn(hub_probe)
    start = time.monotonic()
    offsets = [i * 0.02 / max(1, calls) * 50 % 1.0 for i in range(calls)]  # stagger the calls
    k = 0
    while time.monotonic() - start < seconds:
        tick = start + k * 0.02
        delay = tick - time.monotonic()
        if delay > 0:
            gevent.sleep(delay)
        for i, conv in enumerate(convs):
            pos = int(((k * 0.02 + offsets[i]) % (len(pcm) / (2.0 * RATE))) * RATE) * 2
            pos -= pos % FRAME
            conv.feed(pcm[pos : pos + FRAME], k * 0.02)
        k += 1
    stop = True
    probe.join(timeout=1)
    for conv in convs:
        conv.stop()
    for port in ports:
        port.playout.close()
    added = [added_ms(t) for p in ports for t in reply_timings(p.rec)]
    return added, lateness


# -- 3. offline voice-to-voice ------------------------------------------------------------------------


def offline(turns: int) -> tuple[list[float], str]:
    from esl_controller.pipeline.conversation import Conversation
    from esl_controller.pipeline.providers import registry
    from esl_controller.pipeline.providers.testing import FakeTranscriber, RecordingPort

    pool = None
    try:
        stt = registry.build_transcriber(None)
        stt_name = stt.name
    except registry.UnknownProvider:
        try:
            from esl_controller.pipeline.providers.stt import whisper

            pool = whisper.start_pool(1, timeout=120)
            stt = whisper.WhisperTranscriber(pool)
            stt_name = "whisper tiny.en (worker process)"
        except Exception as exc:  # noqa: BLE001 - fall back to a zero-latency fake
            stt = FakeTranscriber(default="a table please")
            stt_name = f"fake (embedded STT unavailable: {str(exc)[:60]})"
    port = RecordingPort(RATE, speed=1000.0)
    body = {"firstMessageMode": "assistant-waits-for-user", "model": MODEL}
    conv = Conversation(
        body, port, stt=stt, llm=registry.build_model(MODEL), tts=registry.build_synthesizer(None)
    )
    conv.start()
    pcm = utterance_pcm()
    try:
        for n in range(1, turns + 1):
            for i in range(0, len(pcm), FRAME):
                conv.feed(pcm[i : i + FRAME], 0.0)
            port.wait_for("turn-timing", lambda t, n=n: len(reply_timings(port)) >= n, timeout=60)
            port.wait_played(lambda p: not p.playing(), timeout=5)
    finally:
        conv.stop()
        if pool is not None:
            pool.close()
    totals = [(t["firstAudioOut"] - t["endOfSpeech"]) * 1000.0 for t in reply_timings(port)]
    return totals, stt_name


# -- 5. hosted providers against local fakes in another process ---------------------------------------


def hosted(args, turns: int) -> dict[str, list[float]]:
    """Turns through the real hosted provider classes (OpenAI transcriptions, OpenAI-compatible chat, ElevenLabs)
    and a function tool through the ToolRunner; the fakes run in ``bench/_hosted_fakes.py``'s process.

    Runtime-added = (firstAudioOut - endOfSpeech) minus the fakes' configured latencies: STT + model
    (twice with the tool: the tool call, then the answer) + tool server + TTS. What remains is the runtime
    plus the HTTP clients and loopback round trips (a hosted deployment pays those too)."""
    import json
    import subprocess

    from esl_controller.pipeline.conversation import Conversation
    from esl_controller.pipeline.providers import hosted as hosted_providers
    from esl_controller.pipeline.providers.testing import RecordingPort
    from esl_controller.pipeline.tools.runner import ToolHttpSettings, ToolRunner
    from esl_controller.pipeline.tools.spec import build_toolset
    from esl_controller.webhooks.messages import MessageContext

    here = os.path.dirname(os.path.abspath(__file__))
    proc = subprocess.Popen(
        [sys.executable, os.path.join(here, "_hosted_fakes.py")]
        + [str(v) for v in (args.stt_ms, args.llm_ms, args.tts_ms, args.tool_ms)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        urls = json.loads(proc.stdout.readline())
        tool = {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
            "server": {"url": urls["tool"]},
        }
        out: dict[str, list[float]] = {}
        for label, with_tool in (("no tool", False), ("tool", True)):
            model = {"provider": "openai", "model": "gpt-4o-mini", "url": urls["llm"]}
            if with_tool:
                model["tools"] = [tool]
            body = {
                "firstMessageMode": "assistant-waits-for-user",
                "model": model,
                "transcriber": {"provider": "openai", "model": "whisper-1", "url": urls["stt"]},
                "voice": {
                    "provider": "11labs",
                    "voiceId": "bench",
                    "url": urls["tts"],
                    "cachingEnabled": False,
                    "credential": {"provider": "11labs", "apiKey": urls["ttsKey"]},
                },
            }
            runner = None
            if with_tool:
                runner = ToolRunner(
                    MessageContext(call={"id": "bench"}, assistant={"id": "bench"}),
                    build_toolset(model),
                    ToolHttpSettings(fillers=()),
                )
            port = RecordingPort(RATE, speed=1000.0)
            conv = Conversation(
                body,
                port,
                stt=hosted_providers.build_with_fallbacks("stt", body["transcriber"]),
                llm=hosted_providers.build_with_fallbacks("llm", model),
                tts=hosted_providers.build_with_fallbacks("tts", body["voice"]),
                tool_runner=runner,
            )
            conv.start()
            pcm = utterance_pcm()
            try:
                for n in range(1, turns + 2):  # the first turn warms connections and the fake's TTS
                    for i in range(0, len(pcm), FRAME):
                        conv.feed(pcm[i : i + FRAME], 0.0)
                    port.wait_for(
                        "turn-timing",
                        lambda t, n=n, port=port: (
                            "endOfSpeech" in t and len(reply_timings(port)) >= n
                        ),
                        timeout=30,
                    )
                    port.wait_played(lambda p: not p.playing(), timeout=5)
            finally:
                conv.stop()
                if runner is not None:
                    runner.close()
            configured = args.stt_ms + args.llm_ms + args.tts_ms
            if with_tool:
                configured += args.llm_ms + args.tool_ms
            out[label] = [
                (t["firstAudioOut"] - t["endOfSpeech"]) * 1000.0 - configured
                for t in reply_timings(port)[1:]
            ]
        return out
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


# -- 4. web calls over the WebSocket transport ---------------------------------------------------------


def webcall_clients(host: str, port: int, calls: int, seconds: float) -> int:
    """Client process: ``calls`` web-call sockets sending speech at real-time pace, reading everything back."""
    from esl_controller.media.codecs import silence
    from esl_controller.media.fork_client import ForkClient

    pcm = utterance_pcm() + silence(2.5, RATE)
    clients = []
    for i in range(calls):
        c = ForkClient(
            host, port, f"/call/b{i}/ws?token=t&sampleRate={RATE}", subprotocol=None, timeout=10
        )
        clients.append(c.connect())
    received = [0]

    def reader(c) -> None:
        while True:
            try:
                msg = c.recv(timeout=seconds + 5)
            except Exception:  # noqa: BLE001 - the server closed: this reader is done
                return
            if msg is None:
                return
            if isinstance(msg, bytes):
                received[0] += len(msg)

    readers = [gevent.spawn(reader, c) for c in clients]
    start = time.monotonic()
    k = 0
    while time.monotonic() - start < seconds:
        delay = start + k * 0.02 - time.monotonic()
        if delay > 0:
            gevent.sleep(delay)
        for i, c in enumerate(clients):
            pos = ((k + i * 7) * FRAME) % (len(pcm) - FRAME)
            pos -= pos % FRAME
            c.send_audio(pcm[pos : pos + FRAME])
        k += 1
    gevent.killall(readers, timeout=5)
    for c in clients:
        c.abort()
    print(received[0] / (2.0 * RATE * calls))
    return 0


def webcall_load(args, calls: int, seconds: float) -> tuple[list[float], list[float], float]:
    import subprocess

    from esl_controller.media.webcall import PipelineWebCallSession, WebCallServer
    from esl_controller.pipeline.conversation import Conversation
    from esl_controller.pipeline.providers.testing import RecordingPort

    recs: list = []

    def factory(port):
        stt, llm, tts = fakes(args)
        return Conversation(
            {"firstMessageMode": "assistant-waits-for-user"}, port, stt=stt, llm=llm, tts=tts
        )

    def on_connect(call_id: str, token: str):
        rec = RecordingPort(RATE)
        recs.append(rec)
        return PipelineWebCallSession(factory, rec.notify)

    server = WebCallServer("127.0.0.1", 0, on_connect)
    server.start()
    lateness: list[float] = []
    stop = False

    def hub_probe() -> None:
        while not stop:
            t = time.monotonic()
            gevent.sleep(0.01)
            lateness.append((time.monotonic() - t - 0.01) * 1000.0)

    probe = gevent.spawn(hub_probe)
    host, port = server.address
    proc = subprocess.Popen(
        [
            sys.executable,
            os.path.abspath(__file__),
            "--webcall-client",
            f"{host}:{port}:{calls}:{seconds}",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + seconds + 60
    while proc.poll() is None and time.monotonic() < deadline:
        gevent.sleep(0.2)
    out = proc.communicate(timeout=10)[0] if proc.poll() is not None else ""
    if proc.poll() is None:
        proc.kill()
    stop = True
    probe.join(timeout=1)
    server.stop()
    added = [added_ms(t) for r in recs for t in reply_timings(r)]
    audio_seconds = float(out.strip().splitlines()[-1]) if out.strip() else 0.0
    return added, lateness, audio_seconds


def hosted_main(args) -> int:
    turns = args.turns
    print(
        f"hosted providers (OpenAI transcriptions, OpenAI-compatible chat SSE, ElevenLabs stream; fakes in "
        f"another process): stt {args.stt_ms:.0f} ms, model {args.llm_ms:.0f} ms, tts {args.tts_ms:.0f} ms, "
        f"tool server {args.tool_ms:.0f} ms before answering"
    )
    res = hosted(args, turns)
    for label, vals in res.items():
        print(
            f"  {label}: {len(vals)} turns, runtime-added p50 {pct(vals, 50):.1f} ms, "
            f"p95 {pct(vals, 95):.1f} ms, max {max(vals):.1f} ms"
        )
    a, b = res["no tool"], res["tool"]
    print(
        f"turn_latency --hosted: runtime-added per turn p50 {pct(a, 50):.1f} / p95 {pct(a, 95):.1f} ms "
        f"without a tool, p50 {pct(b, 50):.1f} / p95 {pct(b, 95):.1f} ms with a function tool call "
        f"(end of speech -> first audio out minus configured provider and tool latencies)"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small run (< 1 minute)")
    parser.add_argument("--calls", type=int, default=100, help="concurrent calls in the load stage")
    parser.add_argument("--seconds", type=float, default=30.0, help="load stage duration")
    parser.add_argument("--turns", type=int, default=50, help="turns in the one-call stage")
    parser.add_argument("--stt-ms", type=float, default=100.0)
    parser.add_argument("--llm-ms", type=float, default=200.0)
    parser.add_argument("--tts-ms", type=float, default=50.0)
    parser.add_argument(
        "--webcall-calls", type=int, default=50, help="concurrent web calls (0: skip)"
    )
    parser.add_argument("--webcall-client", help=argparse.SUPPRESS)
    parser.add_argument(
        "--hosted",
        action="store_true",
        help="only the hosted-provider stage: real hosted provider classes and a function tool "
        "against local fake servers in another process",
    )
    parser.add_argument(
        "--tool-ms", type=float, default=150.0, help="tool server latency (--hosted)"
    )
    args = parser.parse_args(argv)
    if args.webcall_client:
        host, port, calls, seconds = args.webcall_client.split(":")
        return webcall_clients(host, int(port), int(calls), float(seconds))
    if args.quick:
        args.calls = min(args.calls, 50)
        args.seconds = min(args.seconds, 10.0)
        args.turns = min(args.turns, 15)
        args.webcall_calls = min(args.webcall_calls, 30)
    import logging

    logging.basicConfig(level=logging.WARNING)
    if args.hosted:
        return hosted_main(args)
    print(
        f"fake providers: stt {args.stt_ms:.0f} ms, model first token {args.llm_ms:.0f} ms, tts first byte {args.tts_ms:.0f} ms"
    )

    one = single_call(args, args.turns)
    print(
        f"one call, {len(one)} turns: runtime-added p50 {pct(one, 50):.2f} ms, p95 {pct(one, 95):.2f} ms, max {max(one):.2f} ms"
    )

    added, lateness = load(args, args.calls, args.seconds)
    print(
        f"{args.calls} calls at real-time pace for {args.seconds:.0f} s, {len(added)} turns: runtime-added "
        f"p50 {pct(added, 50):.2f} ms, p95 {pct(added, 95):.2f} ms; hub lateness p99 {pct(lateness, 99):.2f} ms"
    )

    web: list[float] = []
    if args.webcall_calls:
        web, web_late, heard = webcall_load(args, args.webcall_calls, args.seconds)
        print(
            f"{args.webcall_calls} web calls (wsproto, loopback, client in another process) for {args.seconds:.0f} s, "
            f"{len(web)} turns: runtime-added p50 {pct(web, 50):.2f} ms, p95 {pct(web, 95):.2f} ms; hub lateness "
            f"p99 {pct(web_late, 99):.2f} ms; {heard:.1f} s of reply audio received per call"
        )

    v2v, stt_name = offline(3 if args.quick else 10)
    print(
        f"offline voice-to-voice (espeak-ng + scripted + STT {stt_name}), {len(v2v)} turns: end of speech "
        f"detected -> first audio p50 {pct(v2v, 50):.0f} ms, p95 {pct(v2v, 95):.0f} ms; from the end of the "
        f"caller's voice add the 400 ms endpointing wait"
    )
    print(
        f"turn_latency: runtime-added per turn p50 {pct(one, 50):.2f} ms / p95 {pct(one, 95):.2f} ms (one call), "
        f"p50 {pct(added, 50):.2f} / p95 {pct(added, 95):.2f} ms ({args.calls} calls), "
        f"p50 {pct(web, 50):.2f} / p95 {pct(web, 95):.2f} ms ({args.webcall_calls} web calls); offline voice-to-voice "
        f"p50 {pct(v2v, 50) + 400:.0f} ms from end of voice"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
