"""Durable webhook delivery against real local receivers, on SQLite and PostgreSQL.

``Receiver`` is a gevent WSGI server on an ephemeral loopback port whose answers are scripted per path;
tests wait on its request count (with timeouts), never on sleeps. Other webhook test modules import it.
"""

from __future__ import annotations

import json
import socket
import struct
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field

import gevent
import gevent.event
import pytest
from cryptography.fernet import Fernet
from gevent.pywsgi import WSGIServer
from gevent.server import StreamServer

from esl_controller.db import database as db_proxy
from esl_controller.db.models import Credential, WebhookAttempt, WebhookEndpoint, WebhookJob
from esl_controller.security.secrets_box import SecretBox
from esl_controller.webhooks import outbox, queue
from esl_controller.webhooks.delivery import Deliverer, DeliverySettings, HttpClient
from esl_controller.webhooks.signing import HmacAuth, SecretHeaderAuth, verify

ORG = "00000000-0000-4000-8000-000000000000"
BOX = SecretBox(Fernet.generate_key())


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def message(self) -> dict:
        return json.loads(self.body)["message"]

    @property
    def job_id(self) -> str:
        return self.headers["X-Esl-Webhook-Id"]


@dataclass
class Receiver:
    """Answers with ``script(seen, n_for_path) -> (status, headers, body)``; default 200 ``ok``."""

    script: Callable[[Seen, int], tuple[int, list, bytes]] | None = None
    delay: float = 0.0
    requests: list[Seen] = field(default_factory=list)
    #: requests as they arrive, before the delay and the answer
    arrivals: list[Seen] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._changed = gevent.event.Event()
        self._per_path: dict[str, int] = {}
        self.server = WSGIServer(("127.0.0.1", 0), self._app, log=None, error_log=None)
        self.server.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def stop(self) -> None:
        self.server.stop(timeout=1)

    def _app(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length)
        headers = {
            k[5:].replace("_", "-").title(): v for k, v in environ.items() if k.startswith("HTTP_")
        }
        headers["Content-Type"] = environ.get("CONTENT_TYPE", "")
        seen = Seen(environ["PATH_INFO"], headers, body)
        n = self._per_path.get(seen.path, 0) + 1
        self._per_path[seen.path] = n
        self.arrivals.append(seen)
        self._changed.set()
        if self.delay:
            gevent.sleep(self.delay)  # the receiver is slow (what is being tested), not a test wait
        status, extra, out = self.script(seen, n) if self.script else (200, [], b"ok")
        self.requests.append(seen)
        self._changed.set()
        start_response(f"{status} X", [("Content-Length", str(len(out))), *extra])
        return [out]

    def wait_for(
        self, predicate: Callable[[list[Seen]], bool], timeout: float = 10.0, arrivals: bool = False
    ) -> None:
        """Wait until ``predicate(requests answered)`` (or of requests arrived) holds."""
        with gevent.Timeout(timeout, AssertionError(f"receiver: condition not met in {timeout} s")):
            while not predicate(self.arrivals if arrivals else self.requests):
                self._changed.clear()
                self._changed.wait()


@pytest.fixture
def receiver():
    made: list[Receiver] = []

    def make(**kwargs) -> Receiver:
        r = Receiver(**kwargs)
        made.append(r)
        return r

    yield make
    for r in made:
        r.stop()


FAST = DeliverySettings(
    workers=4, poll_interval=0.05, backoff_base=0.02, backoff_cap=0.1, lease_seconds=30.0
)


def enqueue(url: str, n: int = 1, call_id: str | None = "call-1", **kwargs) -> list[WebhookJob]:
    target = kwargs.pop("target", None) or {"url": url, "source": "assistant"}
    with db_proxy.atomic():
        return [
            outbox.enqueue(
                "status-update",
                {"message": {"type": "status-update", "n": i}},
                target,
                call_id,
                box=BOX,
                **kwargs,
            )
            for i in range(n)
        ]


def job(job_id: str) -> WebhookJob:
    return WebhookJob.get_by_id(job_id)


def attempts(job_id: str) -> list[WebhookAttempt]:
    return list(
        WebhookAttempt.select().where(WebhookAttempt.job == job_id).order_by(WebhookAttempt.number)
    )


