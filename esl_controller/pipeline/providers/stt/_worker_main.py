"""Entry point of a speech worker process, and the wire format it shares with the pool.

A worker is started by :class:`esl_controller.pipeline.workers.WorkerPool` as
``python -m esl_controller.pipeline.providers.stt._worker_main --fd N --engine NAME --options JSON``.
It loads its engine (the model) once, says ``ready``, then serves requests one at a time over the
inherited socket ``N`` until it reads ``exit`` or end of file (the parent went away).

This module must stay free of gevent: it is the child's ``__main__`` and is imported by the parent
only for the wire format. Running it with ``-m`` means the child never re-runs the parent's main
module (the spawn trap), and the socket it inherits is switched back to blocking here (a socket made
by gevent arrives non-blocking).

Wire format, both directions: ``!II`` (header length, payload length), a UTF-8 JSON header, then the
payload bytes (PCM16 for audio, empty otherwise).

Requests (header ``op``): ``transcribe`` (``id``, ``rate``, ``options``; payload PCM16),
``stream_open`` (``id``, ``sid``, ``rate``, ``options``), ``stream_push`` (``sid``; payload PCM16; no
reply unless the partial changed), ``stream_finish`` (``id``, ``sid``), ``stream_close`` (``sid``),
``exit``. Replies: ``ready``, ``fatal``, ``result`` (``id``, ``text``, ``confidence``, ``language``,
``cpu_ms``), ``error`` (``id`` or ``sid``, ``message``, ``retryable``), ``partial`` (``sid``, ``text``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import os
import signal
import socket
import struct
import sys
import time
from collections.abc import Iterable
from typing import Any

log = logging.getLogger("esl_controller.pipeline.workers.child")

HEADER = struct.Struct("!II")
MAX_HEADER = 1 << 20
MAX_PAYLOAD = 16 << 20

#: engine name -> "module:factory"; a factory takes the options dict and returns a loaded engine
ENGINES = {
    "whisper": "esl_controller.pipeline.providers.stt.whisper:WhisperEngine",
    "sphinx": "esl_controller.pipeline.providers.stt.sphinx:SphinxEngine",
    "selftest": "esl_controller.pipeline.providers.stt._worker_main:SelfTestEngine",
}

Message = tuple[dict[str, Any], bytes]


class ProtocolError(ValueError):
    """A frame that breaks the wire format (too large, not JSON)."""


# -- wire format (pure) ------------------------------------------------------------------------------


def encode_message(header: dict[str, Any], payload: bytes = b"") -> bytes:
    head = json.dumps(header, separators=(",", ":")).encode()
    if len(head) > MAX_HEADER or len(payload) > MAX_PAYLOAD:
        raise ProtocolError("message too large")
    return HEADER.pack(len(head), len(payload)) + head + payload


class MessageDecoder:
    """Bytes in (any split), whole messages out."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        self._buf += data
        out: list[Message] = []
        while len(self._buf) >= HEADER.size:
            hlen, plen = HEADER.unpack_from(self._buf)
            if hlen > MAX_HEADER or plen > MAX_PAYLOAD:
                raise ProtocolError(f"frame too large ({hlen}, {plen})")
            end = HEADER.size + hlen + plen
            if len(self._buf) < end:
                break
            try:
                header = json.loads(bytes(self._buf[HEADER.size : HEADER.size + hlen]))
            except ValueError as exc:
                raise ProtocolError(f"bad header: {exc}") from exc
            if not isinstance(header, dict):
                raise ProtocolError("header is not an object")
            out.append((header, bytes(self._buf[HEADER.size + hlen : end])))
            del self._buf[:end]
        return out


