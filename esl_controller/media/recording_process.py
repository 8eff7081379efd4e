"""Call recordings made in a process of their own (I/O): the hub only forwards the raw audio.

With ``CallRecorder`` on the hub, every 20 ms frame is copied into a track buffer that holds a
second or two of audio per call (cold memory at hundreds of calls), and mixing, interleaving and file
writes run on a thread that shares the hub's GIL: each write releases it, and getting it back means
waiting for the busy hub. Here the hub's ``RemoteRecorder`` keeps a call's newest caller frames in a
short list (no copy) and every ``batch_frames`` frames hands them, with their call time, to the
recording process in one non-blocking ``sendmsg`` (the frames go out as they are, no join). The
process (``python -m esl_controller.media.recording_process``) runs the ``CallRecorder`` of every call
(time alignment, silence for gaps, late audio dropped and counted) and writes the WAV files itself.
The wire format is ``media.recording_wire``.

* **Never blocking the hub**: what the socket does not take at once waits in a queue that one greenlet
  sends on as the socket drains. Past ``max_backlog_bytes`` queued (a stalled disk, a stuck process),
  audio is not queued: it is counted as dropped, and the recording gets silence in its place (time
  alignment comes from the call times, so the files stay aligned).
* **Files**: the hub creates both with an empty, valid header when the recording starts (a bad path
  fails there and then); the process appends to them and patches the WAV sizes after every write, so
  a crash of either process leaves playable files holding everything written so far.
* **A recording process that dies** is started again (at most ``max_restarts`` times a minute). Every
  open recording is reopened by the new one and goes on where its files end; the audio lost with the
  old one becomes silence, counted in the recording's ``writer_samples_dropped``. Waiters of
  ``sync``/``close`` are answered by the new one.
* Its CPU shows on another core; ``pid`` is there to measure it.

Hub-only: every method runs on the gevent hub's thread (the call sessions' greenlets).
"""

from __future__ import annotations

import _socket
import collections
import itertools
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

import gevent
from gevent.event import Event
from gevent.socket import wait_read, wait_write

from esl_controller.media import recording_wire as wire
from esl_controller.media.codecs import SAMPLE_WIDTH
from esl_controller.media.recorder import CallRecorder, check_recording
from esl_controller.media.recording_writer import RecordingFiles, WavWriter

log = logging.getLogger("esl_controller.media.recording_process")

_IOV_MAX = 512  # buffers per sendmsg
_RECV_SIZE = 65536
_IDLE_WAIT = 5.0  # the reply and send greenlets re-check their flags this often
CLOSE_TIMEOUT_SECONDS = 5.0
# the C sockets: no gevent wrapper around every sendmsg (they are waited on through the hub explicitly)
_socketpair = _socket.socketpair


class _Message:
    """Buffers of one queued message; ``sent`` bytes of them are in the socket already."""

    __slots__ = ("buffers", "size", "audio", "sent")

    def __init__(self, buffers: list[Any], audio: int) -> None:
        self.buffers = buffers
        self.size = sum(map(len, buffers))
        self.audio = audio
        self.sent = 0


class _Track:
    """One side's frames held back for the next batch: a list of the frames themselves (no copy)."""

    __slots__ = ("kind", "frames", "at", "next")

    def __init__(self, kind: int) -> None:
        self.kind = kind
        self.frames: list[bytes] = []
        self.at = 0.0  # call time of the first frame
        self.next = 0.0  # call time right after the last frame


