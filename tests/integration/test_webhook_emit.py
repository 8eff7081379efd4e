"""Emitting a call's server messages: targets from the assistant's server, its serverMessages and the
webhook endpoints; one durable job per target; a legacy secret reaches the receiver as X-Vapi-Secret."""

import json

import gevent.event
import pytest
from gevent.pywsgi import WSGIServer

from esl_controller.db.base import database as db_proxy
from esl_controller.db.fields import utcnow
from esl_controller.db.models import Assistant, Call, CallMessage, WebhookEndpoint, WebhookJob
from esl_controller.security.secrets_box import SecretBox
from esl_controller.webhooks.delivery import Deliverer, DeliverySettings
from esl_controller.webhooks.emit import Emitter

BOX = SecretBox(b"q3v0cUxRZ3l0c1NqQWJrR2hZa0lUZjRQaW8yVjFwUU8=")
ORG = "00000000-0000-4000-8000-000000000000"


class Sink:
    def __init__(self):
        self.got: list[tuple[str, dict, dict]] = []
        self.event = gevent.event.Event()
        self.server = WSGIServer(("127.0.0.1", 0), self.app, log=None, error_log=None)
        self.server.start()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.server.server_port}"

    def app(self, environ, start_response):
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        headers = {
            k[5:].replace("_", "-").lower(): v for k, v in environ.items() if k.startswith("HTTP_")
        }
        self.got.append((environ["PATH_INFO"], headers, json.loads(body)))
        self.event.set()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]


@pytest.fixture
def sink():
    s = Sink()
    yield s
    s.server.stop(timeout=1)


def make_call(assistant_id, status="in-progress", ended_reason=None):
    now = utcnow()
    return Call.create(
        org_id=ORG,
        type="inboundPhoneCall",
        status=status,
        ended_reason=ended_reason,
        assistant_id=assistant_id,
        started_at=now,
        ended_at=now if status == "ended" else None,
        data={"customer": {"number": "+14155550100"}},
    )


def test_targets_filters_and_secret(database, sink):
    with database.connection_context():
        sealed = BOX.seal({"secret": "legacy-shh-123456", "hint": "****3456"})
        assistant = Assistant.create(
            org_id=ORG,
            name="a",
            data={
                "name": "a",
                "serverMessages": ["status-update", "end-of-call-report"],
                "server": {"url": sink.url + "/assistant", "secretSealed": sealed},
            },
        )
        WebhookEndpoint.create(
            org_id=ORG,
            url=sink.url + "/all",
            scope="account",
            enabled=True,
            data={"events": ["end-of-call-report"]},
        )
        WebhookEndpoint.create(
            org_id=ORG, url=sink.url + "/off", scope="account", enabled=False, data={}
        )
        call = make_call(assistant.id)
        emitter = Emitter(ORG, BOX)
        assert emitter.status_update(call) == 1  # the endpoint only wants end-of-call-report
        assert emitter.transcript(call, "user", "final", "hello") == 0  # not in serverMessages
        call.status, call.ended_reason, call.ended_at = "ended", "customer-ended-call", utcnow()
        call.save()
        with db_proxy.atomic():
            CallMessage.create(call=call.id, seq=0, role="user", message="hello there")
            CallMessage.create(call=call.id, seq=1, role="bot", message="hi, how can I help?")
        assert emitter.end_of_call_report(call) == 2
        jobs = list(WebhookJob.select().order_by(WebhookJob.created_at))
        assert [j.message_type for j in jobs] == [
            "status-update",
            "end-of-call-report",
            "end-of-call-report",
        ]
        assert all("legacy-shh" not in json.dumps(j.target) for j in jobs)
        report = jobs[1].payload["message"]
        assert report["endedReason"] == "customer-ended-call"
        assert "User: hello there" in report["artifact"]["transcript"]
        assert report["call"]["id"] == call.id and report["assistant"]["id"] == assistant.id
        assert "secretSealed" not in json.dumps(report)

        deliverer = Deliverer(DeliverySettings(workers=2, poll_interval=0.05), BOX)
        for _ in range(20):
            if deliverer.run_once() == 0 and len(sink.got) >= 3:
                break
    paths = sorted(p for p, _, _ in sink.got)
    assert paths == ["/all", "/assistant", "/assistant"]
    for path, headers, _body in sink.got:
        assert headers.get("x-esl-webhook-id")
        if path == "/assistant":
            assert headers.get("x-vapi-secret") == "legacy-shh-123456"
        else:
            assert "x-vapi-secret" not in headers
    assert {b["message"]["type"] for _, _, b in sink.got} == {"status-update", "end-of-call-report"}


def test_rollback_drops_the_jobs(database, sink):
    with database.connection_context():
        assistant = Assistant.create(org_id=ORG, name="a", data={"server": {"url": sink.url}})
        call = make_call(assistant.id)
        with pytest.raises(RuntimeError):
            with db_proxy.atomic():
                Emitter(ORG, BOX).status_update(call)
                raise RuntimeError("the change failed")
        assert WebhookJob.select().count() == 0
