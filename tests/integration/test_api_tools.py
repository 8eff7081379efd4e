"""/tool: every runnable type round-trips, Vapi's other types are stored, bodies are validated."""

from __future__ import annotations

import pytest

MISSING = "00000000-0000-4000-8000-00000000beef"
SECRET = "legacy-server-secret-Wq93Lx"

WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
        "required": ["city"],
    },
}
MESSAGES = [
    {"type": "request-start", "content": "One moment", "blocking": False},
    {"type": "request-complete", "content": "Done", "role": "assistant"},
    {"type": "request-failed", "content": "Sorry", "endCallAfterSpokenEnabled": False},
    {"type": "request-response-delayed", "content": "Still working", "timingMilliseconds": 2000},
]

BODIES = {
    "function": {
        "type": "function",
        "function": WEATHER,
        "server": {"url": "https://tools.example.com/weather", "timeoutSeconds": 10},
        "async": False,
        "messages": MESSAGES,
    },
    "transferCall": {
        "type": "transferCall",
        "destinations": [
            {
                "type": "number",
                "number": "+14155550100",
                "message": "Transferring",
                "extension": "12",
            },
            {"type": "sip", "sipUri": "sip:support@pbx.example.com", "sipHeaders": {"X-A": "1"}},
            {"type": "assistant", "assistantName": "billing"},
        ],
        "function": {"name": "transfer_call"},
    },
    "endCall": {"type": "endCall"},
    "dtmf": {"type": "dtmf", "sipInfoDtmfEnabled": True},
    "apiRequest": {
        "type": "apiRequest",
        "method": "POST",
        "url": "https://api.example.com/orders",
        "name": "create_order",
        "description": "Create an order",
        "body": {"type": "object", "properties": {"sku": {"type": "string"}}},
        "headers": {"type": "object", "properties": {"X-Tenant": {"type": "string", "value": "a"}}},
        "timeoutSeconds": 20,
    },
    "handoff": {
        "type": "handoff",
        "destinations": [{"type": "assistant", "assistantName": "sales", "description": "sales"}],
    },
    "sms": {"type": "sms", "metadata": {"from": "+14155550100"}},
    "google.calendar.event.create": {"type": "google.calendar.event.create", "calendarId": "x"},
    "mcp": {"type": "mcp", "server": {"url": "https://mcp.example.com"}},
}


def assert_error(resp, status=400):
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.get_json()
    assert set(body) == {"statusCode", "error", "message"}
    assert body["statusCode"] == status
    return body["message"] if isinstance(body["message"], str) else " | ".join(body["message"])


def created(resp):
    assert resp.status_code == 201, resp.get_data(as_text=True)
    return resp.get_json()


@pytest.mark.parametrize("kind", list(BODIES))
def test_round_trip(client, kind):
    body = BODIES[kind]
    obj = created(client.post("/tool", json=body))
    assert {"id", "orgId", "createdAt", "updatedAt"} <= set(obj)
    for key, value in body.items():
        assert obj[key] == value, key
    assert client.get(f"/tool/{obj['id']}").get_json() == obj
    assert [(t["id"], t["type"]) for t in client.get("/tool").get_json()] == [
        (obj["id"], body["type"])
    ]
    patched = client.patch(f"/tool/{obj['id']}", json={"messages": MESSAGES[:1]}).get_json()
    assert patched["messages"] == MESSAGES[:1]
    for key, value in body.items():
        if key != "messages":
            assert patched[key] == value, key
    deleted = client.delete(f"/tool/{obj['id']}")
    assert deleted.status_code == 200 and deleted.get_json()["type"] == body["type"]
    assert_error(client.get(f"/tool/{obj['id']}"), 404)