class RemoteRecorder:
    """``CallRecorder``'s interface on the hub (``add_caller``, ``add_assistant``, ``flush``,
    ``sync``, ``close`` and the counters), recording in the recording process.

    Each side's audio is batched: contiguous frames (a 20 ms frame at a time from the fork and from
    the speaker) go ``batch_frames`` to a send. A partial assistant batch goes along with the caller's
    next, so the end of a short utterance never waits past the recording's hold-back."""

    __slots__ = (
        "sample_rate", "name", "request", "id", "closed", "error", "late_samples_dropped",
        "_owner", "_caller", "_assistant", "_step", "_batch_frames", "_hub_dropped",
        "_remote_dropped", "_committed", "_end",
    )  # fmt: skip

    def __init__(
        self,
        owner: RecordingProcess,
        ident: int,
        sample_rate: int,
        request: wire.OpenRequest,
        batch_frames: int,
    ) -> None:
        self._owner = owner
        self.id = ident
        self.sample_rate = sample_rate
        self.request = request
        self.name = os.path.basename(request.mono or request.stereo or "")
        self.closed = False
        #: the first write error the recording process reported (the files hold what came before)
        self.error: Exception | None = None
        #: samples that came later than the hold-back window (as counted at the last sync/close)
        self.late_samples_dropped = 0
        self._caller = _Track(wire.CALLER)
        self._assistant = _Track(wire.ASSISTANT)
        self._step = 1.0 / (SAMPLE_WIDTH * sample_rate)  # seconds per byte of L16
        self._batch_frames = batch_frames
        self._hub_dropped = 0
        self._remote_dropped = 0
        self._committed = 0
        self._end = 0.0  # call time after the latest audio handed over (or dropped)

    @property
    def committed_seconds(self) -> float:
        """Audio time in the files (as of the last ``sync``)."""
        return self._committed / float(self.sample_rate)

    @property
    def writer_samples_dropped(self) -> int:
        """Samples written as silence because the recording process was behind or died."""
        return self._hub_dropped + self._remote_dropped

    def add_caller(self, pcm: bytes, at: float) -> None:
        """Caller audio (mono L16) starting at call time ``at`` seconds."""
        track = self._caller
        frames = track.frames
        if frames and -0.5 < (at - track.next) * self.sample_rate < 0.5:
            frames.append(pcm)  # continues the batch: the usual case
            track.next += len(pcm) * self._step
            if len(frames) >= self._batch_frames:
                self._send_track(track)
            return
        self._begin(track, pcm, at)

    def add_assistant(self, pcm: bytes, at: float) -> None:
        """Assistant audio (mono L16) as played, starting at call time ``at`` seconds."""
        track = self._assistant
        frames = track.frames
        if frames and -0.5 < (at - track.next) * self.sample_rate < 0.5:
            frames.append(pcm)
            track.next += len(pcm) * self._step
            if len(frames) >= self._batch_frames:
                self._send_track(track)
            return
        self._begin(track, pcm, at)

    def _begin(self, track: _Track, pcm: bytes, at: float) -> None:
        """Audio that does not continue the side's batch (the first, or after a gap): checked, and a
        new batch started with it once the old one is sent."""
        if self.closed:
            raise ValueError("recorder is closed")
        if len(pcm) % SAMPLE_WIDTH:
            raise ValueError("PCM length must be a whole number of samples")
        if not pcm:
            return
        if track.frames:
            self._send_track(track)
        track.frames = [pcm]
        track.at = at
        track.next = at + len(pcm) * self._step

    def _send_track(self, track: _Track) -> None:
        frames, track.frames = track.frames, []
        self._send(track.kind, track.at, frames, sum(map(len, frames)))
        if track.next > self._end:
            self._end = track.next
        if track is self._caller and self._assistant.frames:
            self._send_track(self._assistant)  # goes along: a short utterance's end never waits

    def _send(self, kind: int, at: float, chunks: list[bytes], size: int) -> None:
        if not self._owner.submit(self, kind, round(at * 1e9), chunks, size):
            self._hub_dropped += size // SAMPLE_WIDTH

    def flush(self) -> None:
        """Hand over the frames held back for the next batches."""
        for track in (self._caller, self._assistant):
            if track.frames:
                self._send_track(track)

    def sync(self, timeout: float = CLOSE_TIMEOUT_SECONDS) -> bool:
        """Wait until everything handed over so far is placed (and what is committed, written).
        False: timed out."""
        self.flush()
        return self._owner.wait(wire.SYNC, self, timeout)

    def close(self, timeout: float = CLOSE_TIMEOUT_SECONDS) -> None:
        """Commit the rest and wait (up to ``timeout``) until the files are written and closed."""
        if self.closed:
            return
        self.flush()
        self.closed = True
        if not self._owner.wait(wire.CLOSE, self, timeout):
            log.warning("recording %s: not finished writing after %.1f s", self.name, timeout)
        elif self.error is not None:
            log.warning("recording %s: incomplete (%s)", self.name, self.error)

    def _update(self, counters: dict[str, Any]) -> None:
        self._committed = int(counters.get("committed") or 0)
        self.late_samples_dropped = int(counters.get("late") or 0)
        self._remote_dropped = int(counters.get("dropped") or 0)
        if counters.get("error") and self.error is None:
            self.error = OSError(str(counters["error"]))


