"""POST /structured-output/run through the API (SQLite and PostgreSQL)."""

from __future__ import annotations

import json
import uuid

import pytest

from api.routes import structured_run
from esl_controller.calls import persist
from esl_controller.db.models import Call, StructuredOutputRun
from esl_controller.pipeline.providers.base import ModelDone, TextDelta

SCHEMA = {
    "type": "object",
    "properties": {"partySize": {"type": "integer"}, "confirmed": {"type": "boolean"}},
    "required": ["partySize", "confirmed"],
}


class FakeModel:
    name = "fake"
    model = "fake-1"

    def __init__(self, reply):
        self.reply = reply
        self.requests = []

    def stream(self, request, *, timeout):
        self.requests.append(request)
        yield TextDelta(self.reply)
        yield ModelDone("stop")


@pytest.fixture
def model(monkeypatch):
    fake = FakeModel(json.dumps({"partySize": 2, "confirmed": True}))
    monkeypatch.setattr(structured_run, "MODEL_FACTORY", lambda config: fake)
    monkeypatch.setattr(structured_run, "RETRY_DELAY_SECONDS", 0)
    return fake


def make_call(client, database, settings, assistant_id, status="ended"):
    with database.connection_context():
        call = persist.create_call(
            persist.NewCall(
                type="webCall", org_id=settings.org_id, node_id="n1", assistant_id=assistant_id
            )
        )
        for role, text in (
            ("bot", "Hello, how can I help?"),
            ("user", "A table for 2 people tonight. Yes, that is confirmed."),
        ):
            persist.add_message(call.id, {"role": role, "message": text})
        Call.update(status=status).where(Call.id == call.id).execute()
    return call.id


@pytest.fixture
def world(client, database, settings):
    aid = client.post("/assistant", json={"name": "Host"}).json["id"]
    booking = client.post(
        "/structured-output",
        json={"name": "booking", "schema": SCHEMA, "assistantIds": [aid]},
    ).json["id"]
    party = client.post(
        "/structured-output",
        json={
            "name": "party",
            "type": "regex",
            "regex": r"for (\d+) people",
            "schema": {"type": "integer"},
        },
    ).json["id"]
    return {
        "assistant": aid,
        "booking": booking,
        "party": party,
        "call": make_call(client, database, settings, aid),
    }


def test_run_bound_outputs_stores_results(client, world, model, database):
    r = client.post("/structured-output/run", json={"callIds": [world["call"]]})
    assert r.status_code == 201, r.json
    assert r.json["previewEnabled"] is False
    (item,) = r.json["results"]
    assert item["callId"] == world["call"] and item["structuredOutputId"] == world["booking"]
    assert (item["status"], item["attempts"], item["error"]) == ("done", 1, None)
    assert item["result"] == {"partySize": 2, "confirmed": True}
    call = client.get(f"/call/{world['call']}").json
    assert call["artifact"]["structuredOutputs"][world["booking"]] == {
        "name": "booking",
        "result": {"partySize": 2, "confirmed": True},
    }
    with database.connection_context():
        run = StructuredOutputRun.get_by_id(item["runId"])
        assert run.status == "done" and run.call_id == world["call"]


def test_run_named_outputs_regex_and_preview(client, world, model):
    body = {
        "callIds": [world["call"]],
        "structuredOutputId": world["party"],
        "previewEnabled": True,
    }
    r = client.post("/structured-output/run", json=body)
    assert r.status_code == 201, r.json
    (item,) = r.json["results"]
    assert (item["status"], item["result"], item["runId"]) == ("done", 2, None)
    assert model.requests == []  # regex: no model
    call = client.get(f"/call/{world['call']}").json
    assert "structuredOutputs" not in (call.get("artifact") or {})  # preview writes nothing
    body = {
        "callIds": [world["call"]],
        "structuredOutputIds": [world["party"], world["booking"]],
    }
    r = client.post("/structured-output/run", json=body)
    assert [i["structuredOutputId"] for i in r.json["results"]] == [
        world["party"],
        world["booking"],
    ]
    assert set(client.get(f"/call/{world['call']}").json["artifact"]["structuredOutputs"]) == {
        world["party"],
        world["booking"],
    }


def test_transient_output(client, world, model):
    body = {
        "callIds": [world["call"]],
        "structuredOutput": {"name": "confirmed", "schema": {"type": "boolean"}},
    }
    model.reply = json.dumps({"result": True})
    r = client.post("/structured-output/run", json=body)
    assert r.status_code == 201, r.json
    (item,) = r.json["results"]
    assert item["name"] == "confirmed" and item["result"] is True and item["runId"] is None
    outputs = client.get(f"/call/{world['call']}").json["artifact"]["structuredOutputs"]
    assert outputs[item["structuredOutputId"]] == {"name": "confirmed", "result": True}


def test_failed_validation_is_reported(client, world, model, database):
    model.reply = json.dumps({"partySize": "two"})
    r = client.post("/structured-output/run", json={"callIds": [world["call"]]})
    assert r.status_code == 201
    (item,) = r.json["results"]
    assert item["status"] == "failed" and item["attempts"] == structured_run.ATTEMPTS
    assert "schema validation failed" in item["error"]
    with database.connection_context():
        run = StructuredOutputRun.get_by_id(item["runId"])
        assert (run.status, run.error) == ("failed", item["error"])


def test_400s(client, world, model, database, settings):
    unknown = str(uuid.uuid4())
    live = make_call(client, database, settings, world["assistant"], status="in-progress")
    r = client.post("/structured-output/run", json={"callIds": [world["call"], unknown, live]})
    assert r.status_code == 400
    text = json.dumps(r.json)
    assert f"call {unknown} not found" in text and f"call {live} has not ended" in text
    with database.connection_context():
        assert StructuredOutputRun.select().count() == 0  # nothing ran, nothing queued
    for body in (
        {},
        {"callIds": []},
        {"callIds": ["not-a-uuid"]},
        {"callIds": [world["call"]], "unknownField": 1},
        {"callIds": [world["call"], world["call"]], "previewEnabled": True},
        {"callIds": [world["call"]], "structuredOutputId": str(uuid.uuid4())},
        {"callIds": [world["call"]], "structuredOutput": {"name": "x", "schema": {"type": "nope"}}},
    ):
        r = client.post("/structured-output/run", json=body)
        assert r.status_code == 400, (body, r.json)
    assert model.requests == []


def test_needs_auth(anon, world):
    assert anon.post("/structured-output/run", json={"callIds": [world["call"]]}).status_code == 401
