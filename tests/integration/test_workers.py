"""The worker-process pool with the model-free ``selftest`` engine: real processes, real sockets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import gevent
import gevent.event
import pytest

from esl_controller.pipeline.providers.base import ProviderError
from esl_controller.pipeline.workers import PoolConfig, WorkerPool


class Observer:
    """Pool events as gevent events: tests wait on these, never on sleeps."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int]] = []
        self._waiters: list[tuple[str, gevent.event.AsyncResult]] = []

    def __call__(self, event: str, pid: int) -> None:
        self.events.append((event, pid))
        for name, waiter in list(self._waiters):
            if name == event and not waiter.ready():
                waiter.set(pid)
                self._waiters.remove((name, waiter))

    def next(self, event: str) -> gevent.event.AsyncResult:
        waiter = gevent.event.AsyncResult()
        self._waiters.append((event, waiter))
        return waiter


@pytest.fixture
def pool_factory():
    pools = []

    def make(**kw):
        observer = Observer()
        pool = WorkerPool(PoolConfig(engine="selftest", **kw), on_event=observer)
        pools.append(pool)
        return pool.start(timeout=30), observer

    yield make
    for pool in pools:
        pool.close()


def test_requests_run_in_separate_processes(pool_factory):
    pool, _ = pool_factory(size=2)
    pids = pool.pids()
    assert len(pids) == 2 and os.getpid() not in pids
    jobs = [
        gevent.spawn(pool.transcribe, b"\0" * 320, 8000, {"text": f"u{i}"}, timeout=10)
        for i in range(6)
    ]
    gevent.joinall(jobs, timeout=20, raise_error=True)
    assert sorted(j.value["text"] for j in jobs) == [f"u{i}" for i in range(6)]
    assert pool.stats().completed == 6


def test_hub_keeps_ticking_while_workers_burn_cpu(pool_factory):
    pool, _ = pool_factory(size=1)
    ticks = 0

    def ticker():
        nonlocal ticks
        while True:
            gevent.sleep(0.01)
            ticks += 1

    g = gevent.spawn(ticker)
    try:
        reply = pool.transcribe(b"", 16000, {"spin_ms": 400}, timeout=20)
    finally:
        g.kill()
    assert reply["cpu_ms"] >= 400
    assert ticks >= 5  # a GIL-holding decode on the hub would have allowed none


def test_sigkill_mid_request_fails_retryable_and_worker_is_replaced(pool_factory):
    pool, observer = pool_factory(size=1)
    dispatched = observer.next("dispatch")
    ready_again = observer.next("ready")
    job = gevent.spawn(pool.transcribe, b"", 16000, {"spin_ms": 5000}, timeout=20)
    victim = dispatched.get(timeout=10)
    os.kill(victim, signal.SIGKILL)
    job.join(timeout=10)
    assert isinstance(job.exception, ProviderError)
    assert job.exception.retryable and "died" in str(job.exception)
    assert job.exception.ended_reason == "pipeline-error-custom-transcriber-transcriber-failed"
    new_pid = ready_again.get(timeout=30)
    assert new_pid != victim and pool.pids() == [new_pid]
    assert pool.transcribe(b"", 16000, {"text": "after"}, timeout=10)["text"] == "after"
    assert pool.stats().restarts == 1


def test_crash_inside_the_worker(pool_factory):
    pool, observer = pool_factory(size=1)
    ready_again = observer.next("ready")
    with pytest.raises(ProviderError) as err:
        pool.transcribe(b"", 16000, {"crash": True}, timeout=10)
    assert err.value.retryable
    ready_again.get(timeout=30)
    assert pool.transcribe(b"", 16000, {"text": "ok"}, timeout=10)["text"] == "ok"


def test_full_queue_is_back_pressure(pool_factory):
    pool, observer = pool_factory(size=1, queue_limit=2)
    dispatched = observer.next("dispatch")
    busy = gevent.spawn(pool.transcribe, b"", 16000, {"spin_ms": 800}, timeout=20)
    dispatched.get(timeout=10)
    queued = [
        gevent.spawn(pool.transcribe, b"", 16000, {"text": "q"}, timeout=20) for _ in range(2)
    ]
    gevent.sleep(0)  # let them enqueue
    with pytest.raises(ProviderError) as err:
        pool.transcribe(b"", 16000, {}, timeout=5)
    assert err.value.retryable and "saturated" in str(err.value)
    gevent.joinall([busy, *queued], timeout=20, raise_error=True)
    assert [q.value["text"] for q in queued] == ["q", "q"]


