"""/credential: CRUD per provider, secrets sealed and never shown or logged, references block deletion."""

from __future__ import annotations

import json
import logging

import pytest

TRUNK_PW = "trunk-password-Q7rX9vLm2K"
OPENAI_KEY = "sk-test-openai-8f3kLq0ZpW"
HMAC_KEY = "hmac-secret-Zt5yWq81Hd"
BEARER = "bearer-token-Jk29xVb7Ns"
OAUTH_SECRET = "oauth-client-secret-Pq4Lm"
HEADER_VALUE = "header-secret-Yc83Bn0Qa1"
TWILIO_TOKEN = "twilio-auth-token-Rw62Hs"
VONAGE_SECRET = "vonage-api-secret-Ex58Tp"
LLM_KEY = "custom-llm-key-Nm47Gz0Kd"

BODIES = {
    "openai": ({"provider": "openai", "name": "oa", "apiKey": OPENAI_KEY}, [OPENAI_KEY]),
    "11labs": (
        {"provider": "11labs", "apiKey": OPENAI_KEY + "11", "apiUrl": "https://api.example.com"},
        [OPENAI_KEY + "11"],
    ),
    "custom-llm": (
        {"provider": "custom-llm", "apiKey": LLM_KEY, "url": "http://127.0.0.1:8080/v1"},
        [LLM_KEY],
    ),
    "byo-sip-trunk": (
        {
            "provider": "byo-sip-trunk",
            "name": "carrier",
            "gateways": [
                {"ip": "192.0.2.10", "port": 5060, "netmask": 32, "outboundProtocol": "udp"},
                {"ip": "sip.carrier.example", "inboundEnabled": False},
            ],
            "outboundAuthenticationPlan": {
                "authUsername": "acct",
                "authPassword": TRUNK_PW,
                "realm": "carrier.example",
                "sipRegisterPlan": {"domain": "carrier.example", "username": "acct"},
            },
            "outboundLeadingPlusEnabled": True,
            "techPrefix": "99",
            "sipDiversionHeader": "sip:+14155550100@carrier.example",
        },
        [TRUNK_PW],
    ),
    "webhook-bearer": (
        {
            "provider": "webhook",
            "authenticationPlan": {
                "type": "bearer",
                "token": BEARER,
                "headerName": "X-Vapi-Secret",
                "bearerPrefixEnabled": False,
            },
            "headers": {"X-Extra": HEADER_VALUE},
        },
        [BEARER, HEADER_VALUE],
    ),
    "webhook-hmac": (
        {
            "provider": "webhook",
            "authenticationPlan": {
                "type": "hmac",
                "secretKey": HMAC_KEY,
                "algorithm": "sha256",
                "payloadFormat": "{timestamp}.{body}",
                "signatureHeader": "x-signature",
                "timestampHeader": "x-timestamp",
                "signatureEncoding": "hex",
                "signaturePrefix": "sha256=",
                "secretIsBase64": False,
                "includeTimestamp": True,
                "messageIdHeader": "svix-id",
            },
        },
        [HMAC_KEY],
    ),
    "custom-credential-oauth2": (
        {
            "provider": "custom-credential",
            "authenticationPlan": {
                "type": "oauth2",
                "url": "https://auth.example.com/token",
                "clientId": "client-1",
                "clientSecret": OAUTH_SECRET,
                "scope": "calls",
            },
        },
        [OAUTH_SECRET],
    ),
    "twilio": (
        {"provider": "twilio", "accountSid": "AC123", "authToken": TWILIO_TOKEN},
        [TWILIO_TOKEN],
    ),
    "vonage": (
        {"provider": "vonage", "apiKey": "vonage-key", "apiSecret": VONAGE_SECRET},
        [VONAGE_SECRET],
    ),
}


