"""The structured-output runner against the database (SQLite and PostgreSQL) with fake and scripted models."""

from __future__ import annotations

import json
import uuid

import pytest
from gevent.event import Event

from esl_controller.calls import persist
from esl_controller.db.models import (
    Assistant,
    Call,
    CallEvent,
    StructuredOutput,
    StructuredOutputRun,
)
from esl_controller.observe import structured
from esl_controller.pipeline.providers.base import ChatRequest, ModelDone, ProviderError, TextDelta

BOOKING = {
    "type": "object",
    "properties": {
        "partySize": {"type": "integer", "minimum": 1},
        "time": {"type": "string"},
    },
    "required": ["partySize", "time"],
}
TALK = [
    ("bot", "Hello, thanks for calling. How can I help?"),
    ("user", "Hello, I would like to book a table for two people tonight."),
    ("bot", "Of course. What time works for you?"),
    ("user", "Yes, seven thirty works for me."),
]


class FakeModel:
    """Answers each request with the next scripted reply (the last one repeats); records requests."""

    name = "fake"
    model = "fake-1"

    def __init__(self, replies):
        self.replies = list(replies)
        self.requests: list[ChatRequest] = []
        self.configs = []

    def stream(self, request, *, timeout):
        self.requests.append(request)
        reply = self.replies[min(len(self.requests), len(self.replies)) - 1]
        if isinstance(reply, Exception):
            raise reply
        yield TextDelta(reply[: len(reply) // 2])
        yield TextDelta(reply[len(reply) // 2 :])
        yield ModelDone("stop")

    def factory(self, config):
        self.configs.append(config)
        return self


def seed(settings, *, status="ended", assistant_data=None, outputs=(), talk=TALK):
    """An assistant, structured outputs bound to it and an ended call with its messages."""
    aid = str(uuid.uuid4())
    Assistant.create(id=aid, org_id=settings.org_id, name="Host", data=assistant_data or {})
    out_ids = []
    for name, data in outputs:
        row = StructuredOutput.create(
            org_id=settings.org_id,
            name=name,
            data={"name": name, "type": "ai", "assistantIds": [aid], **data},
        )
        out_ids.append(row.id)
    call = persist.create_call(
        persist.NewCall(type="webCall", org_id=settings.org_id, node_id="n1", assistant_id=aid)
    )
    for role, text in talk:
        persist.add_message(call.id, {"role": role, "message": text})
    Call.update(status=status).where(Call.id == call.id).execute()
    return aid, call.id, out_ids


@pytest.fixture
def db(database):
    with database.connection_context():
        yield database


def reload(call_id):
    return Call.get_by_id(call_id)


def test_valid_json_is_stored_on_the_call(settings, db):
    _, call_id, (oid,) = seed(
        settings,
        outputs=[("booking", {"schema": BOOKING, "description": "The booking asked for."})],
    )
    model = FakeModel([json.dumps({"partySize": 2, "time": "19:30"})])
    runs = structured.run_structured_outputs(call_id, model.factory, retry_delay=0)
    assert [(r.status, r.attempts, r.result, r.error) for r in runs] == [
        ("done", 1, {"partySize": 2, "time": "19:30"}, None)
    ]
    stored = StructuredOutputRun.get_by_id(runs[0].id)
    assert stored.status == "done" and stored.finished_at is not None
    assert reload(call_id).data["artifact"]["structuredOutputs"] == {
        oid: {"name": "booking", "result": {"partySize": 2, "time": "19:30"}}
    }
    (request,) = model.requests
    assert request.json_schema["properties"] == BOOKING["properties"]
    assert request.messages[0]["role"] == "system"
    assert "The booking asked for." in request.messages[0]["content"]
    assert [m["content"] for m in request.messages[1:]] == [t for _, t in TALK]
    kinds = [e.kind for e in CallEvent.select().where(CallEvent.call == call_id)]
    assert "structured-output" in kinds


def test_invalid_against_schema_is_retried_then_failed(settings, db):
    _, call_id, (oid,) = seed(settings, outputs=[("booking", {"schema": BOOKING})])
    model = FakeModel([json.dumps({"partySize": "two", "time": "19:30"})])
    (run,) = structured.run_structured_outputs(
        call_id, model.factory, max_attempts=3, retry_delay=0
    )
    assert run.status == "failed" and run.attempts == 3 and len(model.requests) == 3
    assert "partySize" in run.error and "is not of type 'integer'" in run.error
    row = StructuredOutputRun.get_by_id(run.id)
    assert (row.status, row.attempts, row.result) == ("failed", 3, None)
    assert row.error == run.error
    assert "structuredOutputs" not in (reload(call_id).data.get("artifact") or {})
    event = (
        CallEvent.select()
        .where((CallEvent.call == call_id) & (CallEvent.kind == "structured-output"))
        .get()
    )
    assert event.level == "WARNING" and event.data["status"] == "failed"
    assert event.data["error"] == run.error


def test_retry_recovers_from_bad_json_and_provider_errors(settings, db):
    _, call_id, _ = seed(settings, outputs=[("booking", {"schema": BOOKING})])
    model = FakeModel(
        [
            ProviderError("503", provider="fake", kind="llm", retryable=True),
            "The party is two people.",
            json.dumps({"partySize": 2, "time": "seven thirty"}),
        ]
    )
    (run,) = structured.run_structured_outputs(call_id, model.factory, retry_delay=0)
    assert (run.status, run.attempts) == ("done", 3)


def test_non_retryable_provider_error_fails_at_once(settings, db):
    _, call_id, _ = seed(settings, outputs=[("booking", {"schema": BOOKING})])
    model = FakeModel([ProviderError("401 bad key", provider="fake", kind="llm", retryable=False)])
    (run,) = structured.run_structured_outputs(call_id, model.factory, retry_delay=0)
    assert (run.status, run.attempts) == ("failed", 1) and "401 bad key" in run.error


def test_regex_output_runs_without_a_model(settings, db):
    _, call_id, (oid, oid2) = seed(
        settings,
        outputs=[
            (
                "party",
                {"type": "regex", "regex": r"for (\w+) people", "schema": {"type": "string"}},
            ),
            (
                "confirmed",
                {"type": "regex", "regex": "/WORKS FOR ME/i", "schema": {"type": "boolean"}},
            ),
        ],
    )

    def no_model(config):
        raise AssertionError("regex outputs need no model")

    runs = structured.run_structured_outputs(call_id, no_model, retry_delay=0)
    assert [(r.status, r.result) for r in runs] == [("done", "two"), ("done", True)]
    outputs = reload(call_id).data["artifact"]["structuredOutputs"]
    assert outputs == {
        oid: {"name": "party", "result": "two"},
        oid2: {"name": "confirmed", "result": True},
    }


def test_non_object_schema_is_wrapped_and_unwrapped(settings, db):
    _, call_id, (oid,) = seed(settings, outputs=[("intent", {"schema": {"type": "string"}})])
    model = FakeModel([json.dumps({"result": "booking"})])
    (run,) = structured.run_structured_outputs(call_id, model.factory, retry_delay=0)
    assert run.result == "booking"
    assert model.requests[0].json_schema["properties"]["result"] == {"type": "string"}


def test_artifact_plan_ids_and_explicit_ids(settings, db):
    other = StructuredOutput.create(
        org_id=settings.org_id,
        name="party",
        data={
            "name": "party",
            "type": "regex",
            "regex": r"(\w+) people",
            "schema": {"type": "string"},
        },
    )
    _, call_id, (bound,) = seed(
        settings,
        assistant_data={"artifactPlan": {"structuredOutputIds": [other.id]}},
        outputs=[("booking", {"schema": BOOKING})],
    )
    model = FakeModel([json.dumps({"partySize": 2, "time": "19:30"})])
    runs = structured.run_structured_outputs(call_id, model.factory, retry_delay=0)
    assert [r.structured_output_id for r in runs] == [bound, other.id]
    assert [r.status for r in runs] == ["done", "done"]
    # explicit ids: only those
    runs = structured.run_structured_outputs(call_id, model.factory, [other.id])
    assert [r.structured_output_id for r in runs] == [other.id]
    with pytest.raises(structured.UnknownOutputs):
        structured.run_structured_outputs(call_id, model.factory, [str(uuid.uuid4())])


def test_call_must_exist_and_have_ended(settings, db):
    _, call_id, _ = seed(settings, status="in-progress", outputs=[("booking", {"schema": BOOKING})])
    with pytest.raises(structured.CallNotEnded):
        structured.run_structured_outputs(call_id, FakeModel(["{}"]).factory)
    with pytest.raises(structured.CallNotFound):
        structured.run_structured_outputs(str(uuid.uuid4()), FakeModel(["{}"]).factory)
    assert StructuredOutputRun.select().count() == 0


def test_analysis_plan_with_the_scripted_model(settings, db):
    """The offline path end to end: the registry's scripted model answers in JSON-schema mode."""
    plan = {
        "structuredDataPlan": {
            "enabled": True,
            "schema": {
                "type": "object",
                "properties": {
                    "people": {"type": "integer"},
                    "tonight": {"type": "boolean"},
                    "time": {"type": "string", "enum": ["six", "seven thirty", "nine"]},
                },
            },
        },
        "summaryPlan": {"enabled": True},
    }
    model_block = {
        "provider": "custom-llm",
        "model": "scripted",
        "rules": [{"keywords": ["transcript"], "reply": "The caller booked a table for two."}],
    }
    _, call_id, (oid,) = seed(
        settings,
        assistant_data={"model": model_block, "analysisPlan": plan},
        outputs=[("booking", {"schema": BOOKING})],
        talk=[
            ("bot", "Hello, how can I help?"),
            ("user", "A table for 2 people tonight, please."),
            ("bot", "What time?"),
            ("user", "Seven thirty works for me."),
        ],
    )
    runs = structured.run_structured_outputs(call_id, retry_delay=0)  # registry default factory
    assert runs[0].status == "done" and runs[0].result["partySize"] == 2
    data = reload(call_id).data
    assert data["analysis"]["structuredData"] == {
        "people": 2,
        "tonight": True,
        "time": "seven thirty",
    }
    assert data["analysis"]["summary"] == "The caller booked a table for two."


def test_analysis_failure_is_an_event_and_threshold_skips(settings, db):
    plan = {
        "structuredDataPlan": {"enabled": True, "schema": {"type": "object", "required": ["x"]}}
    }
    _, call_id, _ = seed(settings, assistant_data={"analysisPlan": plan})
    model = FakeModel(["{}"])
    assert structured.run_structured_outputs(call_id, model.factory, retry_delay=0) == []
    assert "analysis" not in reload(call_id).data
    event = (
        CallEvent.select().where((CallEvent.call == call_id) & (CallEvent.kind == "analysis")).get()
    )
    assert (
        event.data["what"] == "structuredData"
        and "'x' is a required property" in event.data["error"]
    )
    # one spoken message: under minMessagesThreshold (2), nothing is asked
    _, short_id, _ = seed(settings, assistant_data={"analysisPlan": plan}, talk=TALK[:1])
    quiet = FakeModel(["{}"])
    structured.run_structured_outputs(short_id, quiet.factory, retry_delay=0)
    assert quiet.requests == []


def test_queue_for_ended_call_runs_in_the_background(settings, db):
    _, call_id, (oid,) = seed(settings, outputs=[("booking", {"schema": BOOKING})])
    model = FakeModel([json.dumps({"partySize": 2, "time": "19:30"})])
    done = Event()
    seen = []

    def on_done(cid, results):
        seen.append((cid, results))
        done.set()

    g = structured.queue_for_ended_call(call_id, model.factory, on_done=on_done, retry_delay=0)
    assert done.wait(timeout=10)
    g.join(timeout=5)
    ((cid, results),) = seen
    assert cid == call_id and results[0]["status"] == "done" and results[0]["id"] == oid
    assert reload(call_id).data["artifact"]["structuredOutputs"][oid]["result"]["partySize"] == 2


def test_queue_for_a_call_not_ended_reports_nothing(settings, db):
    _, call_id, _ = seed(settings, status="in-progress", outputs=[("booking", {"schema": BOOKING})])
    done = Event()
    structured.queue_for_ended_call(
        call_id, FakeModel(["{}"]).factory, on_done=lambda c, r: done.set()
    )
    assert done.wait(timeout=10)
    assert StructuredOutputRun.select().count() == 0