def test_caller_timeout_is_retryable(pool_factory):
    pool, _ = pool_factory(size=1)
    with pytest.raises(ProviderError) as err:
        pool.transcribe(b"", 16000, {"spin_ms": 800}, timeout=0.2)
    assert err.value.retryable and "timed out" in str(err.value)
    # the late reply is dropped; the worker serves the next request
    assert pool.transcribe(b"", 16000, {"text": "next"}, timeout=10)["text"] == "next"


def test_bad_request_fails_without_killing_the_worker(pool_factory):
    pool, _ = pool_factory(size=1)
    pid = pool.pids()[0]
    with pytest.raises(ProviderError) as err:
        pool.transcribe(b"", 16000, {"spin_ms": "lots"}, timeout=10)
    assert not err.value.retryable and "ValueError" in str(err.value)
    assert pool.pids() == [pid]


def test_engine_that_cannot_load_makes_the_pool_fatal():
    pool = WorkerPool(PoolConfig(engine="no-such-engine", size=1))
    try:
        with pytest.raises(ProviderError) as err:
            pool.start(timeout=30)
        assert "could not load" in str(err.value) and not err.value.retryable
        with pytest.raises(ProviderError):
            pool.transcribe(b"", 16000, timeout=1)
        assert pool.stats().restarts == 0
    finally:
        pool.close()


def test_close_fails_queued_requests_and_stops_processes(pool_factory):
    pool, observer = pool_factory(size=1)
    procs = [w.proc for w in pool._workers if w is not None]
    dispatched = observer.next("dispatch")
    busy = gevent.spawn(pool.transcribe, b"", 16000, {"spin_ms": 3000}, timeout=20)
    dispatched.get(timeout=10)
    queued = gevent.spawn(pool.transcribe, b"", 16000, {}, timeout=20)
    gevent.sleep(0)
    pool.close(timeout=0.3)
    gevent.joinall([busy, queued], timeout=10)
    assert isinstance(queued.exception, ProviderError) and queued.exception.retryable
    assert isinstance(busy.exception, ProviderError)
    assert all(p.poll() is not None for p in procs)
    with pytest.raises(ProviderError):
        pool.transcribe(b"", 16000, timeout=1)


def test_streams_and_worker_death(pool_factory):
    pool, _ = pool_factory(size=1)
    stream = pool.open_stream(16000, {})
    stream.push(b"\0" * 640)
    assert stream.next_partial(5) == "640 bytes"
    assert stream.finish(5)["text"] == "640 bytes"
    stream.push(b"\0" * 10)
    assert stream.next_partial(5) == "10 bytes"
    os.kill(pool.pids()[0], signal.SIGKILL)
    with pytest.raises(ProviderError) as err:
        for _ in range(100):  # the death arrives as an event, not after a sleep
            stream.next_partial(5)
    assert err.value.retryable


def test_child_modules_do_not_import_gevent():
    code = (
        "import sys, esl_controller.pipeline.providers.stt._worker_main as m, "
        "esl_controller.pipeline.providers.stt.whisper, esl_controller.pipeline.providers.stt.sphinx; "
        "print(sorted(k for k in sys.modules if k.split('.')[0] in ('gevent', 'flask', 'peewee')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_worker_whose_parent_left_while_it_loaded_exits_quietly():
    """A hub stopped right after start: the worker finds its socket closed when it reports ready. That is a
    normal end (exit 0), not a traceback on the operator's console."""
    import socket

    parent, child = socket.socketpair()
    parent.close()  # gone before the worker is up
    code = (
        "import sys, esl_controller.pipeline.providers.stt._worker_main as m; "
        f"sys.exit(m.main(['--fd', '{child.fileno()}', '--engine', 'selftest']))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        pass_fds=(child.fileno(),),
    )
    child.close()
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr and "BrokenPipe" not in out.stderr


def test_ctrl_c_on_the_console_leaves_the_worker_to_its_hub():
    """Ctrl-C reaches the whole process group: the hub tells its workers to exit; a worker ignores it."""
    import signal
    import socket

    from esl_controller.pipeline.providers.stt._worker_main import MessageDecoder

    parent, child = socket.socketpair()
    code = (
        "import sys, esl_controller.pipeline.providers.stt._worker_main as m; "
        f"sys.exit(m.main(['--fd', '{child.fileno()}', '--engine', 'selftest']))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        pass_fds=(child.fileno(),),
        stderr=subprocess.PIPE,
        text=True,
    )
    child.close()
    try:
        parent.settimeout(30)
        decoder, messages = MessageDecoder(), []
        while not messages:
            data = parent.recv(65536)
            assert data, "the worker ended before it was ready"
            messages = list(decoder.feed(data))
        assert messages[0][0]["op"] == "ready"
        proc.send_signal(signal.SIGINT)
        parent.close()  # what the hub does when it stops: the worker sees its socket end
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "KeyboardInterrupt" not in err
