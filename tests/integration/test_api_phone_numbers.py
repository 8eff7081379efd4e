"""/phone-number: every provider, references, uniqueness, sealed SIP passwords and inbound lookup."""

from __future__ import annotations

import logging

import pytest

SIP_PW = "sip-password-Vb73Kq0Lz"
TWILIO_TOKEN = "twilio-token-Hs81Pw4Cm"
MISSING = "00000000-0000-4000-8000-00000000dead"


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
def trunk(client):
    return created(
        client.post(
            "/credential",
            json={
                "provider": "byo-sip-trunk",
                "gateways": [{"ip": "192.0.2.1"}],
                "outboundAuthenticationPlan": {"authUsername": "u", "authPassword": "p" * 16},
            },
        )
    )["id"]


@pytest.fixture
def assistant(client):
    return created(client.post("/assistant", json={"name": "receptionist"}))["id"]


def byo(trunk, number="+14155550123", **extra):
    return {"provider": "byo-phone-number", "number": number, "credentialId": trunk, **extra}


def test_byo_round_trip(client, trunk, assistant):
    body = byo(
        trunk,
        name="main line",
        assistantId=assistant,
        server={"url": "https://hooks.example.com/vapi", "timeoutSeconds": 20},
        fallbackDestination={"type": "number", "number": "+14155550999"},
        hooks=[{"on": "call.ringing", "do": [{"type": "say", "exact": "hi"}]}],
    )
    obj = created(client.post("/phone-number", json=body))
    assert obj["provider"] == "byo-phone-number" and obj["status"] == "active"
    assert obj["assistantId"] == assistant and obj["credentialId"] == trunk
    assert obj["number"] == "+14155550123" and obj["name"] == "main line"
    assert obj["fallbackDestination"] == body["fallbackDestination"]
    assert {"id", "orgId", "createdAt", "updatedAt"} <= set(obj)
    assert client.get(f"/phone-number/{obj['id']}").get_json() == obj
    listed = client.get("/phone-number").get_json()
    assert [(p["id"], p["provider"]) for p in listed] == [(obj["id"], "byo-phone-number")]

    patched = client.patch(f"/phone-number/{obj['id']}", json={"name": "renamed"}).get_json()
    assert patched["name"] == "renamed"
    for key in ("number", "assistantId", "credentialId", "server", "hooks", "provider"):
        assert patched[key] == obj[key]

    unbound = client.patch(f"/phone-number/{obj['id']}", json={"assistantId": None}).get_json()
    assert "assistantId" not in unbound and unbound["name"] == "renamed"

    deleted = client.delete(f"/phone-number/{obj['id']}")
    assert deleted.status_code == 200
    assert deleted.get_json()["id"] == obj["id"]
    assert deleted.get_json()["provider"] == "byo-phone-number"
    assert_error(client.get(f"/phone-number/{obj['id']}"), 404)


def test_vapi_sip_uri_password_sealed(client, app, database):
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    logger = logging.getLogger("esl_controller")
    handler, old = Keep(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        body = {
            "provider": "vapi",
            "sipUri": "sip:frontdesk@pbx.example.com",
            "authentication": {"realm": "pbx.example.com", "username": "fd", "password": SIP_PW},
        }
        resp = client.post("/phone-number", json=body)
        obj = created(resp)
        assert obj["provider"] == "vapi" and obj["sipUri"] == body["sipUri"]
        assert obj["authentication"]["password"] == "****" + SIP_PW[-4:]
        assert obj["authentication"]["username"] == "fd"
        responses = [resp, client.get(f"/phone-number/{obj['id']}"), client.get("/phone-number")]
        patched = client.patch(
            f"/phone-number/{obj['id']}", json={"authentication": {"username": "fd2"}}
        )
        responses.append(patched)
        assert patched.get_json()["authentication"] == {
            "realm": "pbx.example.com",
            "username": "fd2",
            "password": "****" + SIP_PW[-4:],
        }
        with database.connection_context():
            rows = database.execute_sql("SELECT * FROM phone_number").fetchall()
        assert SIP_PW not in repr(rows)

        from api.routes.phone_numbers import full_body
        from esl_controller.db.models import PhoneNumber

        with app.app_context(), database.connection_context():
            full = full_body(PhoneNumber.get_by_id(obj["id"]))
        assert full["authentication"]["password"] == SIP_PW

        responses.append(client.delete(f"/phone-number/{obj['id']}"))
        for r in responses:
            assert r.status_code in (200, 201)
            assert SIP_PW not in r.get_data(as_text=True)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)
    for record in records:
        assert SIP_PW not in record.getMessage()


