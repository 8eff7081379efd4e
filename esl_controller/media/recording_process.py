"""Recordings written by a process of their own (I/O): the hub only hands audio over a socket.

With the writer thread (``media.recording_writer.RecordingWriter``), mixing, interleaving and every
file write of every call share the hub's GIL. At hundreds of calls the hub and that thread pass the
GIL back and forth thousands of times a second: each write releases it, and getting it back means
waiting for the busy hub to let go. Here a child process (``python -m
esl_controller.media.recording_process``) does all of that on its own interpreter, and the hub's
share of a commit is one non-blocking ``sendmsg`` of the raw caller/assistant chunks (no copy on the
hub, no thread). The wire format is ``media.recording_wire``.

* **Never blocking the hub**: what the socket does not take at once waits in a queue that one
  greenlet sends on as the socket drains. Past ``max_backlog_bytes`` queued (a stalled disk, a stuck
  writer), audio is not queued: the recording counts it as dropped and the writer puts silence in
  its place, so the files stay time-aligned while memory stays bounded.
* **Files**: ``open`` creates both files with an empty, valid header on the hub (so a bad path fails
  there and then); the writer appends to them, patching the WAV sizes after every write, so a crash
  of either process leaves playable files holding everything written so far.
* **A writer that dies** is started again (at most ``max_restarts`` times a minute). Every open
  recording is opened again by the new one, which goes on where the file ends; the audio lost in the
  old one becomes silence, counted as dropped, so the files stay time-aligned. Waiters of ``sync``
  and ``close_files`` are answered by the new writer.
* Its CPU shows on another core; ``pid`` is there to measure it.

Hub-only: every method runs on the gevent hub's thread (the call sessions' greenlets).
"""

from __future__ import annotations

import collections
import itertools
import logging
import os
import socket
import subprocess
import sys
import time
from typing import Any

import gevent
from gevent.event import Event
from gevent.monkey import get_original
from gevent.socket import wait_read, wait_write

from esl_controller.media import recording_wire as wire
from esl_controller.media.recording_writer import RecordingFiles, WavWriter

log = logging.getLogger("esl_controller.media.recording_process")

_socketpair = get_original("socket", "socketpair")  # plain sockets, waited on through the hub
_IOV_MAX = 512  # buffers per sendmsg
_RECV_SIZE = 65536
_IDLE_WAIT = 5.0  # the reply and send greenlets re-check their flags this often
_START_TIMEOUT = 20.0


class RemoteFiles:
    """One recording, as the hub sees it: the writer process holds the open files."""

    __slots__ = (
        "id", "name", "mono_path", "stereo_path", "sample_rate", "position", "samples_dropped",
        "error", "closing", "closed",
    )  # fmt: skip

    def __init__(self, ident: int, mono: str | None, stereo: str | None, sample_rate: int) -> None:
        self.id = ident
        self.mono_path = mono
        self.stereo_path = stereo
        self.name = os.path.basename(mono or stereo or "")
        self.sample_rate = sample_rate
        #: samples handed to the writer (or dropped) so far: where the next audio goes
        self.position = 0
        #: samples written as silence: dropped on the hub (writer behind) or lost in a writer that died
        self.samples_dropped = 0
        #: the first write error reported by the writer; later audio for these files is not written
        self.error: Exception | None = None
        self.closing = False
        self.closed = False


class _Message:
    """Buffers of one queued message; ``sent`` bytes of them are in the socket already."""

    __slots__ = ("buffers", "size", "audio", "sent")

    def __init__(self, buffers: list[Any], audio: int) -> None:
        self.buffers = buffers
        self.size = sum(len(b) for b in buffers)
        self.audio = audio
        self.sent = 0


