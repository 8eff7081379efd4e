"""/assistant CRUD with Vapi's shapes, partial PATCH, legacy fields, server secret redaction, list filters."""

import logging
from datetime import datetime, timedelta, timezone

import pytest

BODY = {
    "name": "Front desk",
    "firstMessage": "Hello, how can I help?",
    "firstMessageMode": "assistant-speaks-first",
    "model": {
        "provider": "openai",
        "model": "gpt-4o-mini",
        "messages": [{"role": "system", "content": "You are helpful."}],
        "temperature": 0.3,
    },
    "voice": {"provider": "11labs", "voiceId": "rachel", "stability": 0.5},
    "transcriber": {"provider": "deepgram", "model": "nova-2", "language": "en"},
    "endCallPhrases": ["goodbye"],
    "maxDurationSeconds": 600,
    "metadata": {"team": "a"},
}


def test_create_get_list_update_delete(client):
    r = client.post("/assistant", json=BODY)
    assert r.status_code == 201, r.get_json()
    a = r.get_json()
    for key in ("id", "orgId", "createdAt", "updatedAt"):
        assert a[key]
    assert a["createdAt"].endswith("Z") and len(a["createdAt"]) == 24
    assert a["model"]["provider"] == "openai" and a["voice"]["voiceId"] == "rachel"
    assert a["voice"]["stability"] == 0.5  # provider-specific extras kept
    got = client.get(f"/assistant/{a['id']}").get_json()
    assert got == a
    assert [x["id"] for x in client.get("/assistant").get_json()] == [a["id"]]

    r = client.patch(f"/assistant/{a['id']}", json={"firstMessage": "Hi!"})
    assert r.status_code == 200
    upd = r.get_json()
    assert (
        upd["firstMessage"] == "Hi!" and upd["name"] == "Front desk" and upd["model"] == a["model"]
    )
    assert upd["updatedAt"] >= a["updatedAt"] and upd["createdAt"] == a["createdAt"]

    r = client.delete(f"/assistant/{a['id']}")
    assert r.status_code == 200 and r.get_json()["id"] == a["id"]
    assert client.get(f"/assistant/{a['id']}").status_code == 404
    assert client.delete(f"/assistant/{a['id']}").status_code == 404


@pytest.mark.parametrize(
    "body,needle",
    [
        ({"nmae": "x"}, "property nmae should not exist"),
        ({"name": 5}, "name"),
        ({"model": {"provider": "openai"}}, "model.model is required"),
        ({"model": {"provider": "no-such", "model": "x"}}, "provider must be one of"),
        ({"model": {"provider": "custom-llm", "model": "x"}}, "url"),
        ({"voice": {"provider": "11labs"}}, "voiceId"),
        ({"firstMessageMode": "shout"}, "firstMessageMode"),
        ({"maxDurationSeconds": -1}, "maxDurationSeconds"),
        ({"model": {"provider": "openai", "model": "x", "toolIds": ["not-a-uuid"]}}, "UUID"),
        ({"server": {"url": "ftp://x"}}, "server.url"),
    ],
)
def test_bad_bodies_are_400_with_messages(client, body, needle):
    r = client.post("/assistant", json=body)
    assert r.status_code == 400
    err = r.get_json()
    assert err["statusCode"] == 400 and err["error"] == "Bad Request"
    assert needle in " ".join(
        err["message"] if isinstance(err["message"], list) else [err["message"]]
    )
    assert client.get("/assistant").get_json() == []  # nothing written


def test_missing_tool_reference_is_400(client):
    r = client.post(
        "/assistant",
        json={
            "model": {
                "provider": "openai",
                "model": "x",
                "toolIds": ["00000000-0000-4000-8000-000000000001"],
            }
        },
    )
    assert r.status_code == 400 and "not found" in str(r.get_json()["message"])


def test_legacy_fields_are_mapped(client):
    r = client.post(
        "/assistant",
        json={"recordingEnabled": False, "silenceTimeoutSeconds": 30, "hipaaEnabled": True},
    )
    a = r.get_json()
    assert r.status_code == 201
    assert a["artifactPlan"] == {"recordingEnabled": False}
    assert a["compliancePlan"] == {"hipaaEnabled": True}
    assert {"on": "customer.speech.timeout", "options": {"timeoutSeconds": 30}, "do": []} in a[
        "hooks"
    ]
    assert "recordingEnabled" not in a and "silenceTimeoutSeconds" not in a


