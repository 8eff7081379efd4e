"""The after-call side of live calls, end to end: an inbound call from the fake FreeSWITCH through the
real controller, a scripted pipeline reporting what a conversation reports, durable webhook delivery to
a local receiver, pricing with the example rate card, a structured output from the scripted model in
JSON-schema mode, and the capture wiring (a fake capture manager, and a real one that fails)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import gevent
import gevent.event
import pytest
from cryptography.fernet import Fernet
from test_calls_support import WAIT
from test_webhook_delivery import FAST, receiver  # noqa: F401 (fixture)

from esl_controller.db.models import (
    Artifact,
    Assistant,
    Call,
    CallEvent,
    PhoneNumber,
    StructuredOutput,
    WebhookJob,
)
from esl_controller.pipeline.ports import PipelineNotice
from esl_controller.security.secrets_box import SecretBox
from esl_controller.webhooks.delivery import Deliverer
from esl_controller.webhooks.emit import Emitter

ORG = "00000000-0000-4000-8000-000000000000"
RATE_CARD = Path(__file__).resolve().parents[2] / "docs" / "rate-card.example.yaml"
BOOKING = {
    "type": "object",
    "properties": {"partySize": {"type": "integer", "minimum": 1}, "time": {"type": "string"}},
    "required": ["partySize"],
}
SCRIPT = [
    ("message", {"role": "bot", "message": "Hello, thanks for calling. How can I help?"}),
    ("speech", {"status": "started", "role": "user", "turn": 0}),
    ("transcript", {"role": "user", "transcriptType": "partial", "transcript": "A table"}),
    (
        "transcript",
        {"role": "user", "transcriptType": "final", "transcript": "A table for 2 people tonight."},
    ),
    ("message", {"role": "user", "message": "A table for 2 people tonight."}),
    (
        "usage",
        {
            "kind": "llm",
            "provider": "openai",
            "model": "gpt-4o-mini",
            "prompt_tokens": 1000,
            "completion_tokens": 500,
        },
    ),  # fmt: skip
    ("message", {"role": "bot", "message": "What time works for you?"}),
    ("transcript", {"role": "user", "transcriptType": "final", "transcript": "Seven thirty."}),
    ("message", {"role": "user", "message": "Seven thirty."}),
    ("message", {"role": "bot", "message": "Booked for two at seven thirty."}),
]


class ScriptedPipeline:
    """Reports, once started, the notices a conversation would (the real pipeline is tested elsewhere)."""

    def __init__(self, session) -> None:
        self.session = session
        self.done = gevent.event.Event()

    def start(self) -> None:
        self.session.notify(PipelineNotice("ready", {}))
        for kind, data in SCRIPT:
            self.session.notify(PipelineNotice(kind, dict(data)))
        self.done.set()

    def feed(self, pcm, at) -> None:
        pass

    def control(self, command) -> None:
        pass

    def stop(self, timeout: float = 5.0) -> None:
        pass


class FakeCapture:
    """The CaptureManager interface; writes a small pcap-looking file when stopped."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.started: list[tuple[str, dict]] = []
        self.stopped: list[str] = []

    def start(self, call_id, channel):
        from esl_controller.capture.manager import CaptureStatus

        self.started.append((call_id, dict(channel)))
        return CaptureStatus(call_id, "running", str(self.directory / f"{call_id}.pcap"))

    def stop(self, call_id, timeout=None):
        from esl_controller.capture.manager import CaptureStatus

        self.stopped.append(call_id)
        path = self.directory / f"{call_id}.pcap"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\xd4\xc3\xb2\xa1" + b"\0" * 20)
        return CaptureStatus(call_id, "sealed", str(path), "stopped", packets=3, bytes=24)

    def pcap_path(self, call_id):
        path = self.directory / f"{call_id}.pcap"
        return path if path.is_file() else None

    def stop_all(self, timeout=None) -> None:
        pass


