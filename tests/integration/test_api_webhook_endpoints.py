"""/webhook-endpoint: scopes, references, events, filters, partial updates."""

from __future__ import annotations

import pytest

MISSING = "00000000-0000-4000-8000-00000000f00d"


def assert_error(resp, status=400):
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.get_json()
    assert set(body) == {"statusCode", "error", "message"}
    assert body["statusCode"] == status
    return body["message"] if isinstance(body["message"], str) else " | ".join(body["message"])


def created(resp):
    assert resp.status_code == 201, resp.get_data(as_text=True)
    return resp.get_json()


@pytest.fixture
def targets(client):
    """One object per scope kind, plus a webhook credential."""
    assistant = created(client.post("/assistant", json={"name": "a"}))["id"]
    phone = created(
        client.post("/phone-number", json={"provider": "vapi", "sipUri": "sip:a@pbx.example.com"})
    )["id"]
    tool = created(client.post("/tool", json={"type": "endCall"}))["id"]
    cred = created(
        client.post(
            "/credential",
            json={
                "provider": "webhook",
                "authenticationPlan": {"type": "hmac", "secretKey": "k" * 32},
            },
        )
    )["id"]
    return {"assistant": assistant, "phone-number": phone, "tool": tool, "credential": cred}


def test_account_round_trip(client, targets):
    body = {
        "url": "https://hooks.example.com/all",
        "name": "everything",
        "description": "all events",
        "credentialId": targets["credential"],
        "headers": {"X-Team": "voice"},
        "timeoutSeconds": 15,
    }
    obj = created(client.post("/webhook-endpoint", json=body))
    assert obj["scope"] == "account" and "scopeId" not in obj
    assert obj["events"] == [] and obj["enabled"] is True
    for key, value in body.items():
        assert obj[key] == value
    assert {"id", "orgId", "createdAt", "updatedAt"} <= set(obj)
    assert client.get(f"/webhook-endpoint/{obj['id']}").get_json() == obj
    assert [e["id"] for e in client.get("/webhook-endpoint").get_json()] == [obj["id"]]

    patched = client.patch(f"/webhook-endpoint/{obj['id']}", json={"enabled": False}).get_json()
    assert patched["enabled"] is False
    for key, value in body.items():
        assert patched[key] == value
    deleted = client.delete(f"/webhook-endpoint/{obj['id']}")
    assert deleted.status_code == 200 and deleted.get_json()["id"] == obj["id"]
    assert_error(client.get(f"/webhook-endpoint/{obj['id']}"), 404)


@pytest.mark.parametrize("scope", ["assistant", "phone-number", "tool"])
def test_scoped(client, targets, scope):
    events = ["status-update", "end-of-call-report", 'transcript[transcriptType="final"]']
    obj = created(
        client.post(
            "/webhook-endpoint",
            json={
                "url": "http://127.0.0.1:9/x",
                "scope": scope,
                "scopeId": targets[scope],
                "events": events,
            },
        )
    )
    assert obj["scope"] == scope and obj["scopeId"] == targets[scope] and obj["events"] == events
    assert f"scopeId is required when scope is {scope}" in assert_error(
        client.post("/webhook-endpoint", json={"url": "https://a.example", "scope": scope})
    )
    assert f"{scope} {MISSING} not found" in assert_error(
        client.post(
            "/webhook-endpoint",
            json={"url": "https://a.example", "scope": scope, "scopeId": MISSING},
        )
    )
    # the id of another kind of object is not accepted
    other = "tool" if scope != "tool" else "assistant"
    assert_error(
        client.post(
            "/webhook-endpoint",
            json={"url": "https://a.example", "scope": scope, "scopeId": targets[other]},
        )
    )
    # back to account scope: scopeId must go too
    assert "scopeId" in assert_error(
        client.patch(f"/webhook-endpoint/{obj['id']}", json={"scope": "account"})
    )
    moved = client.patch(
        f"/webhook-endpoint/{obj['id']}", json={"scope": "account", "scopeId": None}
    ).get_json()
    assert moved["scope"] == "account" and "scopeId" not in moved and moved["events"] == events