@pytest.fixture
def log_records():
    """Every record logged under the esl_controller tree during the test (at DEBUG)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    logger = logging.getLogger("esl_controller")
    handler = Keep(level=logging.DEBUG)
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(old_level)


def assert_error(resp, status=400):
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.get_json()
    assert set(body) == {"statusCode", "error", "message"}
    assert body["statusCode"] == status
    return body["message"] if isinstance(body["message"], str) else " | ".join(body["message"])


def raw_rows(database, table):
    with database.connection_context():
        cursor = database.execute_sql(f"SELECT * FROM {table}")
        return [" ".join(str(v) for v in row) for row in cursor.fetchall()]


def load_secrets(app, database, credential_id):
    from api.routes.credentials import load_credential_secrets

    with app.app_context(), database.connection_context():
        return load_credential_secrets(credential_id)


def assert_hidden(resp, secrets):
    text = resp.get_data(as_text=True)
    for secret in secrets:
        assert secret not in text


@pytest.mark.parametrize("kind", list(BODIES))
def test_round_trip_hides_secrets(client, app, database, log_records, kind):
    body, secrets = BODIES[kind]
    created = client.post("/credential", json=body)
    assert created.status_code == 201, created.get_data(as_text=True)
    obj = created.get_json()
    assert obj["provider"] == body["provider"]
    assert {"id", "orgId", "createdAt", "updatedAt"} <= set(obj)
    assert "****" in json.dumps(obj)
    responses = [created]
    responses.append(client.get(f"/credential/{obj['id']}"))
    assert responses[-1].get_json() == obj
    listed = client.get("/credential")
    responses.append(listed)
    assert [c["id"] for c in listed.get_json()] == [obj["id"]]
    patched = client.patch(f"/credential/{obj['id']}", json={"name": "renamed"})
    responses.append(patched)
    assert patched.status_code == 200 and patched.get_json()["name"] == "renamed"
    assert patched.get_json()["provider"] == body["provider"]

    # non-secret fields come back as sent
    for key, value in body.items():
        if key in ("name",) or not isinstance(value, (str, bool, list)):
            continue
        if value not in secrets:
            assert patched.get_json()[key] == value

    # the decrypted view still holds every secret after the partial update
    full = load_secrets(app, database, obj["id"])
    flat = json.dumps(full)
    for secret in secrets:
        assert secret in flat
    assert full["provider"] == body["provider"] and full["name"] == "renamed"

    # at rest: sealed, not in any column
    for row in raw_rows(database, "credential"):
        for secret in secrets:
            assert secret not in row

    deleted = client.delete(f"/credential/{obj['id']}")
    responses.append(deleted)
    assert deleted.status_code == 200 and deleted.get_json()["id"] == obj["id"]
    assert deleted.get_json()["provider"] == body["provider"]
    assert_error(client.get(f"/credential/{obj['id']}"), 404)

    for resp in responses:
        assert_hidden(resp, secrets)
    for record in log_records:
        text = record.getMessage() + str(record.args) + str(record.exc_text or "")
        for secret in secrets:
            assert secret not in text


def test_patch_replaces_secret_and_keeps_other_fields(client, app, database):
    body, _ = BODIES["byo-sip-trunk"]
    cid = client.post("/credential", json=body).get_json()["id"]
    new_pw = "new-trunk-password-Hb3Wz9"
    resp = client.patch(
        f"/credential/{cid}", json={"outboundAuthenticationPlan": {"authPassword": new_pw}}
    )
    assert resp.status_code == 200
    out = resp.get_json()
    assert out["outboundAuthenticationPlan"]["authPassword"] == "****" + new_pw[-4:]
    assert out["outboundAuthenticationPlan"]["authUsername"] == "acct"  # merged, not replaced
    assert out["gateways"] == body["gateways"]
    assert out["techPrefix"] == "99"
    assert new_pw not in resp.get_data(as_text=True)
    full = load_secrets(app, database, cid)
    assert full["outboundAuthenticationPlan"]["authPassword"] == new_pw
    rows = " ".join(raw_rows(database, "credential"))
    assert new_pw not in rows and TRUNK_PW not in rows


def test_patch_switching_plan_type_needs_its_secret(client, app, database):
    body, _ = BODIES["webhook-hmac"]
    cid = client.post("/credential", json=body).get_json()["id"]
    # changing the plan's type replaces the plan: the new type's secret is required
    msg = assert_error(
        client.patch(f"/credential/{cid}", json={"authenticationPlan": {"type": "bearer"}})
    )
    assert "token" in msg
    resp = client.patch(
        f"/credential/{cid}", json={"authenticationPlan": {"type": "bearer", "token": BEARER}}
    )
    assert resp.status_code == 200
    assert resp.get_json()["authenticationPlan"] == {
        "type": "bearer",
        "token": "****" + BEARER[-4:],
    }
    full = load_secrets(app, database, cid)
    assert full["authenticationPlan"] == {"type": "bearer", "token": BEARER}
    assert HMAC_KEY not in json.dumps(full)


def test_provider_cannot_change(client):
    cid = client.post("/credential", json=BODIES["openai"][0]).get_json()["id"]
    assert "provider" in assert_error(client.patch(f"/credential/{cid}", json={"provider": "groq"}))
    same = client.patch(f"/credential/{cid}", json={"provider": "openai", "name": "x"})
    assert same.status_code == 200


@pytest.mark.parametrize(
    "body, needle",
    [
        ({"provider": "openai", "apiKey": OPENAI_KEY, "bogus": 1}, "bogus"),
        ({"provider": "openai", "apiKey": 12345}, "apiKey"),
        ({"provider": "openai"}, "apiKey"),
        ({"provider": "openai", "apiKey": OPENAI_KEY, "apiUrl": "ftp://x"}, "apiUrl"),
        ({"provider": "no-such-provider", "apiKey": "x"}, "provider"),
        ({"apiKey": OPENAI_KEY}, "provider"),
        ({"provider": 7, "apiKey": OPENAI_KEY}, "provider"),
        ({"provider": "byo-sip-trunk"}, "gateways"),
        ({"provider": "byo-sip-trunk", "gateways": []}, "gateways"),
        ({"provider": "byo-sip-trunk", "gateways": "10.0.0.1"}, "gateways"),
        ({"provider": "byo-sip-trunk", "gateways": [{"ip": "not a host!"}]}, "ip"),
        ({"provider": "byo-sip-trunk", "gateways": [{"ip": "999.1.1.1"}]}, "ip"),
        ({"provider": "byo-sip-trunk", "gateways": [{"ip": "10.0.0.1", "port": 70000}]}, "port"),
        ({"provider": "byo-sip-trunk", "gateways": [{"ip": "10.0.0.1", "port": "x"}]}, "port"),
        (
            {
                "provider": "byo-sip-trunk",
                "gateways": [{"ip": "10.0.0.1"}],
                "outboundAuthenticationPlan": {"authUsername": "u"},
            },
            "authPassword",
        ),
        (
            {
                "provider": "byo-sip-trunk",
                "gateways": [{"ip": "10.0.0.1"}],
                "outboundAuthenticationPlan": {"authPassword": TRUNK_PW, "pin": "1234"},
            },
            "pin",
        ),
        ({"provider": "webhook"}, "authenticationPlan"),
        ({"provider": "webhook", "authenticationPlan": {"type": "magic"}}, "authenticationPlan"),
        ({"provider": "webhook", "authenticationPlan": {"type": "bearer"}}, "token"),
        (
            {
                "provider": "webhook",
                "authenticationPlan": {"type": "hmac", "secretKey": HMAC_KEY, "algorithm": "md5"},
            },
            "algorithm",
        ),
        ({"provider": "webhook", "headers": {"Bad Header": "v"}}, "header"),
        ({"provider": "twilio", "accountSid": "AC1"}, "authToken"),
        ({"provider": "openai", "apiKey": OPENAI_KEY, "name": "a\x00b"}, "NUL"),
    ],
)
def test_bad_bodies_are_400(client, log_records, body, needle):
    resp = client.post("/credential", json=body)
    assert needle in assert_error(resp)
    for secret in (OPENAI_KEY, TRUNK_PW, HMAC_KEY):
        assert secret not in resp.get_data(as_text=True)
    for record in log_records:
        for secret in (OPENAI_KEY, TRUNK_PW, HMAC_KEY):
            assert secret not in record.getMessage()
    assert client.get("/credential").get_json() == []


def test_bad_requests(client):
    assert_error(client.get("/credential/not-a-uuid"))
    assert_error(client.patch("/credential/not-a-uuid", json={"name": "x"}))
    assert_error(client.delete("/credential/123"))
    assert_error(client.get("/credential/00000000-0000-4000-8000-000000000001"), 404)
    bad_json = client.post("/credential", data="{nope", content_type="application/json")
    assert_error(bad_json)
    assert_error(client.post("/credential", json=["provider", "openai"]))
    assert_error(client.post("/credential", data="x", content_type="text/plain"), 415)
    assert_error(client.get("/credential?limit=abc"))
    assert_error(client.get("/credential?createdAtGt=yesterday"))


def _assistant(client, **extra):
    resp = client.post("/assistant", json={"name": "a", **extra})
    assert resp.status_code == 201, resp.get_data(as_text=True)
    return resp.get_json()["id"]


def test_delete_blocked_while_referenced(client):
    trunk = client.post("/credential", json=BODIES["byo-sip-trunk"][0]).get_json()["id"]
    hook = client.post("/credential", json=BODIES["webhook-hmac"][0]).get_json()["id"]
    key = client.post("/credential", json=BODIES["openai"][0]).get_json()["id"]

    phone = client.post(
        "/phone-number",
        json={"provider": "byo-phone-number", "number": "+14155550123", "credentialId": trunk},
    ).get_json()["id"]
    msg = assert_error(client.delete(f"/credential/{trunk}"))
    assert f"phone number {phone}" in msg

    tool = client.post(
        "/tool",
        json={
            "type": "apiRequest",
            "method": "POST",
            "url": "https://api.example.com/x",
            "credentialId": hook,
        },
    ).get_json()["id"]
    endpoint = client.post(
        "/webhook-endpoint", json={"url": "https://hooks.example.com/in", "credentialId": hook}
    ).get_json()["id"]
    msg = assert_error(client.delete(f"/credential/{hook}"))
    assert f"tool {tool}" in msg and f"webhook endpoint {endpoint}" in msg

    assistant = _assistant(client, credentialIds=[key])
    assert f"assistant {assistant}" in assert_error(client.delete(f"/credential/{key}"))

    # once the referrers are gone the credential can be deleted
    assert client.delete(f"/phone-number/{phone}").status_code == 200
    assert client.delete(f"/credential/{trunk}").status_code == 200
    assert client.delete(f"/tool/{tool}").status_code == 200
    assert client.delete(f"/webhook-endpoint/{endpoint}").status_code == 200
    assert client.delete(f"/credential/{hook}").status_code == 200
    assert client.get(f"/credential/{hook}").status_code == 404


def test_list_filters(client):
    ids = [
        client.post("/credential", json={**BODIES["openai"][0], "name": f"k{i}"}).get_json()["id"]
        for i in range(3)
    ]
    listed = client.get("/credential?limit=2.0").get_json()
    assert [c["id"] for c in listed] == ids[::-1][:2]
    first = client.get(f"/credential/{ids[0]}").get_json()
    assert client.get(f"/credential?createdAtLt={first['createdAt']}").get_json() == []
    since = client.get(f"/credential?createdAtGe={first['createdAt']}").get_json()
    assert [c["id"] for c in since] == ids[::-1]
    assert client.get("/credential?limit=0").get_json() == []


def test_load_credential_secrets_missing(app, database):
    from api.routes.credentials import load_credential_secrets

    with app.app_context(), database.connection_context():
        with pytest.raises(LookupError):
            load_credential_secrets("00000000-0000-4000-8000-000000000009")


FUZZ_VALUES = [
    None, True, 0, -1, 1e308, "", "x", "a\x00b", "+14155550123", "sip:a@b.example",
    "https://a.example", [], [1], [{}], {}, {"type": "bearer"}, "00000000-0000-4000-8000-000000000001",
    "é" * 300,
]  # fmt: skip
FUZZ_KEYS = {
    "/credential": ("provider", "name", "apiKey", "apiUrl", "gateways", "outboundAuthenticationPlan",
                    "authenticationPlan", "headers", "url", "accountSid"),
    "/phone-number": ("provider", "name", "number", "sipUri", "credentialId", "assistantId", "server",
                      "fallbackDestination", "authentication", "numberE164CheckEnabled", "hooks"),
    "/tool": ("type", "function", "server", "messages", "destinations", "method", "url",
              "credentialId", "body", "async"),
    "/webhook-endpoint": ("url", "scope", "scopeId", "events", "enabled", "credentialId", "headers",
                          "name", "timeoutSeconds"),
}  # fmt: skip
FUZZ_KINDS = {
    "/credential": ("provider", ["openai", "byo-sip-trunk", "webhook", "custom-llm", "twilio"]),
    "/phone-number": ("provider", ["vapi", "byo-phone-number", "twilio"]),
    "/tool": ("type", ["function", "apiRequest", "transferCall", "handoff", "sms"]),
    "/webhook-endpoint": ("url", ["https://hooks.example.com/x"]),
}


def test_random_bodies_never_500(client):
    """Seeded random bodies (right keys, wrong values) on create and update: always 2xx or 4xx."""
    import random

    rnd = random.Random(20240607)
    seeds = {
        "/credential": BODIES["openai"][0],
        "/phone-number": {"provider": "vapi", "sipUri": "sip:seed@pbx.example.com"},
        "/tool": {"type": "endCall"},
        "/webhook-endpoint": {"url": "https://hooks.example.com/seed"},
    }
    made = {path: [client.post(path, json=body).get_json()["id"]] for path, body in seeds.items()}
    fuzzed_creates = 0
    for _ in range(400):
        path = rnd.choice(list(FUZZ_KEYS))
        keys = rnd.sample(FUZZ_KEYS[path], rnd.randint(0, 4))
        body = {k: rnd.choice(FUZZ_VALUES) for k in keys}
        disc, kinds = FUZZ_KINDS[path]
        if rnd.random() < 0.8:
            body[disc] = rnd.choice(kinds)
        resp = client.post(path, json=body)
        assert resp.status_code < 500, (path, body, resp.get_json())
        if resp.status_code == 201:
            fuzzed_creates += 1
            made[path].append(resp.get_json()["id"])
        body.pop(disc if path != "/webhook-endpoint" else "", None)
        resp = client.patch(f"{path}/{rnd.choice(made[path])}", json=body)
        assert resp.status_code < 500, ("PATCH", path, body, resp.get_json())
    assert fuzzed_creates > 10  # the bodies were not all trivially rejected
