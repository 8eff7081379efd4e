"""Request signing: vectors computed here with hmac/hashlib, verification round trips, masking."""

import base64
import hashlib
import hmac
import json
import re
import time
from pathlib import Path

import pytest

from esl_controller.webhooks.signing import (
    BearerAuth,
    HmacAuth,
    OAuth2Auth,
    SecretHeaderAuth,
    SigningError,
    auth_from_plan,
    mask_headers,
    secret_header_names,
    sign_request,
    signed_payload,
    verify,
)

BODY = json.dumps({"message": {"type": "status-update", "status": "ended"}}).encode()
URL = "https://hooks.example.test/vapi"
TS = 1_767_225_600  # 2026-01-01T00:00:00Z


def test_default_hmac_is_sha256_hex_over_timestamp_dot_body():
    auth = auth_from_plan({"type": "hmac", "secretKey": "s3cret"})
    headers = sign_request(body=BODY, url=URL, auths=[auth], timestamp=TS)
    expected = hmac.new(b"s3cret", f"{TS}.".encode() + BODY, hashlib.sha256).hexdigest()
    assert headers["x-signature"] == expected
    assert headers["x-timestamp"] == str(TS)
    assert headers["Content-Type"] == "application/json"
    assert verify(auth, headers=headers, body=BODY, now=TS + 10).ok


def test_known_vector_is_independent_of_our_code():
    # RFC 4231 test case 2 key/data, with our template reduced to the body alone
    auth = HmacAuth(secret_key="Jefe", include_timestamp=False)
    headers = sign_request(
        body=b"what do ya want for nothing?", url=URL, auths=[auth], timestamp=TS
    )
    assert (
        headers["x-signature"] == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )
    assert "x-timestamp" not in headers


@pytest.mark.parametrize("algorithm", ["sha256", "sha512", "sha1"])
@pytest.mark.parametrize("encoding", ["hex", "base64"])
def test_algorithms_encodings_prefix_and_template(algorithm, encoding):
    plan = {
        "type": "hmac",
        "secretKey": base64.b64encode(b"\x00\x01binary-key").decode(),
        "secretIsBase64": True,
        "algorithm": algorithm,
        "signatureEncoding": encoding,
        "signaturePrefix": f"{algorithm}=",
        "payloadFormat": "{method}\n{url}\n{svix-id}\n{timestamp}\n{body}",
        "signatureHeader": "X-Hook-Signature",
        "timestampHeader": "X-Hook-Time",
        "messageIdHeader": "webhook-id",
    }
    auth = auth_from_plan(plan)
    headers = sign_request(body=BODY, url=URL, auths=[auth], timestamp=TS, message_id="job-42")
    payload = f"POST\n{URL}\njob-42\n{TS}\n".encode() + BODY
    digest = hmac.new(b"\x00\x01binary-key", payload, getattr(hashlib, algorithm)).digest()
    value = digest.hex() if encoding == "hex" else base64.b64encode(digest).decode()
    assert headers["X-Hook-Signature"] == f"{algorithm}={value}"
    assert headers["X-Hook-Time"] == str(TS)
    assert headers["webhook-id"] == "job-42"
    # a receiver sees lower-cased header names
    received = {k.lower(): v for k, v in headers.items()}
    assert verify(auth, headers=received, body=BODY, url=URL, now=TS).ok
    assert not verify(
        auth, headers={**received, "webhook-id": "job-43"}, body=BODY, url=URL, now=TS
    ).ok


def test_signed_payload_keeps_body_bytes_verbatim():
    body = '{"t":"caf\u00e9"}'.encode()
    auth = HmacAuth(secret_key="k")
    assert (
        signed_payload(auth, body=body, timestamp="1", method="post", url="", message_id="")
        == b"1." + body
    )


def test_verify_rejects_tampering_stale_and_missing():
    auth = HmacAuth(secret_key="k")
    headers = sign_request(body=BODY, url=URL, auths=[auth], timestamp=TS)
    assert (
        verify(auth, headers=headers, body=BODY + b" ", now=TS).reason == "signature does not match"
    )
    assert "tolerance" in verify(auth, headers=headers, body=BODY, now=TS + 301).reason
    assert "tolerance" in verify(auth, headers=headers, body=BODY, now=TS - 301).reason
    assert verify(auth, headers=headers, body=BODY, now=TS + 301, tolerance_seconds=600).ok
    no_sig = {k: v for k, v in headers.items() if k != "x-signature"}
    assert verify(auth, headers=no_sig, body=BODY, now=TS).reason == "missing x-signature header"
    no_ts = {k: v for k, v in headers.items() if k != "x-timestamp"}
    assert not verify(auth, headers=no_ts, body=BODY, now=TS).ok
    other = HmacAuth(secret_key="other")
    assert not verify(other, headers=headers, body=BODY, now=TS).ok
    # a timestamp moved forward without re-signing fails
    moved = {**headers, "x-timestamp": str(TS + 5)}
    assert not verify(auth, headers=moved, body=BODY, now=TS).ok