class Rig:
    def __init__(self, settings, database, api_key, *, capture=None, **capture_settings):
        from api import create_app
        from esl_controller.controller import Controller
        from esl_controller.testing import FreeSwitchPeer

        self.peer = FreeSwitchPeer(password="ClueCon")
        self.peer.start()
        fs = dataclasses.replace(
            settings.freeswitch, enabled=True, port=self.peer.port, outbound_port=0, fork_port=0,
            command_timeout=1.0,
        )  # fmt: skip
        calls = dataclasses.replace(settings.calls, end_grace_seconds=0.5)
        observe = dataclasses.replace(settings.observe, rate_card_path=str(RATE_CARD))
        cap = dataclasses.replace(settings.capture, **capture_settings)
        self.settings = dataclasses.replace(
            settings, freeswitch=fs, calls=calls, observe=observe, capture=cap
        )
        if hasattr(settings, "media"):  # the media servers on ephemeral ports, no model warm-up
            media = dataclasses.replace(
                settings.media, webcall_port=0, listen_port=0, warm_stt=False
            )
            self.settings = dataclasses.replace(self.settings, media=media)
        self.database = database
        self.box = SecretBox(Fernet.generate_key())
        self.deliverer = Deliverer(FAST, self.box, node_id="n1")
        emitter = Emitter(self.settings.org_id, self.box, wake=self.deliverer.wake)
        self.pipelines: list[ScriptedPipeline] = []

        def factory(session):
            p = ScriptedPipeline(session)
            self.pipelines.append(p)
            return p

        self.controller = Controller(
            self.settings, pipeline_factory=factory, emitter=emitter, capture=capture,
            secret_box=self.box,
        )  # fmt: skip
        self.controller.start()
        self.app = create_app(self.settings)
        self.controller.install(self.app.extensions["esl_controller"])
        self.client = self.app.test_client()
        self.client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {api_key}"
        self.deliverer.start()
        assert self.controller.inbound.wait_connected(WAIT)
        assert self.controller.reconciled.wait(WAIT)

    def close(self) -> None:
        self.controller.stop(timeout=3)
        self.deliverer.stop(3)
        self.peer.stop()

    def number(self, *, server_url=None, server_messages=None, output=True, artifact_plan=None):
        """A phone number whose assistant reports to ``server_url`` (and one bound output)."""
        data = {
            "name": "Host",
            "model": {
                "provider": "custom-llm",
                "model": "scripted",
                "rules": [{"keywords": ["transcript"], "reply": "A booking call."}],
            },
        }
        if server_url:
            data["server"] = {"url": server_url, "timeoutSeconds": 2}
        if server_messages is not None:
            data["serverMessages"] = server_messages
        if artifact_plan is not None:
            data["artifactPlan"] = artifact_plan
        with self.database.connection_context():
            a = Assistant.create(org_id=ORG, name="Host", data=data)
            if output:
                StructuredOutput.create(
                    org_id=ORG,
                    name="booking",
                    data={"name": "booking", "type": "ai", "assistantIds": [a.id],
                          "schema": BOOKING},
                )  # fmt: skip
            PhoneNumber.create(
                org_id=ORG, provider="byo-phone-number", number="+15557654321", assistant=a,
                data={},
            )  # fmt: skip
        return a

    def call(self, variables=None):
        """An inbound call: answered, the pipeline's script stored, then the caller hangs up."""
        leg = self.peer.place_call(
            "127.0.0.1", self.controller.outbound.port, destination="15557654321",
            variables=variables,
        )  # fmt: skip
        session = self.controller.registry.wait_for(
            lambda: self.controller.registry.by_channel(leg.uuid), WAIT
        )
        assert session is not None
        assert session.wait_until(lambda s: s.status == "in-progress", WAIT)
        pipeline = self._wait(lambda: self.pipelines[-1] if self.pipelines else None)
        assert pipeline.done.wait(WAIT)
        # the notes are stored by the session's queue: wait until the last one is
        assert self._wait(lambda: self._messages(session.call_id) == 5)
        leg.hangup("NORMAL_CLEARING")
        assert session.wait(WAIT)
        assert self.controller.lifecycle.wait_idle(WAIT)
        return session.call_id

    def _messages(self, call_id):
        from esl_controller.db.models import CallMessage

        with self.database.connection_context():
            return CallMessage.select().where(CallMessage.call == call_id).count()

    def _wait(self, fn):
        with gevent.Timeout(WAIT, AssertionError("condition not met")):
            while True:
                value = fn()
                if value:
                    return value
                gevent.sleep(0.01)  # polling the database: no event to wait on

    def row(self, call_id):
        with self.database.connection_context():
            return Call.get_by_id(call_id)

    def jobs(self, call_id):
        with self.database.connection_context():
            return list(WebhookJob.select().where(WebhookJob.call_id == call_id))

    def events(self, call_id, kind):
        with self.database.connection_context():
            return list(
                CallEvent.select().where((CallEvent.call == call_id) & (CallEvent.kind == kind))
            )

    def wait_delivered(self, call_id):
        self._wait(
            lambda: (
                (jobs := self.jobs(call_id))
                and all(j.status in ("delivered", "failed", "skipped") for j in jobs)
            )
        )