class ProcessRecordingWriter:
    """``RecordingWriter``'s interface (``open``/``submit``/``sync``/``close_files``/``stop``), with
    the writing done by a child process."""

    def __init__(
        self,
        max_backlog_bytes: int = 128 * 1024 * 1024,
        max_restarts: int = 5,
        python: str | None = None,
        socket_buffer_bytes: int = 4 << 20,
    ) -> None:
        self.max_backlog_bytes = max_backlog_bytes
        self.socket_buffer_bytes = socket_buffer_bytes
        self.max_restarts = max_restarts
        self.python = python or sys.executable
        self._ids = itertools.count(1)
        self._tokens = itertools.count(1)
        self._files: dict[int, RemoteFiles] = {}
        self._waiters: dict[int, tuple[Event, RemoteFiles | None, int]] = {}
        self._queue: collections.deque[_Message] = collections.deque()
        self._backlog = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: socket.socket | None = None
        self._sender: gevent.Greenlet | None = None
        self._reader: gevent.Greenlet | None = None
        self._restarts: collections.deque[float] = collections.deque()
        self._stopping = False
        self.failed: str | None = (
            None  # set when the writer cannot be (re)started: no more recording
        )
        self.starts = 0
        self.pid: int | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the writer process (``open`` does it on first use)."""
        if self._proc is None and self.failed is None and not self._stopping:
            self._spawn()

    def _spawn(self) -> None:
        parent, child = _socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            for sock in (parent, child):
                for option in (socket.SO_SNDBUF, socket.SO_RCVBUF):
                    sock.setsockopt(socket.SOL_SOCKET, option, self.socket_buffer_bytes)
            proc = subprocess.Popen(
                [self.python, "-m", "esl_controller.media.recording_process", str(child.fileno())],
                pass_fds=(child.fileno(),),
                stdin=subprocess.DEVNULL,
                close_fds=True,
            )
        except OSError:
            parent.close()
            raise
        finally:
            child.close()
        parent.setblocking(False)
        self._proc, self._sock, self.pid = proc, parent, proc.pid
        self.starts += 1
        log.info("recording writer process %d started", proc.pid)
        self._reader = gevent.spawn(self._read_replies, parent, proc)
        self._reader.name = "recording-writer-replies"

    @property
    def backlog_bytes(self) -> int:
        return self._backlog

    def stop(self, timeout: float = 5.0) -> bool:
        """Send what is queued, let the writer finish and close every file, and end it. False: it
        did not finish within ``timeout`` (it is then killed; the files hold what was written)."""
        deadline = time.monotonic() + timeout
        self._stopping = True
        proc, sock = self._proc, self._sock
        if proc is None or sock is None:
            return True
        while self._queue and proc.poll() is None and time.monotonic() < deadline:
            if self._sender is None or self._sender.dead:
                self._send_queued()
            gevent.sleep(0.01)
        try:
            sock.shutdown(socket.SHUT_WR)  # end of input: the writer closes everything and exits
        except OSError:
            pass
        finished = self._wait_exit(proc, max(0.0, deadline - time.monotonic()))
        self._proc = None
        if self._reader is not None:
            self._reader.kill(block=False)
        if self._sender is not None:
            self._sender.kill(block=False)
        sock.close()
        self._sock = None
        for event, _files, _kind in self._waiters.values():
            event.set()
        return finished and not self._queue

    @staticmethod
    def _wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> bool:
        try:
            proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            log.warning("recording writer process %d did not finish; killed", proc.pid)
            proc.kill()
            proc.wait(timeout=5)
            return False

    # ------------------------------------------------------------------ recordings
    def open(self, mono: str | None, stereo: str | None, sample_rate: int) -> RemoteFiles:
        """Create the files (OSError here when they cannot be) and have the writer take them."""
        if mono is None and stereo is None:
            raise ValueError("a recording needs a mono or a stereo file")
        if self.failed is not None:
            raise OSError(f"the recording writer is not running: {self.failed}")
        created = []
        try:
            for path, channels in ((mono, 1), (stereo, 2)):
                if path:
                    WavWriter(path, sample_rate, channels).close()
                    created.append(path)
        except OSError:
            for path in created:
                _unlink(path)
            raise
        self.start()
        files = RemoteFiles(next(self._ids), mono, stereo, sample_rate)
        self._files[files.id] = files
        self._enqueue([wire.open_message(files.id, sample_rate, mono, stereo)], 0)
        return files

    def submit(
        self,
        files: RemoteFiles,
        caller: bytes | bytearray,
        assistant: bytes | bytearray | None,
        samples: int,
    ) -> bool:
        """Queue ``samples`` of audio (no copy, no blocking). False: the writer is behind, the audio
        is dropped and counted, and the writer puts silence in its place."""
        position = files.position
        files.position = position + samples
        if files.error is not None or files.closing:
            return False
        size = len(caller) + (len(assistant) if assistant else 0)
        if self._backlog + size > self.max_backlog_bytes or self.failed is not None:
            first = not files.samples_dropped
            files.samples_dropped += samples
            if first:
                log.warning(
                    "recording %s: the writer is %d bytes behind; audio is replaced by silence",
                    files.name,
                    self._backlog,
                )
            self._enqueue([wire.header(wire.SILENCE, files.id, position, samples)], 0)
            return False
        head = wire.header(
            wire.AUDIO, files.id, position, samples, len(caller), len(assistant) if assistant else 0
        )
        self._enqueue([head, caller, assistant] if assistant else [head, caller], size)
        return True

    def sync(self, files: RemoteFiles | None, timeout: float = 5.0) -> bool:
        """Wait until everything submitted so far is in the files. False: timed out."""
        return self._wait(wire.SYNC, files, timeout)

    def close_files(self, files: RemoteFiles, timeout: float = 5.0) -> bool:
        """Close the recording after its pending writes, and wait for that. False: timed out (the
        writer still closes them when it gets there)."""
        files.closing = True
        return self._wait(wire.CLOSE, files, timeout)

    def _wait(self, kind: int, files: RemoteFiles | None, timeout: float) -> bool:
        if self.failed is not None or (self._proc is None and self._stopping):
            if files is not None and kind == wire.CLOSE:
                self._forget(files)
            return False
        if self._proc is None:
            return True  # nothing was ever opened
        token = next(self._tokens)
        event = Event()
        self._waiters[token] = (event, files, kind)
        self._enqueue([self._wait_message(kind, files, token)], 0)
        try:
            return bool(event.wait(timeout)) and token not in self._waiters
        finally:
            self._waiters.pop(token, None)

    @staticmethod
    def _wait_message(kind: int, files: RemoteFiles | None, token: int) -> bytes:
        if kind == wire.CLOSE:
            assert files is not None
            return wire.header(wire.CLOSE, files.id, token, files.position)
        return wire.header(wire.SYNC, files.id if files else 0, token)

    def _forget(self, files: RemoteFiles) -> None:
        files.closed = True
        self._files.pop(files.id, None)

    # ------------------------------------------------------------------ sending
    def _enqueue(self, buffers: list[Any], audio: int) -> None:
        self._queue.append(_Message(buffers, audio))
        self._backlog += audio
        if self._sender is None or self._sender.dead:
            self._send_queued()
            if self._queue and self._sock is not None:
                self._sender = gevent.spawn(self._send_loop, self._sock)
                self._sender.name = "recording-writer-send"

    def _send_queued(self) -> None:
        """Send what the socket takes now (never waits)."""
        sock, queue = self._sock, self._queue
        if sock is None:
            return
        while queue:
            buffers: list[Any] = []
            for message in itertools.islice(queue, _IOV_MAX // 3):
                if message.sent:
                    buffers.extend(_rest(message.buffers, message.sent))
                else:
                    buffers.extend(message.buffers)
            try:
                sent = sock.sendmsg(buffers)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # the writer is gone: the reply reader restarts it
                log.debug("recording writer: send failed: %s", exc)
                return
            while sent and queue:
                message = queue[0]
                left = message.size - message.sent
                if sent >= left:
                    sent -= left
                    queue.popleft()
                    self._backlog -= message.audio
                else:
                    message.sent += sent
                    sent = 0

    def _send_loop(self, sock: socket.socket) -> None:
        while self._queue and self._sock is sock:
            try:
                wait_write(sock.fileno(), timeout=_IDLE_WAIT)
            except (TimeoutError, OSError):
                if self._sock is not sock:
                    return
                continue
            self._send_queued()

    # ------------------------------------------------------------------ replies and restarts
    def _read_replies(self, sock: socket.socket, proc: subprocess.Popen[bytes]) -> None:
        reader = wire.MessageReader()
        while self._sock is sock:
            try:
                wait_read(sock.fileno(), timeout=_IDLE_WAIT)
                data = sock.recv(_RECV_SIZE)
            except (TimeoutError, BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                data = b""
                log.debug("recording writer: reply socket failed: %s", exc)
            if not data:
                break
            try:
                messages = reader.feed(data)
            except wire.WireError as exc:
                log.error("recording writer: bad reply (%s); restarting it", exc)
                proc.kill()
                break
            for message in messages:
                self._on_reply(message)
        if self._sock is sock and not self._stopping:
            self._on_exit(proc)

    def _on_reply(self, message: wire.Message) -> None:
        files = self._files.get(message.files)
        if message.kind == wire.DONE:
            waiter = self._waiters.pop(message.a, None)
            if files is not None and message.payload1 and files.error is None:
                files.error = OSError(message.text)
            if waiter is not None:
                event, waited, kind = waiter
                if kind == wire.CLOSE and waited is not None:
                    self._forget(waited)
                event.set()
        elif message.kind == wire.ERROR and files is not None:
            if files.error is None:
                files.error = OSError(message.text)
                log.warning(
                    "recording %s: writing failed, no more audio: %s", files.name, message.text
                )
        elif message.kind == wire.GAP and files is not None:
            first = not files.samples_dropped
            files.samples_dropped += message.a
            if first:
                log.warning(
                    "recording %s: %.2f s lost with the writer process, filled with silence",
                    files.name,
                    message.a / files.sample_rate,
                )

    def _on_exit(self, proc: subprocess.Popen[bytes]) -> None:
        """The writer ended on its own: start another and hand it every open recording."""
        code = self._wait_code(proc)
        log.error("recording writer process %d exited (%s); starting another", proc.pid, code)
        old = self._sock
        self._proc = self._sock = None
        if old is not None:
            old.close()
        # a message cut off mid-way would be garbage to the new writer: its audio becomes a gap
        if self._queue and self._queue[0].sent:
            dropped = self._queue.popleft()
            self._backlog -= dropped.audio
        now = time.monotonic()
        while self._restarts and now - self._restarts[0] > 60.0:
            self._restarts.popleft()
        if len(self._restarts) >= self.max_restarts:
            self._fail(f"exited {len(self._restarts) + 1} times within a minute")
            return
        self._restarts.append(now)
        try:
            self._spawn()
        except OSError as exc:
            self._fail(f"cannot start: {exc}")
            return
        reopen = [
            _Message([wire.open_message(f.id, f.sample_rate, f.mono_path, f.stereo_path)], 0)
            for f in self._files.values()
        ]
        pending = [
            _Message([self._wait_message(kind, files, token)], 0)
            for token, (_event, files, kind) in self._waiters.items()
        ]
        # the reopened files first, then what is queued, then the waits (answered after it all)
        self._queue.extendleft(reversed(reopen))
        self._queue.extend(pending)
        self._send_queued()
        if self._queue and self._sock is not None:
            self._sender = gevent.spawn(self._send_loop, self._sock)

    @staticmethod
    def _wait_code(proc: subprocess.Popen[bytes]) -> str:
        try:
            code = proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            proc.kill()
            return "not answering; killed"
        return f"exit code {code}"

    def _fail(self, reason: str) -> None:
        self.failed = reason
        log.error("recording writer: %s; recordings stop here", reason)
        self._queue.clear()
        self._backlog = 0
        for files in self._files.values():
            if files.error is None:
                files.error = OSError(f"recording writer {reason}")
        for event, _files, _kind in self._waiters.values():
            event.set()


def _rest(buffers: list[Any], sent: int) -> list[Any]:
    """The part of ``buffers`` after the first ``sent`` bytes."""
    out: list[Any] = []
    for buf in buffers:
        if sent >= len(buf):
            sent -= len(buf)
            continue
        out.append(memoryview(buf)[sent:] if sent else buf)
        sent = 0
    return out


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


# ---------------------------------------------------------------------------------- the writer


class _Writer:
    """The child's side: applies messages in order, answers on the same socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.files: dict[int, RecordingFiles] = {}
        self.failed: set[int] = set()

    def handle(self, message: wire.Message) -> None:
        kind, ident = message.kind, message.files
        files = self.files.get(ident)
        if kind == wire.AUDIO:
            if files is not None and ident not in self.failed:
                caller = message.payload1
                gap = self._guard(
                    ident, files.write_at, message.a, caller, message.payload2, message.b
                )
                if gap:
                    self.reply(wire.GAP, ident, gap)
        elif kind == wire.SILENCE:
            if files is not None and ident not in self.failed:
                self._guard(ident, files.pad_to, message.a + message.b)
        elif kind == wire.OPEN:
            self._open(message)
        elif kind == wire.SYNC:
            self.reply(wire.DONE, ident, message.a)
        elif kind == wire.CLOSE:
            if files is not None:
                if ident not in self.failed:
                    self._guard(ident, files.pad_to, message.b)
                files.close()
                del self.files[ident]
                self.failed.discard(ident)
            self.reply(wire.DONE, ident, message.a)

    def _open(self, message: wire.Message) -> None:
        ident = message.files
        try:
            mono, stereo = wire.open_paths(message)
            rate = message.a
            mono_wav = WavWriter(mono, rate, 1, append=True) if mono else None
            try:
                stereo_wav = WavWriter(stereo, rate, 2, append=True) if stereo else None
            except (OSError, ValueError):
                if mono_wav is not None:
                    mono_wav.close()
                raise
        except (OSError, ValueError) as exc:
            self.failed.add(ident)
            self.reply(wire.ERROR, ident, 0, f"cannot open: {exc}")
            return
        old = self.files.pop(ident, None)
        if old is not None:
            old.close()
        self.files[ident] = RecordingFiles(mono_wav, stereo_wav)

    def _guard(self, ident: int, fn: Any, *args: Any) -> int:
        try:
            return int(fn(*args) or 0)
        except (OSError, ValueError) as exc:
            self.failed.add(ident)
            self.reply(wire.ERROR, ident, 0, str(exc))
            return 0

    def reply(self, kind: int, ident: int, a: int, text: str = "") -> None:
        self.sock.sendall(wire.encode(wire.Message(kind, ident, a, 0, text.encode())))

    def close_all(self) -> None:
        for files in self.files.values():
            files.close()
        self.files.clear()


def child_main(fd: int) -> int:
    """The writer process: read messages until the hub closes its end, then close every file."""
    sock = socket.socket(fileno=fd)
    sock.setblocking(True)
    writer = _Writer(sock)
    reader = wire.MessageReader()
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    try:
        while True:
            n = sock.recv_into(buf)
            if not n:
                return 0
            for message in reader.feed(view[:n]):
                writer.handle(message)
    except wire.WireError as exc:
        print(f"recording writer: {exc}", file=sys.stderr)
        return 2
    except (BrokenPipeError, ConnectionResetError):  # the hub is gone
        return 0
    finally:
        writer.close_all()


if __name__ == "__main__":
    sys.exit(child_main(int(sys.argv[1])))