def test_other_providers_stored(client):
    vonage = created(
        client.post(
            "/credential", json={"provider": "vonage", "apiKey": "k", "apiSecret": "s" * 16}
        )
    )["id"]
    telnyx = created(client.post("/credential", json={"provider": "telnyx", "apiKey": "t" * 20}))[
        "id"
    ]
    tw = created(
        client.post(
            "/phone-number",
            json={
                "provider": "twilio",
                "number": "+14155550001",
                "twilioAccountSid": "AC1",
                "twilioAuthToken": TWILIO_TOKEN,
                "smsEnabled": False,
            },
        )
    )
    assert tw["provider"] == "twilio" and tw["twilioAuthToken"] == "****" + TWILIO_TOKEN[-4:]
    vo = created(
        client.post(
            "/phone-number",
            json={"provider": "vonage", "number": "+14155550002", "credentialId": vonage},
        )
    )
    assert vo["provider"] == "vonage" and vo["credentialId"] == vonage
    te = created(
        client.post(
            "/phone-number",
            json={"provider": "telnyx", "number": "+14155550003", "credentialId": telnyx},
        )
    )
    assert te["provider"] == "telnyx"
    listed = client.get("/phone-number").get_json()
    assert [p["provider"] for p in listed] == ["telnyx", "vonage", "twilio"]
    assert TWILIO_TOKEN not in str(listed)
    # a vonage number needs a vonage credential
    msg = assert_error(
        client.post(
            "/phone-number",
            json={"provider": "vonage", "number": "+14155550004", "credentialId": telnyx},
        )
    )
    assert "telnyx credential" in msg and "vonage" in msg
    assert "credentialId" in assert_error(
        client.post("/phone-number", json={"provider": "telnyx", "number": "+14155550005"})
    )


def test_number_validation(client, trunk):
    assert "E.164" in assert_error(client.post("/phone-number", json=byo(trunk, "4155550123")))
    assert_error(client.post("/phone-number", json=byo(trunk, "+0155550123")))
    assert_error(client.post("/phone-number", json=byo(trunk, "+1415555012345678")))
    loose = created(
        client.post("/phone-number", json=byo(trunk, "0044123", numberE164CheckEnabled=False))
    )
    assert loose["number"] == "0044123" and loose["numberE164CheckEnabled"] is False
    assert "digits" in assert_error(
        client.post("/phone-number", json=byo(trunk, "12ab", numberE164CheckEnabled=False))
    )
    assert_error(
        client.post("/phone-number", json=byo(trunk, "1" * 33, numberE164CheckEnabled=False))
    )


def test_duplicates_are_400(client, trunk):
    first = created(client.post("/phone-number", json=byo(trunk)))
    msg = assert_error(client.post("/phone-number", json=byo(trunk)))
    assert "already used" in msg and first["id"] in msg
    # the same digits without the + collide too
    assert_error(
        client.post("/phone-number", json=byo(trunk, "14155550123", numberE164CheckEnabled=False))
    )
    sip = {"provider": "vapi", "sipUri": "sip:desk@pbx.example.com"}
    created(client.post("/phone-number", json=sip))
    assert "sipUri" in assert_error(client.post("/phone-number", json=sip))
    # PATCH onto another number's value is refused; re-sending its own value is fine
    second = created(client.post("/phone-number", json=byo(trunk, "+14155550124")))
    assert_error(client.patch(f"/phone-number/{second['id']}", json={"number": "+14155550123"}))
    same = client.patch(f"/phone-number/{second['id']}", json={"number": "+14155550124"})
    assert same.status_code == 200
    assert len(client.get("/phone-number").get_json()) == 3


def test_references(client, trunk, assistant):
    assert f"assistant {MISSING}" in assert_error(
        client.post("/phone-number", json=byo(trunk, assistantId=MISSING))
    )
    assert f"credential {MISSING}" in assert_error(client.post("/phone-number", json=byo(MISSING)))
    key = created(client.post("/credential", json={"provider": "openai", "apiKey": "k" * 20}))["id"]
    assert "byo-sip-trunk" in assert_error(client.post("/phone-number", json=byo(key)))
    assert "credentialId" in assert_error(
        client.post(
            "/phone-number", json={"provider": "byo-phone-number", "number": "+14155550123"}
        )
    )
    assert "server.credentialId" in assert_error(
        client.post(
            "/phone-number",
            json=byo(trunk, server={"url": "https://x.example", "credentialId": MISSING}),
        )
    )
    obj = created(client.post("/phone-number", json=byo(trunk, assistantId=assistant)))
    assert_error(client.patch(f"/phone-number/{obj['id']}", json={"assistantId": MISSING}))
    assert client.get(f"/phone-number/{obj['id']}").get_json()["assistantId"] == assistant
    # deleting the assistant unbinds the number
    assert client.delete(f"/assistant/{assistant}").status_code == 200
    assert "assistantId" not in client.get(f"/phone-number/{obj['id']}").get_json()


