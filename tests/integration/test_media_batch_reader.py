"""BatchReader: one greenlet reading many real sockets (socket pairs), a tick at a time."""

from __future__ import annotations

import socket

import gevent
import pytest

from esl_controller.media.batch_reader import BatchReader


class Target:
    def __init__(self, keep: bool = True, fail: bool = False) -> None:
        self.data = bytearray()
        self.calls = 0
        self.closed: list[str] = []
        self.keep = keep
        self.fail = fail

    def on_data(self, data: bytes, received_at: float) -> bool:
        self.calls += 1
        self.data += data
        if self.fail:
            raise RuntimeError("target broke")
        return self.keep

    def on_closed(self, reason: str) -> None:
        self.closed.append(reason)


def until(predicate, timeout: float = 5.0) -> None:
    with gevent.Timeout(timeout, AssertionError("condition not met in time")):
        while not predicate():
            gevent.sleep(0.005)


@pytest.fixture
def reader():
    r = BatchReader(interval=0.01, name="test")
    r.start()
    yield r
    r.stop(timeout=2)


@pytest.fixture
def pairs():
    made: list[tuple[socket.socket, socket.socket]] = []

    def make(n: int) -> list[tuple[socket.socket, socket.socket]]:
        for _ in range(n):
            made.append(socket.socketpair())
        return made[-n:]

    yield make
    for a, b in made:
        a.close()
        b.close()


def test_many_sockets_read_in_order_and_batched(reader, pairs):
    socks = pairs(50)
    targets = [Target() for _ in socks]
    for (_, theirs), target in zip(socks, targets, strict=True):
        reader.add(theirs, target)
    expected = []
    for i, (mine, _) in enumerate(socks):
        chunk = bytes([i]) * (100 + i)
        mine.sendall(chunk)
        expected.append(chunk)
    for i, (mine, _) in enumerate(socks):
        mine.sendall(b"second-%d" % i)
        expected[i] += b"second-%d" % i
    until(lambda: all(bytes(t.data) == e for t, e in zip(targets, expected, strict=True)))
    assert reader.largest_batch > 1  # one wake-up served several sockets
    assert reader.ticks < sum(t.calls for t in targets)
    assert all(t.closed == [] for t in targets)
    assert len(reader) == 50


def test_peer_close_reports_eof_once_and_forgets(reader, pairs):
    ((mine, theirs),) = pairs(1)
    target = Target()
    reader.add(theirs, target)
    mine.sendall(b"last words")
    mine.close()
    until(lambda: target.closed)
    gevent.sleep(0.05)
    assert bytes(target.data) == b"last words"
    assert target.closed == ["eof"]
    assert len(reader) == 0


def test_target_stops_reading_by_returning_false(reader, pairs):
    ((mine, theirs),) = pairs(1)
    target = Target(keep=False)
    reader.add(theirs, target)
    mine.sendall(b"one")
    until(lambda: target.closed)
    mine.sendall(b"two")
    gevent.sleep(0.05)
    assert target.calls == 1 and bytes(target.data) == b"one"
    assert target.closed == ["stopped"]


def test_failing_target_is_dropped_and_others_go_on(reader, pairs):
    (m1, t1), (m2, t2) = pairs(2)
    bad, good = Target(fail=True), Target()
    reader.add(t1, bad)
    reader.add(t2, good)
    m1.sendall(b"x")
    m2.sendall(b"y")
    until(lambda: bad.closed and good.data)
    m1.sendall(b"more")
    m2.sendall(b"z")
    until(lambda: bytes(good.data) == b"yz")
    assert bad.calls == 1 and bad.closed == ["stopped"]
    assert reader.target_errors == 1
    assert good.closed == []


def test_removed_socket_is_not_read_and_gets_no_callback(reader, pairs):
    ((mine, theirs),) = pairs(1)
    target = Target()
    reader.add(theirs, target)
    assert reader.remove(theirs) is True
    assert reader.remove(theirs) is False
    mine.sendall(b"unread")
    gevent.sleep(0.05)
    assert target.calls == 0 and target.closed == []
    assert theirs.recv(100) == b"unread"  # still there for whoever owns the socket now


def test_socket_closed_without_remove_is_reported_not_misread(reader, pairs):
    ((mine, theirs),) = pairs(1)
    target = Target()
    reader.add(theirs, target)
    number = theirs.fileno()
    theirs.close()  # the kernel drops it from the epoll; the next socket takes its number
    ((a, b),) = pairs(1)
    reused, peer = (a, b) if a.fileno() == number else (b, a)
    assert reused.fileno() == number
    other = Target()
    reader.add(reused, other)
    peer.sendall(b"for the new socket")
    until(lambda: bytes(other.data) == b"for the new socket")
    assert target.calls == 0
    assert target.closed == ["error: socket closed"]


def test_duplicate_add_and_closed_socket_are_refused(reader, pairs):
    ((mine, theirs),) = pairs(1)
    reader.add(theirs, Target())
    with pytest.raises(ValueError):
        reader.add(theirs, Target())
    a, b = socket.socketpair()
    b.close()
    with pytest.raises(OSError):
        reader.add(b, Target())
    a.close()


def test_stop_tells_every_target(pairs):
    r = BatchReader(interval=0.005)
    r.start()
    targets = [Target() for _ in range(3)]
    for (_, theirs), target in zip(pairs(3), targets, strict=True):
        r.add(theirs, target)
    r.stop(timeout=2)
    assert [t.closed for t in targets] == [["reader stopped"]] * 3
    assert r.greenlet is None
    with pytest.raises(RuntimeError):
        r.add(socket.socket(), Target())
    with pytest.raises(RuntimeError):
        r.start()


def test_idle_reader_does_not_spin(reader, pairs):
    ((mine, theirs),) = pairs(1)
    target = Target()
    reader.add(theirs, target)
    mine.sendall(b"wake")
    until(lambda: target.data)
    ticks = reader.ticks
    gevent.sleep(0.3)
    assert reader.ticks == ticks  # nothing ready: blocked on the epoll, no ticks
    mine.sendall(b"again")
    until(lambda: bytes(target.data) == b"wakeagain")


def test_negative_interval_is_refused():
    with pytest.raises(ValueError):
        BatchReader(interval=-1)