class RecordingProcess:
    """Owns the recording process: ``recorder()`` starts a call's recording there."""

    def __init__(
        self,
        max_backlog_bytes: int = 128 * 1024 * 1024,
        max_restarts: int = 5,
        python: str | None = None,
        socket_buffer_bytes: int = 4 << 20,
        batch_frames: int = 10,
    ) -> None:
        self.max_backlog_bytes = max_backlog_bytes
        self.max_restarts = max_restarts
        self.python = python or sys.executable
        self.socket_buffer_bytes = socket_buffer_bytes
        self.batch_frames = batch_frames
        self._ids = itertools.count(1)
        self._tokens = itertools.count(1)
        self._recordings: dict[int, RemoteRecorder] = {}
        self._waiters: dict[int, tuple[Event, RemoteRecorder, int]] = {}
        self._queue: collections.deque[_Message] = collections.deque()
        self._backlog = 0
        self._proc: subprocess.Popen[bytes] | None = None
        self._sock: _socket.socket | None = None
        self._sender: gevent.Greenlet | None = None
        self._flush_due = False  # a _flush is scheduled on the hub's loop
        self._reader: gevent.Greenlet | None = None
        self._restarts: collections.deque[float] = collections.deque()
        self._stopping = False
        #: set when the process cannot be (re)started: recordings end with this as their error
        self.failed: str | None = None
        self.starts = 0
        self.pid: int | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        """Start the recording process (the first ``recorder()`` does it)."""
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
        log.info("recording process %d started", proc.pid)
        self._reader = gevent.spawn(self._read_replies, parent, proc)
        self._reader.name = "recording-process-replies"

    @property
    def backlog_bytes(self) -> int:
        return self._backlog

    def stop(self, timeout: float = 5.0) -> bool:
        """Send what is queued, let the process close every recording, and end it. False: it did
        not finish within ``timeout`` (it is then killed; the files hold what was written)."""
        deadline = time.monotonic() + timeout
        self._stopping = True
        proc, sock = self._proc, self._sock
        if proc is None or sock is None:
            return True
        for recording in list(self._recordings.values()):
            recording.flush()
        while self._queue and proc.poll() is None and time.monotonic() < deadline:
            if self._sender is None or self._sender.dead:
                self._send_queued()
            gevent.sleep(0.01)
        try:
            sock.shutdown(socket.SHUT_WR)  # end of input: the process closes everything and exits
        except OSError:
            pass
        finished = self._wait_exit(proc, max(0.0, deadline - time.monotonic()))
        self._proc = None
        for greenlet in (self._reader, self._sender):
            if greenlet is not None:
                greenlet.kill(block=False)
        sock.close()
        self._sock = None
        for event, _recording, _kind in self._waiters.values():
            event.set()
        return finished and not self._queue

    @staticmethod
    def _wait_exit(proc: subprocess.Popen[bytes], timeout: float) -> bool:
        try:
            proc.wait(timeout=timeout)
            return True
        except subprocess.TimeoutExpired:
            log.warning("recording process %d did not finish; killed", proc.pid)
            proc.kill()
            proc.wait(timeout=5)
            return False

    # ------------------------------------------------------------------ recordings
    def recorder(
        self,
        sample_rate: int,
        mono_path: str | None = None,
        stereo_path: str | None = None,
        hold_back_seconds: float = 1.0,
        flush_seconds: float = 1.0,
        *,
        phase: float | None = None,
    ) -> RemoteRecorder:
        """A call's recording (``CallRecorder``'s arguments): the files are created here (OSError
        when they cannot be) and recorded by the recording process."""
        phase = check_recording(mono_path, stereo_path, phase)
        if self.failed is not None:
            raise OSError(f"the recording process is not running: {self.failed}")
        created: list[str] = []
        try:
            for path, channels in ((mono_path, 1), (stereo_path, 2)):
                if path:
                    WavWriter(path, sample_rate, channels).close()
                    created.append(path)
        except OSError:
            for path in created:
                _unlink(path)
            raise
        self.start()
        request = wire.OpenRequest(
            mono_path or None, stereo_path or None, hold_back_seconds, flush_seconds, phase
        )
        recording = RemoteRecorder(self, next(self._ids), sample_rate, request, self.batch_frames)
        self._recordings[recording.id] = recording
        self._enqueue([wire.open_message(recording.id, sample_rate, request)], 0)
        return recording

    def submit(
        self, recording: RemoteRecorder, kind: int, at_ns: int, chunks: list[bytes], size: int
    ) -> bool:
        """Queue audio (no copy, never blocks). False: the process is behind or gone; the audio is
        dropped (the recording gets silence in its place)."""
        if self._backlog + size > self.max_backlog_bytes or self.failed is not None:
            if recording.writer_samples_dropped == 0:
                log.warning(
                    "recording %s: the recording process is %d bytes behind; audio is replaced "
                    "by silence",
                    recording.name,
                    self._backlog,
                )
            return False
        self._enqueue([wire.header(kind, recording.id, at_ns, 0, size), *chunks], size)
        return True

    def wait(self, kind: int, recording: RemoteRecorder, timeout: float) -> bool:
        """``SYNC`` or ``CLOSE`` a recording and wait for the answer. False: timed out."""
        if self.failed is not None or (self._stopping and self._proc is None):
            if kind == wire.CLOSE:
                self._recordings.pop(recording.id, None)
            return False
        # (while a process that died is being replaced, the message waits in the queue for the new one)
        token = next(self._tokens)
        event = Event()
        self._waiters[token] = (event, recording, kind)
        self._enqueue([self._wait_message(kind, recording, token)], 0)
        try:
            return bool(event.wait(timeout)) and token not in self._waiters
        finally:
            self._waiters.pop(token, None)

    @staticmethod
    def _wait_message(kind: int, recording: RemoteRecorder, token: int) -> bytes:
        # CLOSE carries where the recording ends, so audio dropped at the end still becomes silence
        end = round(recording._end * 1e9) if kind == wire.CLOSE else 0
        return wire.header(kind, recording.id, token, end)

    # ------------------------------------------------------------------ sending
    def _enqueue(self, buffers: list[Any], audio: int) -> None:
        self._queue.append(_Message(buffers, audio))
        self._backlog += audio
        if not self._flush_due and (self._sender is None or self._sender.dead):
            # sent when the current greenlet yields: every call's batches of one reader tick go
            # in one sendmsg, not one each
            self._flush_due = True
            gevent.get_hub().loop.run_callback(self._flush)

    def _flush(self) -> None:
        self._flush_due = False
        if self._sender is not None and not self._sender.dead:
            return  # the socket was full: the sender sends once it takes more
        self._send_queued()
        if self._queue and self._sock is not None:
            self._sender = gevent.spawn(self._send_loop, self._sock)
            self._sender.name = "recording-process-send"

    def _send_queued(self) -> None:
        """Send what the socket takes now (never waits)."""
        sock, queue = self._sock, self._queue
        if sock is None:
            return
        while queue:
            buffers: list[Any] = []
            for message in queue:
                if message.sent:
                    buffers.extend(_rest(message.buffers, message.sent))
                else:
                    buffers.extend(message.buffers)
                if len(buffers) >= _IOV_MAX - 16:
                    break
            try:
                sent = sock.sendmsg(buffers)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # the process is gone: the reply reader restarts it
                log.debug("recording process: send failed: %s", exc)
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

    def _send_loop(self, sock: _socket.socket) -> None:
        while self._queue and self._sock is sock:
            try:
                wait_write(sock.fileno(), timeout=_IDLE_WAIT)
            except (TimeoutError, OSError):
                if self._sock is not sock:
                    return
                continue
            self._send_queued()

    # ------------------------------------------------------------------ replies and restarts
    def _read_replies(self, sock: _socket.socket, proc: subprocess.Popen[bytes]) -> None:
        reader = wire.MessageReader()
        while self._sock is sock:
            try:
                wait_read(sock.fileno(), timeout=_IDLE_WAIT)
                data = sock.recv(_RECV_SIZE)
            except (TimeoutError, BlockingIOError, InterruptedError):
                continue
            except OSError as exc:
                data = b""
                log.debug("recording process: reply socket failed: %s", exc)
            if not data:
                break
            try:
                for message in reader.feed(data):
                    self._on_reply(message)
            except wire.WireError as exc:
                log.error("recording process: bad reply (%s); restarting it", exc)
                proc.kill()
                break
        if self._sock is sock and not self._stopping:
            self._on_exit(proc)

    def _on_reply(self, message: wire.Message) -> None:
        recording = self._recordings.get(message.recording)
        if message.kind == wire.DONE:
            counters = wire.counters(message)
            if recording is not None:
                recording._update(counters)
            waiter = self._waiters.pop(message.a, None)
            if waiter is not None:
                event, waited, kind = waiter
                if kind == wire.CLOSE:
                    self._recordings.pop(waited.id, None)
                event.set()
        elif message.kind == wire.ERROR and recording is not None and recording.error is None:
            recording.error = OSError(message.text)
            log.warning(
                "recording %s: writing failed, no more audio: %s", recording.name, message.text
            )

    def _on_exit(self, proc: subprocess.Popen[bytes]) -> None:
        """The process ended on its own: start another and hand it every open recording."""
        code = self._wait_code(proc)
        log.error("recording process %d exited (%s); starting another", proc.pid, code)
        old = self._sock
        self._proc = self._sock = None
        if old is not None:
            old.close()
        # a message cut off mid-way would be garbage to the new process: its audio is lost (silence)
        if self._queue and self._queue[0].sent:
            self._backlog -= self._queue.popleft().audio
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
            _Message([wire.open_message(r.id, r.sample_rate, r.request)], 0)
            for r in self._recordings.values()
        ]
        pending = [
            _Message([self._wait_message(kind, recording, token)], 0)
            for token, (_event, recording, kind) in self._waiters.items()
        ]
        # the reopened recordings first, then what is queued, then the waits (answered after it)
        self._queue.extendleft(reversed(reopen))
        self._queue.extend(pending)
        self._send_queued()
        if self._queue and self._sock is not None:
            self._sender = gevent.spawn(self._send_loop, self._sock)

    @staticmethod
    def _wait_code(proc: subprocess.Popen[bytes]) -> str:
        try:
            return f"exit code {proc.wait(timeout=2.0)}"
        except subprocess.TimeoutExpired:
            proc.kill()
            return "not answering; killed"

    def _fail(self, reason: str) -> None:
        self.failed = reason
        log.error("recording process %s; recordings stop here", reason)
        self._queue.clear()
        self._backlog = 0
        for recording in self._recordings.values():
            if recording.error is None:
                recording.error = OSError(f"recording process {reason}")
        for event, _recording, _kind in self._waiters.values():
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