@pytest.fixture
def rig(settings, database, api_key):
    made = []

    def make(**kwargs):
        r = Rig(settings, database, api_key, **kwargs)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def _types(requests):
    return [s.message["type"] for s in requests]


MESSAGES = ["status-update", "transcript", "end-of-call-report", "conversation-update"]


def test_call_reports_status_transcripts_and_one_end_of_call_report(rig, receiver):  # noqa: F811
    r = rig()
    hook = receiver()
    r.number(server_url=hook.url + "/hook", server_messages=MESSAGES)
    call_id = r.call()
    hook.wait_for(lambda reqs: "end-of-call-report" in _types(reqs), WAIT)
    r.wait_delivered(call_id)
    mine = [s for s in hook.requests if s.message.get("call", {}).get("id") == call_id]
    types = _types(mine)
    assert set(types) <= set(MESSAGES)
    assert types.count("end-of-call-report") == 1
    assert types[-1] == "end-of-call-report"
    statuses = [s.message["status"] for s in mine if s.message["type"] == "status-update"]
    assert statuses[0] == "queued" and statuses[-1] == "ended"
    assert "in-progress" in statuses
    assert statuses.index("in-progress") < statuses.index("ended")
    ended = [s.message for s in mine if s.message.get("status") == "ended"][0]
    assert ended["endedReason"] == "customer-ended-call"
    # transcripts: the user's partial and finals, and the assistant's spoken messages
    tr = [(s.message["role"], s.message["transcriptType"], s.message["transcript"])
          for s in mine if s.message["type"] == "transcript"]  # fmt: skip
    assert ("user", "partial", "A table") in tr
    assert ("user", "final", "A table for 2 people tonight.") in tr
    assert ("assistant", "final", "What time works for you?") in tr
    updates = [s.message for s in mine if s.message["type"] == "conversation-update"]
    assert [len(u["messages"]) for u in updates] == [1, 2, 3, 4, 5]
    report = [s.message for s in mine if s.message["type"] == "end-of-call-report"][0]
    assert report["endedReason"] == "customer-ended-call"
    assert "User: A table for 2 people tonight." in report["transcript"]
    assert "AI: Booked for two at seven thirty." in report["artifact"]["transcript"]
    assert len(report["messages"]) == 5
    # costs with the example card: gpt-4o-mini 1000 prompt + 500 completion tokens = 0.00045 USD
    model = [c for c in report["costs"] if c["type"] == "model"]
    assert len(model) == 1 and abs(model[0]["cost"] - 0.00045) < 1e-9
    assert report["costBreakdown"]["llmPromptTokens"] == 1000
    assert {c["type"] for c in report["costs"]} >= {"transport", "model", "vapi"}
    assert "cost" in report
    # the bound structured output, extracted by the scripted model in JSON-schema mode
    outputs = report["artifact"]["structuredOutputs"]
    (result,) = outputs.values()
    assert result["name"] == "booking" and result["result"]["partySize"] == 2
    # the server messages not asked for were not sent
    assert "speech-update" not in types
    row = r.row(call_id)
    assert row.data["artifact"]["structuredOutputs"] == outputs
    (ev,) = r.events(call_id, "webhook.end-of-call-report")
    assert ev.data == {"jobs": 1}


def test_receiver_failing_twice_still_gets_everything(rig, receiver):  # noqa: F811
    r = rig()

    def flaky(seen, n):
        return (500, [], b"down") if n <= 2 else (200, [], b"ok")

    hook = receiver(script=flaky)
    r.number(
        server_url=hook.url + "/flaky",
        server_messages=["status-update", "end-of-call-report"],
        output=False,
    )
    call_id = r.call()
    hook.wait_for(lambda reqs: "end-of-call-report" in _types(reqs[2:]), WAIT)
    r.wait_delivered(call_id)
    # the first message was answered 500 twice, then delivered: the same job three times
    first = hook.requests[:3]
    assert _types(first) == ["status-update"] * 3
    assert len({s.job_id for s in first}) == 1
    ok = hook.requests[2:]
    types = _types(ok)
    assert types.count("end-of-call-report") == 1 and types[-1] == "end-of-call-report"
    statuses = [s.message["status"] for s in ok if s.message["type"] == "status-update"]
    assert statuses[0] == "queued" and statuses[-1] == "ended" and "in-progress" in statuses
    assert all(j.status == "delivered" for j in r.jobs(call_id))
    # the job of the first message needed three attempts
    assert max(j.attempts for j in r.jobs(call_id)) == 3