def run_until(deliverer: Deliverer, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    """Run the background deliverer until ``predicate`` holds (checked after each recorded batch)."""
    with gevent.Timeout(timeout, AssertionError("deliverer: condition not met in time")):
        while not predicate():
            deliverer._wake.wait(timeout=0.05)


# ------------------------------------------------------------------------------------------ outbox


def test_enqueue_needs_the_callers_transaction(database):
    with database.connection_context():
        with pytest.raises(RuntimeError, match="inside the transaction"):
            outbox.enqueue("hang", {}, {"url": "http://127.0.0.1:9/x"})


def test_seq_grows_per_ordering_key_and_secrets_are_sealed(database):
    with database.connection_context():
        a = enqueue(
            "http://127.0.0.1:9/a",
            3,
            target={"url": "http://127.0.0.1:9/a", "secret": "s3cr3t-value"},
        )
        b = enqueue("http://127.0.0.1:9/b", 2)
        other_call = enqueue("http://127.0.0.1:9/a", 1, call_id="call-2")
        loose = enqueue("http://127.0.0.1:9/a", 2, call_id=None)
        assert [j.seq for j in a] == [1, 2, 3]
        assert [j.seq for j in b] == [1, 2]
        assert other_call[0].seq == 1 and other_call[0].ordering_key != a[0].ordering_key
        assert loose[0].ordering_key != loose[1].ordering_key
        raw = database.execute_sql(
            f"SELECT target FROM webhook_job WHERE id = {database.param}", (a[0].id,)
        ).fetchone()[0]
        assert "s3cr3t-value" not in raw and "secretSealed" in raw
        with pytest.raises(ValueError, match="box"):
            with database.atomic():
                outbox.enqueue("hang", {}, {"url": "http://x.test/", "secret": "clear"})


def test_claim_respects_order_and_leases(database):
    with database.connection_context():
        a, b = enqueue("http://127.0.0.1:9/a", 2)
        (c,) = enqueue("http://127.0.0.1:9/a", 1, call_id="call-2")
        first = queue.claim("w1", 10, 30.0)
        assert sorted(j.id for j in first) == sorted([a.id, c.id])  # b waits behind a
        assert queue.claim("w2", 10, 30.0) == []  # leased, and b still blocked
        # a crashed worker: its lease expires and the job can be claimed again
        from datetime import timedelta

        from esl_controller.db.fields import utcnow

        later = utcnow() + timedelta(seconds=31)
        again = queue.claim("w2", 10, 30.0, now=later)
        assert sorted(j.id for j in again) == sorted([a.id, c.id])
        assert job(a.id).attempts == 2 and job(a.id).locked_by == "w2"
        # the old worker's late result does not move the job; the new owner's does
        res = queue.AttemptResult(a.id, 1, "http://127.0.0.1:9/a", status_code=200)
        assert queue.record([res], "w1", backoff_base=1, backoff_cap=1) == {}
        assert job(a.id).status == "delivering"
        res2 = queue.AttemptResult(a.id, 2, "http://127.0.0.1:9/a", status_code=200)
        assert queue.record([res2], "w2", backoff_base=1, backoff_cap=1) == {a.id: "delivered"}
        assert len(attempts(a.id)) == 2
        assert [j.id for j in queue.claim("w3", 10, 30.0, now=later)] == [b.id]


def test_concurrent_claims_never_share_a_job(database):
    with database.connection_context():
        jobs = []
        for i in range(40):
            jobs += enqueue("http://127.0.0.1:9/a", 1, call_id=f"call-{i}")
    got: dict[str, list[str]] = {}

    def worker(name: str) -> None:
        with database.connection_context():
            while True:
                batch = queue.claim(name, 3, 30.0)
                if not batch:
                    return
                got.setdefault(name, []).extend(j.id for j in batch)
                gevent.sleep(0)

    gevent.joinall([gevent.spawn(worker, f"w{i}") for i in range(4)], timeout=20, raise_error=True)
    claimed = [i for ids in got.values() for i in ids]
    assert len(claimed) == 40 and len(set(claimed)) == 40


# ---------------------------------------------------------------------------------------- delivery


def test_fails_twice_then_succeeds_with_a_stable_id(database, receiver):
    r = receiver(script=lambda seen, n: (500, [], b"boom") if n <= 2 else (200, [], b"thanks"))
    with database.connection_context():
        (j,) = enqueue(r.url + "/hook", 1)
    d = Deliverer(FAST, BOX)
    d.start()
    try:
        r.wait_for(lambda reqs: len(reqs) >= 3)
        with database.connection_context():
            run_until(d, lambda: job(j.id).status == "delivered")
    finally:
        d.stop(5)
    assert {s.job_id for s in r.requests} == {j.id}
    assert [s.headers["X-Esl-Webhook-Attempt"] for s in r.requests] == ["1", "2", "3"]
    with database.connection_context():
        done = job(j.id)
        rows = attempts(j.id)
    assert done.attempts == 3 and done.delivered_at is not None and done.locked_by is None
    assert [a.status_code for a in rows] == [500, 500, 200]
    assert rows[0].response_excerpt == "boom" and rows[2].response_excerpt == "thanks"
    assert all(a.latency_ms is not None and a.latency_ms >= 0 for a in rows)


def test_signature_round_trip_and_masked_headers(database, receiver):
    plan = {"type": "hmac", "secretKey": "k3y-for-hmac-1234", "messageIdHeader": "x-message-id"}
    r = receiver()
    with database.connection_context():
        cred = Credential.create(
            org_id=ORG,
            provider="webhook",
            data={"provider": "webhook", "authenticationPlan": {"type": "hmac"}},
            secret_blob=BOX.seal(
                {
                    "authenticationPlan": {
                        "secretKey": plan["secretKey"],
                        "messageIdHeader": "x-message-id",
                    },
                    "headers": {"X-Custom-Key": "hdr-secret"},
                }  # fmt: skip
            ),
            redacted={},
        )
        target = {"url": r.url + "/signed", "secret": "legacy-secret-value", "credentialId": cred.id, "headers": {"X-Plain": "1"}}  # fmt: skip
        (j,) = enqueue(r.url, 1, target=target)
        assert Deliverer(FAST, BOX).run_once() == 1
        (row,) = attempts(j.id)
    (seen,) = r.requests
    hmac_auth = HmacAuth(secret_key=plan["secretKey"], message_id_header="x-message-id")
    assert verify(hmac_auth, headers=seen.headers, body=seen.body).ok
    assert verify(SecretHeaderAuth("legacy-secret-value"), headers=seen.headers, body=seen.body).ok
    tampered = seen.body.replace(b"status-update", b"status-updatX")
    assert not verify(hmac_auth, headers=seen.headers, body=tampered).ok
    assert seen.headers["X-Message-Id"] == j.id and seen.headers["X-Plain"] == "1"
    assert seen.headers["X-Custom-Key"] == "hdr-secret"
    assert row.status_code == 200
    stored = json.dumps(row.request_headers)
    assert "legacy-secret-value" not in stored and "hdr-secret" not in stored
    assert row.request_headers["X-Vapi-Secret"] == "***"
    assert row.request_headers["X-Custom-Key"] == "***"
    assert row.request_headers["x-signature"] == seen.headers["X-Signature"]


def test_order_per_call_is_kept_under_retries(database, receiver):
    refused: dict[str, int] = {}

    def script(seen, n):
        if seen.job_id == jobs[1].id and refused.get(seen.job_id, 0) < 2:
            refused[seen.job_id] = refused.get(seen.job_id, 0) + 1
            return 503, [], b"later"
        return 200, [], b"ok"

    r = receiver(script=script)
    with database.connection_context():
        jobs = enqueue(r.url + "/ordered", 5)
        others = enqueue(r.url + "/ordered", 3, call_id="call-other")
    d = Deliverer(FAST, BOX)
    d.start()
    try:
        r.wait_for(
            lambda reqs: sum(1 for s in reqs if s.headers["X-Esl-Webhook-Id"] == jobs[-1].id) >= 1
        )
        r.wait_for(lambda reqs: len({s.job_id for s in reqs}) == 8)
    finally:
        d.stop(5)
    mine = [s for s in r.requests if s.job_id in {j.id for j in jobs}]
    ns = [s.message["n"] for s in mine]
    assert ns == [0, 1, 1, 1, 2, 3, 4]  # two refusals of message 1, nothing overtook it
    assert len([s for s in r.requests if s.job_id in {j.id for j in others}]) == 3


def test_410_skips_and_endpoint_state_skips_without_sending(database, receiver):
    r = receiver(
        script=lambda seen, n: (410, [], b"gone") if seen.path == "/gone" else (200, [], b"")
    )
    with database.connection_context():
        (gone,) = enqueue(r.url + "/gone", 1)
        off = WebhookEndpoint.create(org_id=ORG, url=r.url + "/off", scope="account", enabled=False)
        deleted = WebhookEndpoint.create(org_id=ORG, url=r.url + "/del", scope="account")
        (j_off,) = enqueue(
            "", 1, call_id="c2", target={"url": off.url, "source": "endpoint", "endpointId": off.id}
        )
        (j_del,) = enqueue(
            "",
            1,
            call_id="c3",
            target={"url": deleted.url, "source": "endpoint", "endpointId": deleted.id},
        )
        deleted.delete_instance()
        assert Deliverer(FAST, BOX).run_once() == 3
        assert job(gone.id).status == "skipped" and attempts(gone.id)[0].status_code == 410
        assert job(j_off.id).status == "skipped" and "disabled" in job(j_off.id).last_error
        assert job(j_del.id).status == "skipped" and "deleted" in job(j_del.id).last_error
    assert [s.path for s in r.requests] == ["/gone"]


def test_timeout_then_failed_after_max_attempts(database, receiver):
    r = receiver(delay=5.0)
    with database.connection_context():
        (j,) = enqueue(
            "", 1, target={"url": r.url + "/slow", "timeoutSeconds": 0.3}, max_attempts=1
        )
        assert Deliverer(FAST, BOX).run_once() == 1
        (row,) = attempts(j.id)
        assert row.status_code is None and "timed out" in row.error
        assert job(j.id).status == "failed" and job(j.id).last_error == row.error


def _reset_server():
    def handle(sock, _addr):
        sock.recv(65536)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # RST

    server = StreamServer(("127.0.0.1", 0), handle)
    server.start()
    return server


def test_connection_reset_is_retried(database):
    server = _reset_server()
    try:
        with database.connection_context():
            (j,) = enqueue(f"http://127.0.0.1:{server.server_port}/x", 1)
            Deliverer(FAST, BOX).run_once()
            (row,) = attempts(j.id)
            assert row.status_code is None
            assert "reset" in row.error or "closed" in row.error
            assert job(j.id).status == "pending" and job(j.id).next_attempt_at is not None
    finally:
        server.stop()


def _big_body_server(total: int):
    chunk = b"x" * 65536

    def handle(sock, _addr):
        sock.recv(65536)
        try:
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % total)
            for _ in range(total // len(chunk)):
                sock.sendall(chunk)
        except OSError:
            pass  # the client hung up after its excerpt: expected
        finally:
            sock.close()

    server = StreamServer(("127.0.0.1", 0), handle)
    server.start()
    return server


def test_five_megabyte_answer_is_cut_to_an_excerpt(database):
    server = _big_body_server(5 * 1024 * 1024)
    try:
        client = HttpClient(FAST)
        tracemalloc.start()
        try:
            res = client.post(f"http://127.0.0.1:{server.server_port}/big", b"{}", {}, 10.0)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            client.close()
        assert res.status_code == 200 and res.error is None
        assert len(res.excerpt) == 2048
        assert peak < 1024 * 1024
        with database.connection_context():
            (j,) = enqueue(f"http://127.0.0.1:{server.server_port}/big", 1)
            Deliverer(FAST, BOX).run_once()
            assert job(j.id).status == "delivered"
            assert len(attempts(j.id)[0].response_excerpt) == 2048
    finally:
        server.stop()


def test_redirects_followed_by_hand_loops_and_policy(database, receiver):
    def script(seen, n):
        hops = {"/a": "/b", "/b": "/a", "/r": "/ok", "/meta": "http://169.254.169.254/latest"}
        if seen.path in hops:
            return 307, [("Location", hops[seen.path])], b""
        return 200, [], b"landed"

    r = receiver(script=script)
    with database.connection_context():
        (loop,) = enqueue(r.url + "/a", 1, call_id="c1")
        (ok,) = enqueue(r.url + "/r", 1, call_id="c2")
        (meta,) = enqueue(r.url + "/meta", 1, call_id="c3")
        Deliverer(FAST, BOX).run_once()
        assert "redirect loop" in attempts(loop.id)[0].error and job(loop.id).status == "pending"
        assert job(ok.id).status == "delivered" and attempts(ok.id)[0].response_excerpt == "landed"
        assert "URL refused" in attempts(meta.id)[0].error and job(meta.id).status == "failed"
    assert [s.path for s in r.requests].count(
        "/a"
    ) == 1  # the loop was detected, not run to the cap
    assert all(s.body == r.requests[0].body or s.path != "/ok" for s in r.requests)


def test_database_outage_is_survived(database, receiver, monkeypatch):
    from peewee import OperationalError

    r = receiver()
    with database.connection_context():
        (j,) = enqueue(r.url + "/h", 1)
    real_claim, real_record = queue.claim, queue.record
    failures = {"claim": 2, "record": 2}

    def flaky_claim(*a, **k):
        if failures["claim"]:
            failures["claim"] -= 1
            raise OperationalError("database is restarting")
        return real_claim(*a, **k)

    def flaky_record(*a, **k):
        if failures["record"]:
            failures["record"] -= 1
            raise OperationalError("database is restarting")
        return real_record(*a, **k)

    monkeypatch.setattr(queue, "claim", flaky_claim)
    monkeypatch.setattr(queue, "record", flaky_record)
    d = Deliverer(FAST, BOX)
    d.start()
    try:
        r.wait_for(lambda reqs: len(reqs) >= 1)
        with database.connection_context():
            run_until(d, lambda: job(j.id).status == "delivered", timeout=15)
    finally:
        d.stop(5)
    assert d.stats["db_errors"] == 4 and len(r.requests) == 1