# ------------------------------------------------------------------------ the recording process


class _DirectWriter:
    """``CallRecorder``'s writer inside the recording process: writes at once, at the position each
    commit starts (so a file a dead process left behind is continued, or padded, in place)."""

    def __init__(self, on_error: Any) -> None:
        self.on_error = on_error
        self.position: dict[int, int] = {}

    def open(self, mono: str | None, stereo: str | None, sample_rate: int) -> RecordingFiles:
        mono_wav = WavWriter(mono, sample_rate, 1, append=True) if mono else None
        try:
            stereo_wav = WavWriter(stereo, sample_rate, 2, append=True) if stereo else None
        except (OSError, ValueError):
            if mono_wav is not None:
                mono_wav.close()
            raise
        files = RecordingFiles(mono_wav, stereo_wav)
        self.position[id(files)] = max(w.frames_written for w in (mono_wav, stereo_wav) if w)
        return files

    def submit(
        self, files: RecordingFiles, caller: bytes, assistant: bytes | None, samples: int
    ) -> bool:
        position = self.position[id(files)]
        self.position[id(files)] = position + samples
        if files.error is None and not files.closed:
            try:
                files.samples_dropped += files.write_at(position, caller, assistant, samples)
            except (OSError, ValueError) as exc:
                files.error = exc
                self.on_error(files, exc)
        return True

    def sync(self, files: RecordingFiles, timeout: float = 0.0) -> bool:
        return True

    def close_files(self, files: RecordingFiles, timeout: float = 0.0) -> bool:
        files.close()
        self.position.pop(id(files), None)
        return True


