"""SIGKILL in the middle of delivery loses nothing: a child process enqueues and delivers to a slow
receiver, is killed while requests are in flight, and a fresh deliverer finishes the queue. Every job
arrives at least once, always under the same id, and the receiver can dedupe on it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter

import gevent
from cryptography.fernet import Fernet
from test_webhook_delivery import Receiver

from esl_controller.db.models import WebhookJob
from esl_controller.security.secrets_box import SecretBox
from esl_controller.webhooks.delivery import Deliverer, DeliverySettings

CHILD = r"""
from gevent import monkey
monkey.patch_all()
import sys
import gevent
from esl_controller import db
from esl_controller.security.secrets_box import SecretBox
from esl_controller.webhooks import outbox
from esl_controller.webhooks.delivery import Deliverer, DeliverySettings

db_url, key, url, calls, per_call = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
database = db.connect(db_url)
with database.connection_context():
    with database.atomic():
        for i in range(per_call):
            for c in range(calls):
                outbox.enqueue(
                    "status-update", {"message": {"type": "status-update", "call": c, "n": i}},
                    {"url": f"{url}/call-{c}", "source": "assistant"},
                    f"00000000-0000-4000-8000-{c:012d}",
                )
print("enqueued", flush=True)
settings = DeliverySettings(workers=3, poll_interval=0.05, lease_seconds=3.0, connect_timeout=1.0)
Deliverer(settings, SecretBox(key.encode())).start()
gevent.sleep(120)  # the parent kills us long before
"""


def test_kill_minus_nine_mid_delivery_loses_nothing(database, settings, tmp_path):
    receiver = Receiver(delay=0.4)
    key = Fernet.generate_key()
    calls, per_call = 4, 3
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, settings.database_url, key.decode(), receiver.url,
         str(calls), str(per_call)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=os.getcwd(),
    )  # fmt: skip
    try:
        with gevent.Timeout(30, AssertionError("child did not enqueue")):
            line = child.stdout.readline()
        assert line.strip() == b"enqueued", child.stderr.read().decode()[-2000:]
        # kill once some jobs were answered and others are in flight at the receiver
        receiver.wait_for(lambda reqs: len(reqs) >= 2, timeout=30)
        receiver.wait_for(lambda arr: len(arr) > len(receiver.requests), timeout=30, arrivals=True)
        answered = {s.job_id for s in receiver.requests}
        in_flight = {s.job_id for s in receiver.arrivals} - answered
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=10) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=10)
    assert in_flight

    with database.connection_context():
        job_ids = {j.id for j in WebhookJob.select(WebhookJob.id)}
    assert len(job_ids) == calls * per_call
    fast = DeliverySettings(workers=4, poll_interval=0.05, lease_seconds=3.0)
    deliverer = Deliverer(fast, SecretBox(key))
    deliverer.start()
    try:
        receiver.wait_for(lambda reqs: {s.job_id for s in reqs} >= job_ids, timeout=40)
        with database.connection_context():
            with gevent.Timeout(10, AssertionError("jobs not all recorded as delivered")):
                while WebhookJob.select().where(WebhookJob.status != "delivered").count():
                    deliverer._wake.wait(timeout=0.05)
    finally:
        deliverer.stop(5)
        receiver.stop()

    arrivals = Counter(s.job_id for s in receiver.arrivals)
    assert set(arrivals) == job_ids  # every job, under its own stable id
    assert all(arrivals[j] >= 2 for j in in_flight)  # what was in flight at the kill came again
    bodies: dict[str, set[bytes]] = {}
    for s in receiver.arrivals:
        bodies.setdefault(s.job_id, set()).add(s.body)
    assert all(len(b) == 1 for b in bodies.values())  # a duplicate is the same message
    # per call, first deliveries arrive in message order
    for c in range(calls):
        firsts: list[int] = []
        for s in receiver.arrivals:
            if s.path == f"/call-{c}" and s.message["n"] not in firsts:
                firsts.append(s.message["n"])
        assert firsts == list(range(per_call))
