"""A pool of speech worker processes, waited on with gevent.

CPU-bound decoders (faster-whisper, pocketsphinx) hold the GIL, so they cannot run on the hub nor in a
gevent thread. Each :class:`WorkerPool` runs about one process per core for one engine
(``python -m esl_controller.pipeline.providers.stt._worker_main``: a fresh interpreter, so the child
never re-runs our main module and never imports gevent). Each worker loads its model once and serves
one request at a time over a socket pair; the parent side is a gevent socket, so waiting never blocks
the hub, and every wait has a timeout.

Requests:

- **utterances** (:meth:`WorkerPool.transcribe`) go through one bounded queue; a full queue is
  back-pressure: :class:`ProviderError` ``retryable=True`` at once, never an unbounded wait. Each worker
  has a dispatcher greenlet taking the next request when its worker is free.
- **streams** (:meth:`WorkerPool.open_stream`) are pinned to one worker (the least loaded, at most
  ``max_streams_per_worker`` each); pushes are one-way, partials come back as they change.

Failure policy: a worker that dies (crash, SIGKILL, OOM) is replaced; its in-flight request and its
streams fail with a **retryable** :class:`ProviderError` and are *not* retried automatically (an
utterance that crashes a decoder would crash the next one too; the pipeline's fallback decides).
A worker silent for ``hang_grace`` seconds past a request's deadline is killed and replaced. A worker
that cannot load its engine (missing package, bad model hash) makes the pool fatal: no respawn, every
request fails with a non-retryable error naming the cause.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import gevent
import gevent.event
import gevent.lock
import gevent.queue
import gevent.socket
import gevent.subprocess

from esl_controller.pipeline.providers.base import ProviderError
from esl_controller.pipeline.providers.stt._worker_main import (
    MessageDecoder,
    ProtocolError,
    encode_message,
    rss_kb,
)

log = logging.getLogger("esl_controller.pipeline.workers")

CHILD_MODULE = "esl_controller.pipeline.providers.stt._worker_main"
_IO_TIMEOUT = (
    5.0  # socket timeout: the reader loops on it, a send stuck this long means a stuck worker
)
_PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclass(frozen=True)
class PoolConfig:
    engine: str  # "whisper" | "sphinx" | "selftest"
    options: Mapping[str, Any] = field(default_factory=dict)
    size: int = 0  # 0: one worker per core
    queue_limit: int = 32  # pending utterances before back-pressure
    start_timeout: float = 60.0  # model load
    hang_grace: float = 10.0  # seconds past a request's deadline before a silent worker is killed
    max_streams_per_worker: int = 8
    provider: str = "custom-transcriber"  # named in errors (ended reason)
    nice: int = 5  # workers yield the CPU to the hub when cores are saturated

    @property
    def workers(self) -> int:
        return self.size if self.size > 0 else max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class PoolStats:
    workers: int
    ready: int
    busy: int
    queued: int
    streams: int
    completed: int
    failed: int
    restarts: int
    rss_kb: Mapping[int, int]  # pid -> resident KiB
    fatal: str = ""


@dataclass
class _Job:
    header: dict[str, Any]
    payload: bytes
    deadline: float
    result: gevent.event.AsyncResult = field(default_factory=gevent.event.AsyncResult)


class _Worker:
    """One child process and the parent's end of its socket; a reader greenlet routes replies."""

    def __init__(self, pool: WorkerPool, index: int) -> None:
        self.pool = pool
        self.index = index
        cfg = pool.config
        parent, child = gevent.socket.socketpair()
        env = dict(os.environ)
        env.setdefault("OMP_NUM_THREADS", "1")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
        argv = [sys.executable, "-m", CHILD_MODULE, "--fd", str(child.fileno())]
        argv += ["--engine", cfg.engine, "--options", json.dumps(dict(cfg.options))]
        argv += ["--nice", str(cfg.nice)]
        try:
            self.proc = gevent.subprocess.Popen(
                argv, pass_fds=(child.fileno(),), env=env, stdin=subprocess.DEVNULL
            )
        finally:
            child.close()
        self.pid: int = self.proc.pid
        self.sock = parent
        self.sock.settimeout(_IO_TIMEOUT)
        self.ready = gevent.event.AsyncResult()
        self.pending: dict[int, gevent.event.AsyncResult] = {}
        self.streams: dict[str, StreamChannel] = {}
        self.busy = False
        self.alive = True
        self.started = time.monotonic()
        self._send_lock = gevent.lock.Semaphore()
        self._reader = gevent.spawn(self._read_loop)

    # -- I/O -------------------------------------------------------------------------------------------
    def send(self, header: dict[str, Any], payload: bytes = b"") -> None:
        if not self.alive:
            raise self.pool.error(f"stt worker {self.pid} is gone", retryable=True)
        data = encode_message(header, payload)
        try:
            with self._send_lock:
                self.sock.sendall(data)
        except OSError as exc:  # includes socket.timeout: the worker stopped reading
            self.die(f"send failed: {exc}")
            raise self.pool.error(f"stt worker {self.pid} failed: {exc}", retryable=True) from exc

    def _read_loop(self) -> None:
        decoder = MessageDecoder()
        reason = "closed its socket"
        while self.alive:
            try:
                data = self.sock.recv(1 << 16)
            except TimeoutError:
                if self.proc.poll() is not None:
                    reason = f"exited with {self.proc.returncode}"
                    break
                continue
            except OSError as exc:
                reason = f"socket error: {exc}"
                break
            if not data:
                try:  # name the exit status (e.g. -9 for SIGKILL) when the process is already gone
                    reason = f"exited with {self.proc.wait(timeout=1.0)}"
                except subprocess.TimeoutExpired:
                    pass
                break
            try:
                messages = decoder.feed(data)
            except ProtocolError as exc:
                reason = f"protocol error: {exc}"
                break
            for header, _payload in messages:
                self._route(header)
        self.die(reason)

    def _route(self, header: dict[str, Any]) -> None:
        op = header.get("op")
        if op == "ready":
            self.ready.set(header)
            self.pool._emit("ready", self.pid)
        elif op == "fatal":
            self.ready.set_exception(
                self.pool.error(f"stt worker could not load: {header.get('message')}")
            )
        elif op == "partial":
            stream = self.streams.get(str(header.get("sid")))
            if stream is not None:
                stream._partial(str(header.get("text") or ""))
        elif op in ("result", "error"):
            waiter = (
                self.pending.pop(header.get("id"), None) if header.get("id") is not None else None
            )
            if waiter is None:
                if op == "error" and header.get("sid"):
                    stream = self.streams.get(str(header["sid"]))
                    if stream is not None:
                        stream._fail(self.pool.error(str(header.get("message"))))
                return  # a reply to a request whose caller gave up
            if op == "result":
                waiter.set(header)
            else:
                waiter.set_exception(
                    self.pool.error(
                        f"stt worker error: {header.get('message')}",
                        retryable=bool(header.get("retryable")),
                    )
                )
        else:
            log.warning("stt worker %s sent unknown op %r", self.pid, op)

    # -- life --------------------------------------------------------------------------------------------
    def die(self, reason: str) -> None:
        """Fail everything waiting on this worker, reap the process and tell the pool (idempotent)."""
        if not self.alive:
            return
        self.alive = False
        err = self.pool.error(f"stt worker {self.pid} died ({reason})", retryable=True)
        if not self.ready.ready():
            self.ready.set_exception(err)
        pending, self.pending = self.pending, {}
        for waiter in pending.values():
            if not waiter.ready():
                waiter.set_exception(err)
        streams, self.streams = self.streams, {}
        for stream in streams.values():
            stream._fail(err)
        self.sock.close()
        gevent.spawn(self._reap)
        self.pool._worker_died(self, reason)

    def _reap(self) -> None:
        try:
            self.proc.wait(timeout=2.0)
        except subprocess.TimeoutExpired:
            self.kill()
            try:
                self.proc.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                log.error("stt worker %s did not exit after SIGKILL", self.pid)

    def kill(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def request(self, header: dict[str, Any], payload: bytes = b"") -> gevent.event.AsyncResult:
        rid = next(self.pool._ids)
        waiter = gevent.event.AsyncResult()
        self.pending[rid] = waiter
        self.send({**header, "id": rid}, payload)
        return waiter


class WorkerPool:
    """Spawned worker processes for one engine. Use from greenlets; ``start()`` before use."""

    def __init__(
        self,
        config: PoolConfig,
        *,
        on_event: Callable[[str, int], None] | None = None,
    ) -> None:
        self.config = config
        self.on_event = on_event  # ("ready" | "dispatch" | "died", pid): for metrics and tests
        self._ids = itertools.count(1)
        self._queue: gevent.queue.Queue = gevent.queue.Queue(maxsize=config.queue_limit)
        self._workers: list[_Worker | None] = [None] * config.workers
        self._greenlets: list[gevent.Greenlet] = []
        self._closing = False
        self._fatal = ""
        self._failures_in_row = 0
        self.completed = 0
        self.failed = 0
        self.restarts = 0

    def error(self, message: str, *, retryable: bool = False) -> ProviderError:
        return ProviderError(
            message, provider=self.config.provider, kind="stt", retryable=retryable
        )

    def _emit(self, event: str, pid: int) -> None:
        if self.on_event is not None:
            try:
                self.on_event(event, pid)
            except Exception:  # noqa: BLE001 - an observer must not break the pool
                log.exception("stt pool observer failed on %s", event)

    # -- start and stop ----------------------------------------------------------------------------------
    def start(self, *, wait: bool = True, timeout: float | None = None) -> WorkerPool:
        for index in range(len(self._workers)):
            self._spawn(index)
        if wait:
            self.wait_ready(timeout if timeout is not None else self.config.start_timeout)
        return self

    def wait_ready(self, timeout: float) -> None:
        """Wait until every worker has loaded its model; raise the load error if one could not."""
        deadline = time.monotonic() + timeout
        for worker in list(self._workers):
            if worker is None:
                continue
            try:
                worker.ready.get(timeout=max(0.0, deadline - time.monotonic()))
            except gevent.Timeout as exc:
                raise self.error(
                    f"stt workers not ready after {timeout:.0f} s", retryable=True
                ) from exc
        if self._fatal:
            raise self.error(self._fatal)

    def _spawn(self, index: int) -> None:
        worker = _Worker(self, index)
        self._workers[index] = worker
        self._greenlets.append(gevent.spawn(self._dispatch, worker))

    def close(self, timeout: float = 5.0) -> None:
        """Fail queued requests, ask workers to exit, kill those that do not within ``timeout``."""
        if self._closing:
            return
        self._closing = True
        while True:
            try:
                job = self._queue.get_nowait()
            except gevent.queue.Empty:
                break
            job.result.set_exception(self.error("stt pool closed", retryable=True))
        workers = [w for w in self._workers if w is not None]
        for worker in workers:
            if worker.alive:
                try:
                    worker.send({"op": "exit"})
                except ProviderError:
                    pass
        deadline = time.monotonic() + timeout
        for worker in workers:
            try:
                worker.proc.wait(timeout=max(0.05, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                worker.kill()
                try:
                    worker.proc.wait(timeout=2.0)
                except subprocess.TimeoutExpired:
                    log.error("stt worker %s did not exit after SIGKILL", worker.pid)
            worker.die("pool closed")
        gevent.killall(self._greenlets, timeout=timeout)
        self._greenlets = []

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _worker_died(self, worker: _Worker, reason: str) -> None:
        self._emit("died", worker.pid)
        if self._closing or self._workers[worker.index] is not worker:
            return
        self._workers[worker.index] = None
        if worker.ready.ready() and worker.ready.successful():
            self._failures_in_row = 0
        else:
            self._failures_in_row += 1
            exc = worker.ready.exception
            if isinstance(exc, ProviderError) and "could not load" in str(exc):
                self._fatal = str(exc)
                log.error("%s; not respawning", exc)
                self._fail_queue(self.error(self._fatal))
                return
        log.warning("stt worker %s (%s) %s; replacing it", worker.pid, self.config.engine, reason)
        self.restarts += 1
        delay = (
            min(30.0, 0.5 * (2 ** (self._failures_in_row - 1))) if self._failures_in_row else 0.0
        )
        gevent.spawn_later(delay, self._respawn, worker.index)

    def _respawn(self, index: int) -> None:
        if self._closing or self._fatal or self._workers[index] is not None:
            return
        try:
            self._spawn(index)
        except OSError as exc:
            log.error("could not start an stt worker: %s", exc)
            self._failures_in_row += 1
            gevent.spawn_later(min(30.0, 2.0**self._failures_in_row), self._respawn, index)

    def _fail_queue(self, err: ProviderError) -> None:
        while True:
            try:
                self._queue.get_nowait().result.set_exception(err)
            except gevent.queue.Empty:
                return

    # -- utterances --------------------------------------------------------------------------------------
    def transcribe(
        self,
        pcm16: bytes,
        sample_rate: int,
        options: Mapping[str, Any] | None = None,
        *,
        timeout: float,
    ) -> dict[str, Any]:
        """Decode one utterance on a free worker; the worker's ``result`` header comes back."""
        if self._closing:
            raise self.error("stt pool closed", retryable=True)
        if self._fatal:
            raise self.error(self._fatal)
        header = {"op": "transcribe", "rate": int(sample_rate), "options": dict(options or {})}
        job = _Job(header, pcm16, time.monotonic() + timeout)
        try:
            self._queue.put_nowait(job)
        except gevent.queue.Full:
            self.failed += 1
            raise self.error(
                f"stt workers saturated ({self.config.queue_limit} utterances queued)",
                retryable=True,
            ) from None
        try:
            reply = job.result.get(timeout=timeout)
        except gevent.Timeout:
            self.failed += 1
            raise self.error(f"stt timed out after {timeout:.1f} s", retryable=True) from None
        except ProviderError:
            self.failed += 1
            raise
        self.completed += 1
        return reply

    def _dispatch(self, worker: _Worker) -> None:
        """Feed ``worker`` one queued utterance at a time for as long as it lives."""
        try:
            ready = worker.ready.get(timeout=self.config.start_timeout)
        except gevent.Timeout:
            log.error("stt worker %s did not load in %.0f s", worker.pid, self.config.start_timeout)
            worker.kill()
            return
        except ProviderError:
            return  # died while loading; _worker_died decides what next
        log.info(
            "stt worker %s ready (%s, %s ms)", worker.pid, self.config.engine, ready.get("load_ms")
        )
        while worker.alive and not self._closing:
            try:
                job = self._queue.get(timeout=1.0)
            except gevent.queue.Empty:
                continue
            if job.result.ready():
                continue  # failed by close()
            remaining = job.deadline - time.monotonic()
            if remaining <= 0:
                job.result.set_exception(
                    self.error("stt request expired in the queue", retryable=True)
                )
                continue
            worker.busy = True
            try:
                waiter = worker.request(job.header, job.payload)
            except ProviderError as exc:
                job.result.set_exception(exc)
                worker.busy = False
                return
            self._emit("dispatch", worker.pid)
            waiter.wait(timeout=remaining + self.config.hang_grace)
            worker.busy = False
            if not waiter.ready():
                log.error("stt worker %s hung on a request; killing it", worker.pid)
                worker.kill()
                worker.die("hung")
                job.result.set_exception(self.error("stt worker hung", retryable=True))
                return
            if waiter.successful():
                job.result.set(waiter.value)
            else:
                job.result.set_exception(waiter.exception)

    # -- streams -----------------------------------------------------------------------------------------
    def open_stream(
        self, sample_rate: int, options: Mapping[str, Any] | None = None, *, timeout: float = 5.0
    ) -> StreamChannel:
        if self._closing:
            raise self.error("stt pool closed", retryable=True)
        if self._fatal:
            raise self.error(self._fatal)
        live = [w for w in self._workers if w is not None and w.alive and w.ready.successful()]
        live = [w for w in live if len(w.streams) < self.config.max_streams_per_worker]
        if not live:
            raise self.error("no stt worker free for a stream", retryable=True)
        worker = min(live, key=lambda w: (len(w.streams), w.busy))
        sid = f"s{next(self._ids)}"
        channel = StreamChannel(worker, sid)
        worker.streams[sid] = channel
        waiter = worker.request(
            {
                "op": "stream_open",
                "sid": sid,
                "rate": int(sample_rate),
                "options": dict(options or {}),
            }
        )
        try:
            waiter.get(timeout=timeout)
        except gevent.Timeout:
            worker.streams.pop(sid, None)
            raise self.error("stt stream open timed out", retryable=True) from None
        except ProviderError:
            worker.streams.pop(sid, None)
            raise
        return channel

    # -- introspection -----------------------------------------------------------------------------------
    def pids(self) -> list[int]:
        return [w.pid for w in self._workers if w is not None and w.alive]

    def stats(self) -> PoolStats:
        workers = [w for w in self._workers if w is not None and w.alive]
        return PoolStats(
            workers=len(workers),
            ready=sum(1 for w in workers if w.ready.ready() and w.ready.successful()),
            busy=sum(1 for w in workers if w.busy),
            queued=self._queue.qsize(),
            streams=sum(len(w.streams) for w in workers),
            completed=self.completed,
            failed=self.failed,
            restarts=self.restarts,
            rss_kb={w.pid: rss_kb(w.pid) for w in workers},
            fatal=self._fatal,
        )


class StreamChannel:
    """One streaming session pinned to one worker: pushes go out, partials queue up (bounded)."""

    MAX_PARTIALS = 32

    def __init__(self, worker: _Worker, sid: str) -> None:
        self.worker = worker
        self.sid = sid
        self.partials: gevent.queue.Queue = gevent.queue.Queue(maxsize=self.MAX_PARTIALS)
        self.error: ProviderError | None = None
        self.closed = False

    def _partial(self, text: str) -> None:
        if self.partials.full():  # only the newest partial matters: drop the oldest
            try:
                self.partials.get_nowait()
            except gevent.queue.Empty:
                pass
        self.partials.put_nowait(text)

    def _fail(self, err: ProviderError) -> None:
        self.error = err
        self._partial("")  # wakes a reader; the empty text is never reported

    def _check(self) -> None:
        if self.error is not None:
            raise self.error
        if self.closed:
            raise self.worker.pool.error("stt stream closed")

    def push(self, pcm16: bytes) -> None:
        self._check()
        if pcm16:
            self.worker.send({"op": "stream_push", "sid": self.sid}, pcm16)

    def next_partial(self, timeout: float) -> str | None:
        """The next partial within ``timeout`` (None when none came); raises if the worker died."""
        self._check()
        try:
            text = self.partials.get(timeout=timeout)
        except gevent.queue.Empty:
            return None
        self._check()
        return text or None

    def finish(self, timeout: float) -> dict[str, Any]:
        self._check()
        waiter = self.worker.request({"op": "stream_finish", "sid": self.sid})
        try:
            return waiter.get(timeout=timeout)
        except gevent.Timeout:
            raise self.worker.pool.error("stt stream final timed out", retryable=True) from None

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self.worker.streams.pop(self.sid, None) is not None and self.worker.alive:
            try:
                self.worker.send({"op": "stream_close", "sid": self.sid})
            except ProviderError:
                pass


# -- process-wide pools -------------------------------------------------------------------------------

_shared: dict[str, WorkerPool] = {}
_shared_lock = gevent.lock.Semaphore()


def shared_pool(config: PoolConfig, *, timeout: float | None = None) -> WorkerPool:
    """The process's pool for ``config`` (one per engine and options), started on first use.

    Starting loads a model in every worker (about 1-2 s for whisper tiny.en); call it at start-up to
    have that done before the first call. A fatal pool (engine cannot load) is returned as is: its
    requests fail with the cause.
    """
    key = json.dumps([config.engine, dict(config.options)], sort_keys=True)
    wait = timeout if timeout is not None else config.start_timeout
    if not _shared_lock.acquire(timeout=wait):
        raise ProviderError(
            "stt pool start timed out", provider=config.provider, kind="stt", retryable=True
        )
    try:
        pool = _shared.get(key)
        if pool is None or pool._closing:
            pool = WorkerPool(config)
            _shared[key] = pool
            pool.start(wait=False)
    finally:
        _shared_lock.release()
    pool.wait_ready(wait)
    return pool


def close_shared_pools(timeout: float = 5.0) -> None:
    """Stop every pool made by :func:`shared_pool` (at shutdown)."""
    with _shared_lock:
        pools = list(_shared.values())
        _shared.clear()
    for pool in pools:
        pool.close(timeout)