def test_server_secret_is_sealed_and_redacted(client, database, caplog):
    secret = "my-legacy-webhook-secret-xyz"
    handler_records = []

    class Grab(logging.Handler):
        def emit(self, record):
            handler_records.append(record.getMessage())

    grab = Grab()
    logging.getLogger("esl_controller").addHandler(grab)
    try:
        r = client.post(
            "/assistant", json={"server": {"url": "https://hooks.example/x", "secret": secret}}
        )
        a = r.get_json()
        bodies = [r.get_data(as_text=True)]
        bodies.append(client.get(f"/assistant/{a['id']}").get_data(as_text=True))
        bodies.append(client.get("/assistant").get_data(as_text=True))
        bodies.append(
            client.patch(f"/assistant/{a['id']}", json={"name": "n"}).get_data(as_text=True)
        )
        bodies.append(client.delete(f"/assistant/{a['id']}").get_data(as_text=True))
    finally:
        logging.getLogger("esl_controller").removeHandler(grab)
    assert a["server"]["secret"] == "****-xyz"
    assert all(secret not in b for b in bodies)
    assert all(secret not in m for m in handler_records)


def test_unsent_nested_objects_untouched_by_patch(client):
    a = client.post("/assistant", json=BODY).get_json()
    b = client.patch(
        f"/assistant/{a['id']}", json={"voice": {"provider": "openai", "voiceId": "alloy"}}
    ).get_json()
    assert b["voice"] == {"provider": "openai", "voiceId": "alloy"}
    assert b["transcriber"] == a["transcriber"]
    # an empty PATCH body changes nothing but is accepted
    c = client.patch(f"/assistant/{a['id']}", data="", content_type="application/json")
    assert c.status_code == 200 and c.get_json()["voice"] == b["voice"]


def _seed(database, n):
    from esl_controller.db.models import Assistant

    base = datetime(2025, 1, 1, tzinfo=timezone.utc)
    with database.connection_context():
        for i in range(n):
            Assistant.create(
                org_id="o",
                name=f"a{i}",
                data={"name": f"a{i}"},
                created_at=base + timedelta(seconds=i),
                updated_at=base + timedelta(seconds=i, microseconds=500),
            )
    return base


def test_list_filters_at_boundaries(client, database):
    base = _seed(database, 5)
    at2 = (base + timedelta(seconds=2)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")

    def names(q):
        r = client.get("/assistant?" + q)
        assert r.status_code == 200, r.get_json()
        return [x["name"] for x in r.get_json()]

    assert names("") == ["a4", "a3", "a2", "a1", "a0"]  # newest first
    assert names(f"createdAtGt={at2}") == ["a4", "a3"]
    assert names(f"createdAtGe={at2}") == ["a4", "a3", "a2"]
    assert names(f"createdAtLt={at2}") == ["a1", "a0"]
    assert names(f"createdAtLe={at2}") == ["a2", "a1", "a0"]
    assert names("createdAtLe=2025-01-01T00:00:02Z") == ["a2", "a1", "a0"]
    assert names("createdAtGe=2025-01-01T05:00:02%2B05:00") == ["a4", "a3", "a2"]
    assert names("createdAtGe=2025-01-01T05:00:02+05:00") == [
        "a4",
        "a3",
        "a2",
    ]  # '+' arrives as space
    assert names("updatedAtGt=2025-01-01T00:00:02.0005Z") == ["a4", "a3"]
    assert names("updatedAtLe=2025-01-01T00:00:02.000500Z") == ["a2", "a1", "a0"]
    assert names("limit=2") == ["a4", "a3"]
    assert names("limit=2.0") == ["a4", "a3"]
    assert names("limit=0") == []
    assert names(f"createdAtGt={at2}&limit=1") == ["a4"]


@pytest.mark.parametrize(
    "query,param",
    [
        ("createdAtGt=tomorrow", "createdAtGt"),
        ("updatedAtLe=2025-02-30T00:00:00Z", "updatedAtLe"),
        ("limit=1001", "limit"),
        ("limit=-3", "limit"),
        ("limit=ten", "limit"),
    ],
)
def test_bad_list_parameters_name_the_parameter(client, query, param):
    r = client.get("/assistant?" + query)
    assert r.status_code == 400 and param in r.get_json()["message"]


def test_created_at_from_a_response_pages_correctly(client):
    first = client.post("/assistant", json={"name": "one"}).get_json()
    second = client.post("/assistant", json={"name": "two"}).get_json()
    # a bound copied from a response (millisecond precision) excludes that object itself
    after_first = client.get(f"/assistant?createdAtGt={first['createdAt']}").get_json()
    assert first["id"] not in [a["id"] for a in after_first]
    upto_first = client.get(f"/assistant?createdAtLe={first['createdAt']}").get_json()
    assert first["id"] in [a["id"] for a in upto_first]
    assert (
        second["id"] not in [a["id"] for a in upto_first]
        or second["createdAt"] == first["createdAt"]
    )


@pytest.mark.parametrize(
    "body",
    [
        {"name": "a\u0000b"},
        {"metadata": {"k\u0000": 1}},
        {"endCallPhrases": ["bye", "x\u0000"]},
    ],
)
def test_nul_characters_are_400_not_500(client, body):
    r = client.post("/assistant", json=body)
    assert r.status_code == 400 and "NUL" in r.get_json()["message"]
