"""/structured-output: schema validation, assistant bindings, the paginated list, PATCH with schemaOverride."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

SCHEMA = {
    "type": "object",
    "properties": {
        "appointmentTime": {"type": "string", "description": "when the caller can come in"},
        "confirmed": {"type": "boolean"},
    },
    "required": ["confirmed"],
}


def make(client, name="appointment", **extra):
    body = {"name": name, "schema": SCHEMA, **extra}
    r = client.post("/structured-output", json=body)
    assert r.status_code == 201, r.json
    return r.json


def assistant(client, name="Receptionist"):
    r = client.post("/assistant", json={"name": name})
    assert r.status_code == 201, r.json
    return r.json["id"]


# -- create -----------------------------------------------------------------------------------------


def test_create_get_round_trip(client):
    aid = assistant(client)
    body = {
        "name": "appointment",
        "description": "Did the caller confirm a time?",
        "schema": SCHEMA,
        "model": {"provider": "openai", "model": "gpt-4o-mini", "temperature": 0},
        "assistantIds": [aid],
        "workflowIds": [str(uuid.uuid4())],
        "conditions": [{"type": "liquid", "liquid": "{{ call.type }}"}],
        "compliancePlan": {"forceStoreOnHipaaEnabled": False},
    }
    r = client.post("/structured-output", json=body)
    assert r.status_code == 201, r.json
    out = r.json
    uuid.UUID(out["id"])
    for k in ("orgId", "createdAt", "updatedAt"):
        assert out[k]
    assert out["name"] == "appointment"
    assert out["schema"] == SCHEMA
    assert out["type"] == "ai"  # the default is echoed
    assert out["assistantIds"] == [aid]
    assert out["model"]["provider"] == "openai"
    assert out["conditions"] == body["conditions"]
    assert client.get(f"/structured-output/{out['id']}").json == out


def test_regex_type(client):
    out = make(client, "zip", type="regex", regex=r"/\b\d{5}\b/g", schema={"type": "string"})
    assert out["type"] == "regex"
    assert out["regex"] == r"/\b\d{5}\b/g"
    r = client.post(
        "/structured-output", json={"name": "z", "type": "regex", "schema": {"type": "string"}}
    )
    assert r.status_code == 400
    assert "regex is required" in str(r.json["message"])
    r = client.post(
        "/structured-output",
        json={"name": "z", "type": "regex", "regex": "(unclosed", "schema": {"type": "string"}},
    )
    assert r.status_code == 400
    assert "regex does not compile" in str(r.json["message"])


@pytest.mark.parametrize(
    ("schema", "needle"),
    [
        ({"type": "object", "properties": {"age": {"type": "strin"}}}, "properties.age.type"),
        ({"type": "object", "required": "confirmed"}, "required"),
        ({"type": "array", "items": 5}, "items"),
        ({"type": "string", "minLength": -1}, "minLength"),
        ({"type": "string", "pattern": 12}, "pattern"),
        ({"type": "null"}, "schema.type must be one of"),
        ({"type": ["string", "null"]}, "schema.type must be one of"),
        ({"properties": {}}, "schema.type is required"),
    ],
)
def test_invalid_schema_is_a_400_naming_the_problem(client, schema, needle):
    r = client.post("/structured-output", json={"name": "bad", "schema": schema})
    assert r.status_code == 400, r.json
    assert r.json["statusCode"] == 400
    message = " ".join(r.json["message"])
    assert "schema" in message
    assert needle in message
    assert client.get("/structured-output").json["metadata"]["totalItems"] == 0


def test_deeply_nested_schema_is_refused(client):
    schema: dict = {"type": "string"}
    for _ in range(40):
        schema = {"type": "object", "properties": {"x": schema}}
    r = client.post("/structured-output", json={"name": "deep", "schema": schema})
    assert r.status_code == 400
    assert "nested deeper" in " ".join(r.json["message"])


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"schema": SCHEMA}, "name is required"),
        ({"name": "x"}, "schema is required"),
        ({"name": "", "schema": SCHEMA}, "name"),
        ({"name": "x", "schema": SCHEMA, "colour": "blue"}, "property colour should not exist"),
        ({"name": "x", "schema": SCHEMA, "type": "llm"}, "type"),
        ({"name": "x", "schema": SCHEMA, "assistantIds": ["nope"]}, "must be a UUID"),
        (
            {"name": "x", "schema": SCHEMA, "model": {"provider": "made-up", "model": "m"}},
            "provider",
        ),
    ],
)
def test_bad_create_bodies(client, body, needle):
    r = client.post("/structured-output", json=body)
    assert r.status_code == 400
    assert needle in " ".join(r.json["message"])


def test_assistant_ids_must_exist(client):
    real = assistant(client)
    ghost = str(uuid.uuid4())
    r = client.post(
        "/structured-output", json={"name": "x", "schema": SCHEMA, "assistantIds": [real, ghost]}
    )
    assert r.status_code == 400
    assert r.json["message"] == [f"assistantIds: assistant {ghost} not found"]
    assert client.get("/structured-output").json["metadata"]["totalItems"] == 0


# -- paginated list ---------------------------------------------------------------------------------


def test_pagination_metadata_across_pages(client):
    ids = [make(client, f"output-{i}")["id"] for i in range(7)]  # created oldest -> newest
    r = client.get("/structured-output?limit=3")
    assert r.status_code == 200
    assert set(r.json) == {"results", "metadata"}
    assert r.json["metadata"] == {
        "itemsPerPage": 3,
        "totalItems": 7,
        "currentPage": 1,
        "totalPages": 3,
        "hasNextPage": True,
        "sortOrder": "DESC",
    }
    seen = []
    for page in (1, 2, 3):
        body = client.get(f"/structured-output?limit=3&page={page}").json
        assert body["metadata"]["currentPage"] == page
        assert body["metadata"]["totalItems"] == 7
        assert body["metadata"]["hasNextPage"] is (page < 3)
        seen += [o["id"] for o in body["results"]]
    assert seen == ids[::-1]  # newest first, every item exactly once

    past = client.get("/structured-output?limit=3&page=4").json
    assert past["results"] == []
    assert past["metadata"]["totalItems"] == 7

    asc = client.get("/structured-output?limit=5&sortOrder=ASC").json
    assert [o["id"] for o in asc["results"]] == ids[:5]
    assert asc["metadata"]["sortOrder"] == "ASC"
    by_name = client.get("/structured-output?sortBy=name&sortOrder=asc&limit=2").json
    assert [o["name"] for o in by_name["results"]] == ["output-0", "output-1"]

    default = client.get("/structured-output").json
    assert default["metadata"]["itemsPerPage"] == 100
    assert len(default["results"]) == 7
    assert default["metadata"]["totalPages"] == 1
    assert default["metadata"]["hasNextPage"] is False

    # limit 5.0 is how the SDK sends a float
    assert client.get("/structured-output?limit=5.0").json["metadata"]["itemsPerPage"] == 5


def test_list_filters(client):
    a = make(client, "alpha")
    b = make(client, "beta")
    c = make(client, "alpha")
    by_id = client.get(f"/structured-output?id={b['id']}").json
    assert [o["id"] for o in by_id["results"]] == [b["id"]]
    assert by_id["metadata"]["totalItems"] == 1
    by_name = client.get("/structured-output?name=alpha").json
    assert {o["name"] for o in by_name["results"]} == {"alpha"}
    assert by_name["metadata"]["totalItems"] == 2
    assert client.get("/structured-output?name=gamma").json["metadata"]["totalItems"] == 0

    # pin the creation times so the bounds are exact
    from esl_controller.db import database
    from esl_controller.db.models import StructuredOutput

    with database.connection_context():
        for day, row in enumerate((a, b, c), start=1):
            StructuredOutput.update(created_at=datetime(2024, 1, day, tzinfo=timezone.utc)).where(
                StructuredOutput.id == row["id"]
            ).execute()

    def ids(**query):
        return [
            o["id"] for o in client.get("/structured-output", query_string=query).json["results"]
        ]

    assert ids(createdAtGt="2024-01-01T00:00:00Z") == [c["id"], b["id"]]
    assert ids(createdAtGe="2024-01-01T00:00:00.000Z") == [c["id"], b["id"], a["id"]]
    assert ids(createdAtLe="2024-01-02T00:00:00+00:00") == [b["id"], a["id"]]
    assert ids(createdAtLt="2024-01-02T00:00:00.000000Z", sortOrder="ASC") == [a["id"]]
    body = client.get(
        "/structured-output", query_string={"createdAtGt": "2024-01-01T00:00:00Z", "limit": 1}
    ).json
    assert body["metadata"]["totalItems"] == 2
    assert body["metadata"]["totalPages"] == 2
    future = (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()
    assert ids(updatedAtGt=future) == []


@pytest.mark.parametrize(
    "query",
    [
        "page=0",
        "page=abc",
        "page=1.5",
        "sortOrder=SIDEWAYS",
        "sortBy=colour",
        "limit=1001",
        "id=not-a-uuid",
        "createdAtGt=yesterday",
    ],
)
def test_bad_list_parameters(client, query):
    r = client.get(f"/structured-output?{query}")
    assert r.status_code == 400
    assert r.json["statusCode"] == 400


# -- update and delete ------------------------------------------------------------------------------


def test_patch_with_schema_override_parameter(client):
    out = make(client, "appointment", description="first")
    url = f"/structured-output/{out['id']}"

    r = client.patch(f"{url}?schemaOverride=false", json={"description": "second"})
    assert r.status_code == 200, r.json
    assert r.json["description"] == "second"
    assert r.json["name"] == "appointment"  # untouched
    assert r.json["schema"] == SCHEMA

    new_schema = {"type": "object", "properties": {"when": {"type": "string"}}}
    r = client.patch(f"{url}?schemaOverride=false", json={"schema": new_schema})
    assert r.status_code == 200
    assert r.json["schema"] == new_schema  # same top-level type: replaced

    r = client.patch(f"{url}?schemaOverride=false", json={"schema": {"type": "string"}})
    assert r.status_code == 400
    assert "schemaOverride=true" in r.json["message"]
    assert client.get(url).json["schema"] == new_schema

    r = client.patch(
        url, json={"schema": {"type": "string"}}
    )  # parameter missing: accepted, not true
    assert r.status_code == 400

    r = client.patch(f"{url}?schemaOverride=true", json={"schema": {"type": "string"}})
    assert r.status_code == 200
    assert r.json["schema"] == {"type": "string"}

    r = client.patch(url, json={"name": "renamed"})  # missing parameter is fine for other fields
    assert r.status_code == 200
    assert r.json["name"] == "renamed"
    assert r.json["updatedAt"] >= out["updatedAt"]


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"schema": {"type": "object", "properties": {"a": {"type": 3}}}}, "schema"),
        ({"name": None}, "name cannot be null"),
        ({"schema": None}, "schema cannot be null"),
        ({"type": "regex"}, "regex is required"),
        ({"assistantIds": [str(uuid.uuid4())]}, "not found"),
        ({"colour": "blue"}, "property colour should not exist"),
    ],
)
def test_bad_patches(client, body, needle):
    out = make(client)
    r = client.patch(f"/structured-output/{out['id']}?schemaOverride=true", json=body)
    assert r.status_code == 400
    assert needle in str(r.json["message"])
    assert client.get(f"/structured-output/{out['id']}").json == out


def test_patch_conditions_null_clears(client):
    out = make(client, conditions=[{"type": "liquid", "liquid": "x"}])
    r = client.patch(
        f"/structured-output/{out['id']}?schemaOverride=false", json={"conditions": None}
    )
    assert r.status_code == 200
    assert r.json["conditions"] is None


def test_delete_returns_object_then_404(client):
    out = make(client)
    r = client.delete(f"/structured-output/{out['id']}")
    assert r.status_code == 200
    assert r.json == out
    for method in ("get", "delete"):
        r = getattr(client, method)(f"/structured-output/{out['id']}")
        assert r.status_code == 404
        assert r.json["statusCode"] == 404
    assert client.patch(f"/structured-output/{out['id']}", json={"name": "x"}).status_code == 404
    assert client.get("/structured-output").json["metadata"]["totalItems"] == 0


def test_requires_auth(anon):
    assert anon.get("/structured-output").status_code == 401
    assert anon.post("/structured-output", json={"name": "x", "schema": SCHEMA}).status_code == 401


# -- bindings for the runner ------------------------------------------------------------------------


def test_outputs_for_assistant(client, app):
    from api.routes.structured_outputs import outputs_for_assistant
    from esl_controller.db import database

    a1, a2, a3 = assistant(client, "one"), assistant(client, "two"), assistant(client, "three")
    first = make(client, "first", assistantIds=[a1])
    both = make(client, "both", assistantIds=[a1, a2])
    make(client, "unbound")
    # an id that only appears inside the schema text must not count as a binding
    make(client, "decoy", schema={"type": "string", "description": a3})

    with database.connection_context():
        assert [o.id for o in outputs_for_assistant(a1)] == [first["id"], both["id"]]
        assert [o.id for o in outputs_for_assistant(a2.upper())] == [both["id"]]
        assert outputs_for_assistant(a3) == []

    client.patch(f"/structured-output/{both['id']}?schemaOverride=false", json={"assistantIds": []})
    with database.connection_context():
        assert [o.id for o in outputs_for_assistant(a2)] == []
        assert [o.data["name"] for o in outputs_for_assistant(a1)] == ["first"]


# -- the official SDK over a real socket ------------------------------------------------------------


@pytest.fixture
def sdk(app, api_key):
    """``vapi.Vapi`` talking to the app served by gevent's WSGI server on an ephemeral loopback port."""
    vapi = pytest.importorskip("vapi")
    from gevent.pywsgi import WSGIServer

    server = WSGIServer(("127.0.0.1", 0), app, log=None, error_log=None)
    server.start()
    try:
        yield vapi.Vapi(
            token=api_key, base_url=f"http://127.0.0.1:{server.server_port}", timeout=10
        )
    finally:
        server.stop(timeout=5)