class _Recordings:
    """The recording process's state: one ``CallRecorder`` per open recording."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.recorders: dict[int, CallRecorder] = {}
        self.errors: dict[int, str] = {}
        self._ids: dict[int, int] = {}  # id(files) -> recording id, for write errors
        # recordings reopened after a process died -> where their files ended: the hole up to the
        # first audio that arrives is what was lost, counted as dropped
        self.resumed: dict[int, int] = {}
        self.writer = _DirectWriter(self._write_failed)

    def handle(self, message: wire.Message) -> None:
        kind, ident = message.kind, message.recording
        rec = self.recorders.get(ident)
        if kind == wire.CALLER or kind == wire.ASSISTANT:
            if rec is not None and not rec.closed:
                add = rec.add_caller if kind == wire.CALLER else rec.add_assistant
                if self.resumed:
                    self._count_lost(ident, rec, message.a)
                try:
                    add(message.payload1, message.a / 1e9)
                except ValueError as exc:  # not from our hub: refuse the audio, keep the files
                    self.reply(wire.ERROR, ident, 0, f"bad audio: {exc}")
        elif kind == wire.OPEN:
            self._open(message)
        elif kind == wire.SYNC:
            self.reply_counters(ident, message.a, rec)
        elif kind == wire.CLOSE:
            self.resumed.pop(ident, None)
            if rec is not None:
                if message.b > 0:
                    rec.extend_to(message.b / 1e9)
                rec.close()
                del self.recorders[ident]
                self._ids.pop(id(rec.files), None)
            self.reply_counters(ident, message.a, rec)
            self.errors.pop(ident, None)

    def _count_lost(self, ident: int, rec: CallRecorder, at_ns: int) -> None:
        resumed = self.resumed.pop(ident, None)
        if resumed is not None:
            lost = round(at_ns / 1e9 * rec.sample_rate) - resumed
            if lost > 0:
                rec.files.samples_dropped += lost

    def _open(self, message: wire.Message) -> None:
        ident = message.recording
        try:
            request = wire.open_request(message)
            start = _files_length(request, message.a)
            rec = CallRecorder(
                message.a,
                request.mono,
                request.stereo,
                request.hold,
                request.flush,
                phase=request.phase,
                writer=self.writer,
                start_sample=start,
            )
        except (OSError, ValueError) as exc:
            self.errors[ident] = f"cannot open: {exc}"
            self.reply(wire.ERROR, ident, 0, self.errors[ident])
            return
        old = self.recorders.pop(ident, None)
        if old is not None:
            old.close()
        self.recorders[ident] = rec
        self._ids[id(rec.files)] = ident
        if start:
            self.resumed[ident] = start

    def _write_failed(self, files: RecordingFiles, exc: Exception) -> None:
        ident = self._ids.get(id(files), 0)
        self.errors.setdefault(ident, str(exc))
        self.reply(wire.ERROR, ident, 0, str(exc))

    def reply_counters(self, ident: int, token: int, rec: CallRecorder | None) -> None:
        counters: dict[str, Any] = {"error": self.errors.get(ident)}
        if rec is not None:
            counters.update(
                committed=rec.committed_samples,
                late=rec.late_samples_dropped,
                dropped=rec.writer_samples_dropped,
            )
        self.sock.sendall(wire.counters_message(ident, token, counters))

    def reply(self, kind: int, ident: int, a: int, text: str = "") -> None:
        self.sock.sendall(wire.encode(wire.Message(kind, ident, a, 0, text.encode())))

    def close_all(self) -> None:
        for rec in self.recorders.values():
            try:
                rec.close()
            except (OSError, ValueError) as exc:
                print(f"recording process: closing {rec.files.name}: {exc}", file=sys.stderr)
        self.recorders.clear()


def _files_length(request: wire.OpenRequest, sample_rate: int) -> int:
    """Samples already in the recording's files (a process that died left them): the longer one."""
    length = 0
    for path, channels in ((request.mono, 1), (request.stereo, 2)):
        if path:
            wav = WavWriter(path, sample_rate, channels, append=True)
            length = max(length, wav.frames_written)
            wav.close()
    return length


def child_main(fd: int) -> int:
    """The recording process: handle messages until the hub closes its end, then close every file."""
    # Ctrl-C on the operator's console reaches the whole process group: the hub handles it and ends the
    # recordings in order (the last audio, then the close); this process must not die under it first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=fd)
    sock.setblocking(True)
    state = _Recordings(sock)
    reader = wire.MessageReader()
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    try:
        while True:
            n = sock.recv_into(buf)
            if not n:
                return 0
            for message in reader.feed(view[:n]):
                state.handle(message)
    except wire.WireError as exc:
        print(f"recording process: {exc}", file=sys.stderr)
        return 2
    except (BrokenPipeError, ConnectionResetError):  # the hub is gone
        return 0
    finally:
        state.close_all()


if __name__ == "__main__":
    sys.exit(child_main(int(sys.argv[1])))