def test_list_filters(client, targets):
    a = created(client.post("/webhook-endpoint", json={"url": "https://a.example"}))["id"]
    b = created(
        client.post(
            "/webhook-endpoint",
            json={"url": "https://b.example", "scope": "tool", "scopeId": targets["tool"]},
        )
    )["id"]
    c = created(
        client.post(
            "/webhook-endpoint",
            json={
                "url": "https://c.example",
                "scope": "assistant",
                "scopeId": targets["assistant"],
                "enabled": False,
            },
        )
    )["id"]

    def ids(query):
        resp = client.get(f"/webhook-endpoint{query}")
        assert resp.status_code == 200, resp.get_data(as_text=True)
        return [e["id"] for e in resp.get_json()]

    assert ids("") == [c, b, a]
    assert ids("?scope=account") == [a]
    assert ids(f"?scopeId={targets['tool']}") == [b]
    assert ids("?enabled=false") == [c]
    assert ids("?enabled=true") == [b, a]
    assert ids("?enabled=true&scope=tool") == [b]
    assert ids("?limit=1") == [c]
    assert_error(client.get("/webhook-endpoint?scope=galaxy"))
    assert_error(client.get("/webhook-endpoint?scopeId=nope"))
    assert_error(client.get("/webhook-endpoint?enabled=maybe"))
    assert_error(client.get("/webhook-endpoint?limit=-1"))


@pytest.mark.parametrize(
    "body, needle",
    [
        ({}, "url"),
        ({"url": "ftp://a.example"}, "url"),
        ({"url": "https://a.example", "scope": "planet"}, "scope"),
        ({"url": "https://a.example", "scopeId": MISSING}, "scopeId"),
        ({"url": "https://a.example", "scope": "tool", "scopeId": "not-a-uuid"}, "scopeId"),
        ({"url": "https://a.example", "events": ["status-updates"]}, "events"),
        ({"url": "https://a.example", "events": "status-update"}, "events"),
        ({"url": "https://a.example", "enabled": "sometimes"}, "enabled"),
        ({"url": "https://a.example", "credentialId": MISSING}, MISSING),
        ({"url": "https://a.example", "headers": {"X-A": 5}}, "headers"),
        ({"url": "https://a.example", "headers": {"X-A": "a\r\nInjected: 1"}}, "headers"),
        ({"url": "https://a.example", "timeoutSeconds": 0}, "timeoutSeconds"),
        ({"url": "https://a.example", "secret": "x"}, "secret"),
        ({"url": "https://a.example/\x00"}, "NUL"),
        ({"url": "https://a.example", "name": "a\x00"}, "NUL"),
    ],
)
def test_bad_bodies(client, body, needle):
    assert needle in assert_error(client.post("/webhook-endpoint", json=body))
    assert client.get("/webhook-endpoint").get_json() == []


def test_credential_must_be_webhook_kind(client):
    key = created(client.post("/credential", json={"provider": "openai", "apiKey": "k" * 20}))["id"]
    msg = assert_error(
        client.post("/webhook-endpoint", json={"url": "https://a.example", "credentialId": key})
    )
    assert "openai credential" in msg


def test_bad_requests(client):
    obj = created(client.post("/webhook-endpoint", json={"url": "https://a.example"}))
    assert_error(client.patch(f"/webhook-endpoint/{obj['id']}", json={"url": 3}))
    assert_error(client.patch(f"/webhook-endpoint/{obj['id']}", json={"nope": 3}))
    assert client.get(f"/webhook-endpoint/{obj['id']}").get_json() == obj
    assert_error(client.get("/webhook-endpoint/1234"))
    assert_error(client.get(f"/webhook-endpoint/{MISSING}"), 404)
    assert_error(client.post("/webhook-endpoint", data="null", content_type="application/json"))