def test_sdk_round_trip(sdk):
    from vapi import JsonSchema
    from vapi.core.api_error import ApiError

    so = sdk.structured_outputs
    created = [
        so.structured_output_controller_create(
            name=f"out-{i}",
            schema=JsonSchema(type="object", properties={"ok": {"type": "boolean"}}),
        )
        for i in range(3)
    ]
    assert created[0].name == "out-0"
    assert created[0].schema_.type == "object"
    assert created[0].type == "ai"

    page = so.structured_output_controller_find_all(limit=2, page=1)
    assert [o.id for o in page.results] == [created[2].id, created[1].id]
    assert page.metadata.total_items == 3
    assert page.metadata.current_page == 1
    assert page.metadata.items_per_page == 2
    page2 = so.structured_output_controller_find_all(limit=2, page=2, sort_order="DESC")
    assert [o.id for o in page2.results] == [created[0].id]

    updated = so.structured_output_controller_update(
        created[0].id, schema_override="false", description="does the caller agree?"
    )
    assert updated.description == "does the caller agree?"
    with pytest.raises(ApiError) as info:
        so.structured_output_controller_update(
            created[0].id, schema_override="false", schema=JsonSchema(type="string")
        )
    assert info.value.status_code == 400
    changed = so.structured_output_controller_update(
        created[0].id, schema_override="true", schema=JsonSchema(type="string")
    )
    assert changed.schema_.type == "string"

    removed = so.structured_output_controller_remove(created[0].id)
    assert removed.id == created[0].id
    with pytest.raises(ApiError) as info:
        so.structured_output_controller_find_one(created[0].id)
    assert info.value.status_code == 404