def test_legacy_secret_bearer_and_static_headers():
    auths = [
        SecretHeaderAuth("legacy-1234"),
        auth_from_plan({"type": "bearer", "token": "tok-5678"}),
    ]
    headers = sign_request(body=BODY, url=URL, auths=auths, static_headers={"X-Tenant": "a"})
    assert headers["X-Vapi-Secret"] == "legacy-1234"
    assert headers["Authorization"] == "Bearer tok-5678"
    assert headers["X-Tenant"] == "a"
    assert verify(auths[0], headers=headers, body=BODY).ok
    assert verify(auths[1], headers={"authorization": "Bearer tok-5678"}, body=BODY).ok
    assert not verify(auths[1], headers={"authorization": "Bearer tok-5679"}, body=BODY).ok
    # Vapi's documented replacement for server.secret
    plain = auth_from_plan(
        {
            "type": "bearer",
            "token": "s",
            "headerName": "X-Vapi-Secret",
            "bearerPrefixEnabled": False,
        }
    )
    assert sign_request(body=b"{}", url=URL, auths=[plain])["X-Vapi-Secret"] == "s"


def test_oauth2_needs_a_fetched_token():
    auth = auth_from_plan(
        {"type": "oauth2", "url": "https://idp.test/t", "clientId": "c", "clientSecret": "x"}
    )
    assert isinstance(auth, OAuth2Auth)
    with pytest.raises(SigningError):
        sign_request(body=b"{}", url=URL, auths=[auth])
    assert (
        sign_request(body=b"{}", url=URL, auths=[auth], oauth_token="at")["Authorization"]
        == "Bearer at"
    )


@pytest.mark.parametrize(
    ("plan", "field"),
    [
        ({"type": "hmac", "secretKey": "k", "algorithm": "md5"}, "hmac.algorithm"),
        (
            {"type": "hmac", "secretKey": "k", "signatureEncoding": "base32"},
            "hmac.signatureEncoding",
        ),
        (
            {"type": "hmac", "secretKey": "k", "payloadFormat": "{nonce}.{body}"},
            "hmac.payloadFormat",
        ),
        ({"type": "hmac", "secretKey": "not base64!", "secretIsBase64": True}, "hmac.secretKey"),
        ({"type": "hmac"}, "hmac.secretKey"),
        (
            {
                "type": "hmac",
                "secretKey": "k",
                "includeTimestamp": False,
                "payloadFormat": "{timestamp}:{body}",
            },
            "hmac.payloadFormat",
        ),
        ({"type": "bearer"}, "bearer.token"),
        ({"type": "oauth2", "url": "u"}, "oauth2.clientId"),
        ({"type": "basic"}, "authenticationPlan.type"),
    ],
)
def test_bad_plans_name_the_field(plan, field):
    with pytest.raises(SigningError) as info:
        auth_from_plan(plan)
    assert str(info.value).startswith(field)


def test_secrets_do_not_show_in_repr():
    for auth in (
        HmacAuth(secret_key="hush-hush"),
        BearerAuth("hush-hush"),
        SecretHeaderAuth("hush-hush"),
    ):
        assert "hush-hush" not in repr(auth)


def test_mask_headers():
    auths = [SecretHeaderAuth("s1"), BearerAuth("t1", header_name="X-Custom-Bearer"), HmacAuth("k")]
    headers = sign_request(
        body=BODY,
        url=URL,
        auths=auths,
        timestamp=TS,
        static_headers={"X-Api-Key": "k2", "X-Env": "prod"},
    )
    headers["Authorization"] = "Bearer zzz"
    masked = mask_headers(headers, secret_header_names(auths))
    assert masked["X-Vapi-Secret"] == "***"
    assert masked["X-Custom-Bearer"] == "Bearer ***"
    assert masked["Authorization"] == "Bearer ***"
    assert masked["X-Api-Key"] == "***"
    assert masked["X-Env"] == "prod"
    # the HMAC signature cannot reveal the key and helps debug receivers: kept
    assert masked["x-signature"] == headers["x-signature"]
    assert "s1" not in json.dumps(masked) and "t1" not in json.dumps(masked)
    assert mask_headers([("X-Thing", "v")], ["x-thing"]) == {"X-Thing": "***"}


def test_docs_verification_snippet_accepts_our_signatures():
    doc = (Path(__file__).resolve().parents[2] / "docs" / "webhooks.md").read_text()
    block = next(
        b for b in re.findall(r"```python\n(.*?)```", doc, re.S) if "def verify_webhook" in b
    )
    namespace: dict = {}
    exec(compile(block, "docs/webhooks.md", "exec"), namespace)
    verify_webhook = namespace["verify_webhook"]
    now = int(time.time())
    headers = sign_request(body=BODY, url=URL, auths=[HmacAuth("shh")], timestamp=now)
    assert verify_webhook("shh", headers, BODY)
    assert not verify_webhook("shh", headers, BODY + b"x")
    assert not verify_webhook("other", headers, BODY)
    stale = sign_request(body=BODY, url=URL, auths=[HmacAuth("shh")], timestamp=now - 3600)
    assert not verify_webhook("shh", stale, BODY)