def rss_kb(pid: int | str = "self") -> int:
    """Resident set size of a process in KiB (0 when unknown)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return 0
    return 0


# -- a diagnostic engine -----------------------------------------------------------------------------


class SelfTestEngine:
    """No model: burns ``spin_ms`` of CPU (holding the GIL like a decoder) and echoes ``text``.

    Used by the pool's tests and the benchmark to measure the pool itself; ``crash`` exits the
    process mid-request.
    """

    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        self.streams: dict[str, int] = {}

    def transcribe(self, pcm16: bytes, rate: int, options: dict[str, Any]) -> dict[str, Any]:
        if options.get("crash"):
            os._exit(9)
        end = time.process_time() + float(options.get("spin_ms", 0)) / 1000.0
        n = 0
        while time.process_time() < end:
            n += 1
        return {"text": options.get("text", f"{len(pcm16)} bytes at {rate}"), "language": "en"}

    def stream_open(self, sid: str, rate: int, options: dict[str, Any]) -> None:
        self.streams[sid] = 0

    def stream_push(self, sid: str, pcm16: bytes) -> str | None:
        self.streams[sid] += len(pcm16)
        return f"{self.streams[sid]} bytes"

    def stream_finish(self, sid: str) -> dict[str, Any]:
        n, self.streams[sid] = self.streams[sid], 0
        return {"text": f"{n} bytes", "language": "en"}

    def stream_close(self, sid: str) -> None:
        self.streams.pop(sid, None)


# -- the child's loop --------------------------------------------------------------------------------


def load_engine(name: str, options: dict[str, Any]) -> Any:
    target = ENGINES.get(name)
    if target is None:
        raise ValueError(f"unknown engine {name!r}")
    module, _, factory = target.partition(":")
    return getattr(importlib.import_module(module), factory)(options)


def handle(engine: Any, header: dict[str, Any], payload: bytes) -> Iterable[Message]:
    """One request -> the replies to send (possibly none)."""
    op = header.get("op")
    rid = header.get("id")
    sid = str(header.get("sid", ""))
    if op == "transcribe":
        t0 = time.process_time()
        result = engine.transcribe(payload, int(header["rate"]), header.get("options") or {})
        cpu_ms = (time.process_time() - t0) * 1000.0
        return [({"op": "result", "id": rid, "cpu_ms": round(cpu_ms, 2), **result}, b"")]
    if op == "stream_open":
        engine.stream_open(sid, int(header["rate"]), header.get("options") or {})
        return [({"op": "result", "id": rid, "text": ""}, b"")]
    if op == "stream_push":
        partial = engine.stream_push(sid, payload)
        return [({"op": "partial", "sid": sid, "text": partial}, b"")] if partial else []
    if op == "stream_finish":
        t0 = time.process_time()
        result = engine.stream_finish(sid)
        cpu_ms = (time.process_time() - t0) * 1000.0
        return [
            ({"op": "result", "id": rid, "sid": sid, "cpu_ms": round(cpu_ms, 2), **result}, b"")
        ]
    if op == "stream_close":
        engine.stream_close(sid)
        return []
    raise ValueError(f"unknown op {op!r}")


def _send(sock: socket.socket, header: dict[str, Any], payload: bytes = b"") -> None:
    sock.sendall(encode_message(header, payload))


def serve(sock: socket.socket, engine: Any) -> int:
    decoder = MessageDecoder()
    while True:
        data = sock.recv(1 << 16)
        if not data:
            return 0  # the parent closed its end or died
        for header, payload in decoder.feed(data):
            if header.get("op") == "exit":
                return 0
            try:
                replies = list(handle(engine, header, payload))
            except Exception as exc:  # noqa: BLE001 - one bad request must not end the worker
                log.warning("worker request %s failed: %s", header.get("op"), exc)
                replies = [
                    (
                        {
                            "op": "error",
                            "id": header.get("id"),
                            "sid": header.get("sid"),
                            "message": f"{type(exc).__name__}: {exc}",
                            "retryable": False,
                        },
                        b"",
                    )
                ]
            for reply, body in replies:
                _send(sock, reply, body)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="esl-controller-stt-worker")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--engine", required=True)
    parser.add_argument("--options", default="{}")
    parser.add_argument("--nice", type=int, default=0)
    args = parser.parse_args(argv)
    if args.nice > 0:
        os.nice(args.nice)  # the parent's hub has priority when the cores are busy
    # Ctrl-C on the operator's console reaches the whole process group: the hub handles it and tells its
    # workers to exit; a worker must not die under it with a KeyboardInterrupt traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    sock = socket.socket(fileno=args.fd)
    sock.setblocking(True)  # the parent's end was made by gevent: its flags came along
    t0 = time.monotonic()
    try:
        engine = load_engine(args.engine, json.loads(args.options))
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which stops respawning
        with contextlib.suppress(OSError):  # unless the parent has gone already
            _send(sock, {"op": "fatal", "message": f"{type(exc).__name__}: {exc}"})
        sock.close()
        return 3
    try:
        _send(
            sock,
            {
                "op": "ready",
                "pid": os.getpid(),
                "engine": args.engine,
                "load_ms": round((time.monotonic() - t0) * 1000.0, 1),
                "rss_kb": rss_kb(),
            },
        )
        return serve(sock, engine)
    except (BrokenPipeError, ConnectionResetError):
        # the parent has gone (it stopped while this worker was still loading its model): a normal end
        return 0
    except (OSError, ProtocolError) as exc:
        log.warning("worker %s stopping: %s", os.getpid(), exc)
        return 1
    finally:
        sock.close()


if __name__ == "__main__":
    sys.exit(main())