@pytest.mark.parametrize(
    "body, needle",
    [
        (
            {"provider": "byo-phone-number", "number": "+14155550123", "credentialId": "nope"},
            "UUID",
        ),
        ({"provider": "vapi", "sipUri": "not a uri"}, "sipUri"),
        ({"provider": "vapi", "sipUri": "http://example.com"}, "sipUri"),
        ({"provider": "vapi"}, "sipUri"),
        (
            {"provider": "vapi", "sipUri": "sip:a@b.example", "authentication": {"username": "u"}},
            "password",
        ),
        ({"provider": "vapi", "sipUri": "sip:a@b.example", "bogus": True}, "bogus"),
        ({"provider": "vapi", "sipUri": "sip:a@b.example", "name": 5}, "name"),
        (
            {
                "provider": "vapi",
                "sipUri": "sip:a@b.example",
                "fallbackDestination": {"type": "number", "number": "123"},
            },
            "number",
        ),
        (
            {"provider": "vapi", "sipUri": "sip:a@b.example", "server": {"url": "ftp://x"}},
            "server.url",
        ),
        ({"provider": "magic", "number": "+14155550123"}, "provider"),
        ({"number": "+14155550123"}, "provider"),
        ({"provider": "twilio", "number": "+14155550123"}, "twilioAccountSid"),
        ({"provider": "vapi", "sipUri": "sip:a@b.example", "name": "\x00"}, "NUL"),
    ],
)
def test_bad_bodies(client, body, needle):
    assert needle in assert_error(client.post("/phone-number", json=body))
    assert client.get("/phone-number").get_json() == []


def test_patch_rules(client, trunk):
    obj = created(client.post("/phone-number", json=byo(trunk)))
    assert "provider" in assert_error(
        client.patch(f"/phone-number/{obj['id']}", json={"provider": "vapi"})
    )
    assert "bogus" in assert_error(client.patch(f"/phone-number/{obj['id']}", json={"bogus": 1}))
    assert_error(client.patch(f"/phone-number/{obj['id']}", json={"number": 12}))
    assert_error(client.patch("/phone-number/xyz", json={"name": "a"}))
    assert_error(client.patch(f"/phone-number/{MISSING}", json={"name": "a"}), 404)
    assert client.get(f"/phone-number/{obj['id']}").get_json() == obj


def test_find_by_dialed(client, app, database, trunk):
    from api.routes.phone_numbers import find_by_dialed

    e164 = created(client.post("/phone-number", json=byo(trunk)))["id"]
    loose = created(
        client.post("/phone-number", json=byo(trunk, "0044207", numberE164CheckEnabled=False))
    )["id"]
    sip = created(
        client.post(
            "/phone-number", json={"provider": "vapi", "sipUri": "sip:Desk@pbx.example.com"}
        )
    )["id"]
    cases = {
        "+14155550123": e164,
        "14155550123": e164,
        "sip:+14155550123@carrier.example": e164,
        "0044207": loose,
        "+0044207": loose,
        "sip:Desk@pbx.example.com": sip,
        "Desk": sip,
        "sip:Desk@other.example": sip,
        "desk": None,
        "+14155550000": None,
        "": None,
        "sip:": None,
        "x" * 400: None,
    }
    with app.app_context(), database.connection_context():
        got = {dialed: getattr(find_by_dialed(dialed), "id", None) for dialed in cases}
    assert got == cases


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


def test_sdk_round_trip(sdk, client, trunk):
    from vapi.core.api_error import ApiError
    from vapi.phone_numbers.types.create_phone_numbers_request import (
        CreatePhoneNumbersRequest_ByoPhoneNumber,
        CreatePhoneNumbersRequest_Vapi,
    )
    from vapi.phone_numbers.types.update_phone_numbers_request_body import (
        UpdatePhoneNumbersRequestBody_Vapi,
    )
    from vapi.types.sip_authentication import SipAuthentication

    byo_number = sdk.phone_numbers.create(
        request=CreatePhoneNumbersRequest_ByoPhoneNumber(
            number="+14155550123", credential_id=trunk, name="byo"
        )
    )
    assert byo_number.provider == "byo-phone-number" and byo_number.credential_id == trunk
    sip = sdk.phone_numbers.create(
        request=CreatePhoneNumbersRequest_Vapi(
            sip_uri="sip:sdk@pbx.example.com",
            authentication=SipAuthentication(username="u", password=SIP_PW),
        )
    )
    assert sip.provider == "vapi" and sip.sip_uri == "sip:sdk@pbx.example.com"
    assert sip.authentication.password != SIP_PW
    listed = sdk.phone_numbers.list()
    assert [(p.id, p.provider) for p in listed] == [
        (sip.id, "vapi"),
        (byo_number.id, "byo-phone-number"),
    ]
    updated = sdk.phone_numbers.update(
        sip.id, request=UpdatePhoneNumbersRequestBody_Vapi(name="desk")
    )
    assert updated.name == "desk" and updated.sip_uri == sip.sip_uri
    assert sdk.phone_numbers.get(sip.id).name == "desk"
    assert sdk.phone_numbers.delete(sip.id).id == sip.id
    with pytest.raises(ApiError) as err:
        sdk.phone_numbers.get(sip.id)
    assert err.value.status_code == 404
    with pytest.raises(ApiError) as err:
        sdk.phone_numbers.create(
            request=CreatePhoneNumbersRequest_ByoPhoneNumber(
                number="+14155550123", credential_id=trunk
            )
        )
    assert err.value.status_code == 400