@pytest.mark.parametrize(
    "body, needle",
    [
        ({"type": "function"}, "function"),
        ({"type": "function", "function": {"name": "has space"}}, "function.name"),
        ({"type": "function", "function": {"name": "x" * 65}}, "function.name"),
        (
            {"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}},
            "object",
        ),
        (
            {
                "type": "function",
                "function": {"name": "f", "parameters": {"type": "object", "properties": 3}},
            },
            "JSON Schema",
        ),
        (
            {
                "type": "function",
                "function": {"name": "f", "parameters": {"type": "object", "required": "city"}},
            },
            "JSON Schema",
        ),
        ({"type": "function", "function": {"name": "f"}, "server": {"url": "nope"}}, "server.url"),
        ({"type": "function", "function": {"name": "f"}, "async": "maybe"}, "async"),
        ({"type": "transferCall", "destinations": [{"type": "number", "number": "555"}]}, "number"),
        ({"type": "transferCall", "destinations": [{"type": "sip", "sipUri": "bad"}]}, "sipUri"),
        ({"type": "transferCall", "destinations": [{"type": "assistant"}]}, "assistantName"),
        ({"type": "transferCall", "destinations": [{"type": "pigeon"}]}, "destinations"),
        ({"type": "apiRequest", "url": "https://a.example"}, "method"),
        ({"type": "apiRequest", "method": "TRACE", "url": "https://a.example"}, "method"),
        ({"type": "apiRequest", "method": "GET", "url": "file:///etc/passwd"}, "url"),
        (
            {
                "type": "apiRequest",
                "method": "GET",
                "url": "https://a.example",
                "body": {"type": 5},
            },
            "body",
        ),
        ({"type": "endCall", "messages": [{"type": "request-whenever"}]}, "messages"),
        ({"type": "endCall", "messages": "hello"}, "messages"),
        ({"type": "endCall", "bogus": 1}, "bogus"),
        ({"type": "dtmf", "sipInfoDtmfEnabled": "yes please"}, "sipInfoDtmfEnabled"),
        ({"type": "teleport"}, "type"),
        ({"type": "endCall", "metadata": {"k": "v\x00"}}, "metadata.k"),
        ({"type": 3}, "type"),
        ({}, "type"),
        ({"type": "sms", "credentialId": "not-a-uuid"}, "credentialId"),
        ({"type": "endCall", "credentialId": MISSING}, MISSING),
        (
            {
                "type": "function",
                "function": {"name": "f"},
                "server": {"url": "https://a.example", "credentialId": MISSING},
            },
            MISSING,
        ),
        (
            {"type": "handoff", "destinations": [{"type": "assistant", "assistantId": MISSING}]},
            MISSING,
        ),
    ],
)
def test_bad_bodies(client, body, needle):
    assert needle in assert_error(client.post("/tool", json=body))
    assert client.get("/tool").get_json() == []


def test_patch_rules(client):
    obj = created(client.post("/tool", json=BODIES["function"]))
    assert "type" in assert_error(client.patch(f"/tool/{obj['id']}", json={"type": "endCall"}))
    assert_error(client.patch(f"/tool/{obj['id']}", json={"function": {"name": "bad name"}}))
    assert_error(client.patch(f"/tool/{obj['id']}", json={"bogus": True}))
    assert_error(client.patch("/tool/123", json={}))
    assert client.get(f"/tool/{obj['id']}").get_json() == obj
    # a new function replaces the old one as a whole
    renamed = client.patch(
        f"/tool/{obj['id']}", json={"type": "function", "function": {"name": "get_forecast"}}
    ).get_json()
    assert renamed["function"] == {"name": "get_forecast"}
    assert renamed["server"] == obj["server"]


def test_credential_reference(client):
    cred = created(
        client.post(
            "/credential",
            json={
                "provider": "webhook",
                "authenticationPlan": {"type": "bearer", "token": "t" * 20},
            },
        )
    )["id"]
    obj = created(client.post("/tool", json={**BODIES["apiRequest"], "credentialId": cred}))
    assert obj["credentialId"] == cred
    assert_error(client.delete(f"/credential/{cred}"))
    assert client.delete(f"/tool/{obj['id']}").status_code == 200
    assert client.delete(f"/credential/{cred}").status_code == 200


def test_legacy_server_secret_sealed(client, database):
    body = {**BODIES["function"], "server": {"url": "https://t.example/x", "secret": SECRET}}
    resp = client.post("/tool", json=body)
    obj = created(resp)
    assert obj["server"]["secret"] == "****" + SECRET[-4:]
    for r in (resp, client.get(f"/tool/{obj['id']}"), client.get("/tool")):
        assert SECRET not in r.get_data(as_text=True)
    patched = client.patch(f"/tool/{obj['id']}", json={"messages": []})
    assert patched.get_json()["server"]["secret"] == "****" + SECRET[-4:]
    with database.connection_context():
        rows = database.execute_sql("SELECT * FROM tool").fetchall()
    assert SECRET not in repr(rows)


def test_delete_removes_tool_from_assistants(client):
    keep = created(client.post("/tool", json=BODIES["endCall"]))["id"]
    gone = created(client.post("/tool", json=BODIES["dtmf"]))["id"]
    model = {"provider": "openai", "model": "gpt-4o-mini", "toolIds": [keep, gone]}
    assistant = created(client.post("/assistant", json={"name": "a", "model": model}))
    deleted = client.delete(f"/tool/{gone}")
    assert deleted.status_code == 200 and deleted.get_json()["id"] == gone
    after = client.get(f"/assistant/{assistant['id']}").get_json()
    assert after["model"]["toolIds"] == [keep]
    assert after["model"]["model"] == "gpt-4o-mini"
    assert after["updatedAt"] >= assistant["updatedAt"]


def test_bad_requests(client):
    assert_error(client.get("/tool/zzz"))
    assert_error(client.delete("/tool/zzz"))
    assert_error(client.get(f"/tool/{MISSING}"), 404)
    assert_error(client.delete(f"/tool/{MISSING}"), 404)
    assert_error(client.post("/tool", data="[1,", content_type="application/json"))
    assert_error(client.get("/tool?limit=1001"))
    assert_error(client.get("/tool?updatedAtLe=soon"))


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
    from vapi.core.api_error import ApiError
    from vapi.tools.types.create_tools_request import (
        CreateToolsRequest_EndCall,
        CreateToolsRequest_Function,
    )
    from vapi.tools.types.update_tools_request_body import UpdateToolsRequestBody_Function
    from vapi.types.open_ai_function import OpenAiFunction
    from vapi.types.server import Server

    fn = sdk.tools.create(
        request=CreateToolsRequest_Function(
            function=OpenAiFunction(name="get_weather", parameters=WEATHER["parameters"]),
            server=Server(url="https://tools.example.com/weather"),
        )
    )
    assert fn.type == "function" and fn.function.name == "get_weather"
    end = sdk.tools.create(request=CreateToolsRequest_EndCall())
    assert end.type == "endCall"
    assert [(t.id, t.type) for t in sdk.tools.list()] == [(end.id, "endCall"), (fn.id, "function")]
    updated = sdk.tools.update(
        fn.id,
        request=UpdateToolsRequestBody_Function(function=OpenAiFunction(name="get_forecast")),
    )
    assert updated.type == "function" and updated.function.name == "get_forecast"
    assert updated.server.url == "https://tools.example.com/weather"
    assert sdk.tools.get(fn.id).function.name == "get_forecast"
    assert sdk.tools.delete(fn.id).id == fn.id
    with pytest.raises(ApiError) as err:
        sdk.tools.get(fn.id)
    assert err.value.status_code == 404
    with pytest.raises(ApiError) as err:
        sdk.tools.create(
            request=CreateToolsRequest_Function(function=OpenAiFunction(name="bad name"))
        )
    assert err.value.status_code == 400