def test_call_without_server_or_endpoints_queues_nothing(rig):
    r = rig()
    r.number(output=False)
    call_id = r.call()
    assert r.row(call_id).status == "ended"
    assert r.jobs(call_id) == []
    (ev,) = r.events(call_id, "webhook.end-of-call-report")
    assert ev.data == {"jobs": 0}
    # the call was still priced
    assert r.row(call_id).data["costs"]


def test_capture_wiring_with_a_fake_manager(rig, receiver, tmp_path):  # noqa: F811
    cap = FakeCapture(tmp_path / "pcap")
    r = rig(capture=cap)
    hook = receiver()
    r.number(
        server_url=hook.url + "/hook",
        server_messages=["end-of-call-report"],
        output=False,
        artifact_plan={"pcapEnabled": True},
    )
    call_id = r.call(variables={"sip_call_id": "abc123@127.0.0.1"})
    assert [c for c, _ in cap.started] == [call_id]
    channel = cap.started[0][1]
    assert channel.get("variable_sip_call_id") == "abc123@127.0.0.1"
    assert cap.stopped == [call_id]
    row = r.row(call_id)
    assert row.data["artifact"]["pcapUrl"].endswith(f"/call/{call_id}/pcap")
    with r.database.connection_context():
        art = Artifact.get((Artifact.call == call_id) & (Artifact.kind == "pcap"))
    assert art.status == "sealed" and art.bytes == 24
    states = [e.data["state"] for e in r.events(call_id, "capture")]
    assert states == ["running", "sealed"]
    hook.wait_for(lambda reqs: "end-of-call-report" in _types(reqs), WAIT)
    report = hook.requests[-1].message
    assert report["artifact"]["pcapUrl"] == row.data["artifact"]["pcapUrl"]
    resp = r.client.get(f"/call/{call_id}/pcap")
    assert resp.status_code == 200 and resp.data.startswith(b"\xd4\xc3\xb2\xa1")


def test_capture_not_wanted_is_not_started(rig, tmp_path):
    cap = FakeCapture(tmp_path / "pcap")
    r = rig(capture=cap)
    r.number(output=False)  # no pcapEnabled, capture.enabled false
    call_id = r.call()
    assert cap.started == [] and "pcapUrl" not in (r.row(call_id).data.get("artifact") or {})


def test_real_capture_manager_failure_reason_lands_on_the_call(rig):
    # the controller builds a real CaptureManager, which refuses to start: no disk to spare
    r = rig(enabled=True, min_free_bytes=10**18)
    r.number(output=False)
    call_id = r.call()
    row = r.row(call_id)
    error = row.data["artifact"]["pcapError"]
    assert error.startswith("low disk space (")
    (ev,) = r.events(call_id, "capture")
    assert ev.data["state"] == "failed" and ev.data["reason"] == error and ev.level == "WARNING"
    assert r.client.get(f"/call/{call_id}/pcap").status_code == 404
    body = r.client.get(f"/call/{call_id}").get_json()
    assert body["artifact"]["pcapError"] == error
    assert json.dumps(body)  # the call is still readable as a whole


class StuckModel:
    """A model that never answers (until the after-call work gives up on it)."""

    name = "stuck"
    model = "stuck-1"

    def __init__(self) -> None:
        self.asked = gevent.event.Event()

    def stream(self, request, *, timeout):
        self.asked.set()
        gevent.event.Event().wait()  # never set: killed by the lifecycle's timeout
        yield from ()


def test_report_still_sent_when_outputs_do_not_finish(rig, receiver):  # noqa: F811
    r = rig()
    stuck = StuckModel()
    r.controller.lifecycle.model_factory = lambda config: stuck
    r.controller.lifecycle.report_timeout = 1.0
    hook = receiver()
    r.number(server_url=hook.url + "/hook", server_messages=["end-of-call-report"])
    call_id = r.call()
    assert stuck.asked.is_set()
    hook.wait_for(lambda reqs: "end-of-call-report" in _types(reqs), WAIT)
    r.wait_delivered(call_id)
    reports = [s.message for s in hook.requests if s.message["type"] == "end-of-call-report"]
    assert len(reports) == 1
    assert "structuredOutputs" not in reports[0]["artifact"]
    assert len(reports[0]["messages"]) == 5
    (ev,) = r.events(call_id, "webhook.end-of-call-report")
    assert ev.level == "WARNING" and "not done in time" in ev.data["partial"]
    (late,) = r.events(call_id, "after-call")
    assert "structured outputs not done" in late.data["error"]
