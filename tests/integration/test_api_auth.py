"""The auth matrix: every route but health/ready/openapi refuses a missing or wrong key; good keys pass."""

import json
import re
import time

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

# public on purpose: liveness, readiness, the OpenAPI document, and the dashboard's pages and assets (they hold no
# data; every data call they make goes through the authenticated API; the web-call page is opened by its per-call
# token)
PUBLIC = {
    "/health",
    "/ready",
    "/openapi.json",
    "/dashboard/",
    "/dashboard/assets/<path:filename>",
    "/dashboard/config.json",
    "/dashboard/webcall/<id>",
    "/call/<id>/web",
}
FAKE_ID = "00000000-0000-4000-8000-00000000abcd"


def all_route_calls(app):
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^:<>]+:)?[^<>]+>", FAKE_ID, rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield rule.rule, method, path


def test_route_table_is_not_trivial(app):
    rules = {r.rule for r in app.url_map.iter_rules()}
    assert {"/assistant", "/assistant/<id>", "/call", "/call/<id>", "/health", "/ready"} <= rules


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": "Bearer "},
        {"Authorization": "Basic dXNlcjpwYXNz"},
        {"X-API-Key": "esk_not-a-real-key"},
        {"Authorization": "Bearer " + "x" * 5000},
        {"Authorization": "Bearer a.b.c"},
    ],
)
def test_every_private_route_refuses_bad_credentials(app, anon, headers):
    checked = 0
    for rule, method, path in all_route_calls(app):
        resp = anon.open(path, method=method, headers=headers, json={})
        if rule in PUBLIC:
            assert resp.status_code != 401, (method, rule)
            continue
        assert resp.status_code == 401, (method, rule, resp.status_code)
        body = resp.get_json()
        assert body == {"statusCode": 401, "error": "Unauthorized", "message": "Unauthorized"}
        checked += 1
    assert checked >= 9


def test_public_routes(anon):
    assert anon.get("/health").get_json() == {"status": "ok"}
    ready = anon.get("/ready")
    assert ready.status_code == 200 and ready.get_json()["checks"]["database"]["ok"] is True
    assert anon.get("/openapi.json").status_code == 200


def test_bearer_and_x_api_key_both_work(app, api_key):
    c = app.test_client()
    assert c.get("/assistant", headers={"Authorization": f"Bearer {api_key}"}).status_code == 200
    assert c.get("/assistant", headers={"authorization": f"bearer {api_key}"}).status_code == 200
    assert c.get("/assistant", headers={"X-API-Key": api_key}).status_code == 200
    assert c.get("/assistant", headers={"X-API-Key": api_key + "x"}).status_code == 401


def test_revoked_key_is_refused(app, api_key, database):
    from esl_controller.security.api_keys import revoke_key, verify_key

    c = app.test_client()
    assert c.get("/assistant", headers={"X-API-Key": api_key}).status_code == 200
    with database.connection_context():
        row = verify_key(api_key)
        assert row is not None and row.last_used_at is not None
        assert revoke_key(row.prefix) == 1
    assert c.get("/assistant", headers={"X-API-Key": api_key}).status_code == 401


def test_keys_are_stored_hashed(api_key, database):
    from esl_controller.db.models import ApiKey

    with database.connection_context():
        rows = list(ApiKey.select())
    assert rows and all(api_key not in (r.key_hash, r.prefix) for r in rows)
    assert all(api_key[12:] not in json.dumps(r.__data__, default=str) for r in rows)


# -- Supabase JWT ---------------------------------------------------------------------------------


@pytest.fixture
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def supa_app(tmp_path, settings, database, rsa_key):
    import dataclasses

    from jwt.algorithms import RSAAlgorithm

    from api import create_app

    jwk = json.loads(RSAAlgorithm.to_jwk(rsa_key.public_key()))
    jwk.update(kid="k1", alg="RS256", use="sig")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk]}))
    supa = dataclasses.replace(
        settings.auth.supabase,
        jwt_secret="super-secret-jwt-token-with-at-least-32-characters",
        jwks_file=str(jwks),
        issuer="https://proj.supabase.co/auth/v1",
    )
    s = dataclasses.replace(settings, auth=dataclasses.replace(settings.auth, supabase=supa))
    return create_app(s)


def claims(**over):
    now = int(time.time())
    base = {
        "sub": "user-1",
        "aud": "authenticated",
        "iss": "https://proj.supabase.co/auth/v1",
        "exp": now + 600,
        "iat": now,
        "role": "authenticated",
    }
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


SECRET = "super-secret-jwt-token-with-at-least-32-characters"


def test_supabase_hs256_token_accepted(supa_app):
    c = supa_app.test_client()
    token = jwt.encode(claims(), SECRET, algorithm="HS256")
    assert c.get("/assistant", headers={"Authorization": f"Bearer {token}"}).status_code == 200


def test_supabase_rs256_token_accepted_from_jwks(supa_app, rsa_key):
    c = supa_app.test_client()
    token = jwt.encode(claims(), rsa_key, algorithm="RS256", headers={"kid": "k1"})
    assert c.get("/assistant", headers={"Authorization": f"Bearer {token}"}).status_code == 200


@pytest.mark.parametrize(
    "bad",
    [
        {"exp": int(time.time()) - 3600},
        {"aud": "anon-but-wrong"},
        {"iss": "https://evil.example/auth/v1"},
        {"sub": None},
        {"exp": None},
    ],
)
def test_supabase_bad_claims_refused(supa_app, bad):
    c = supa_app.test_client()
    token = jwt.encode(claims(**bad), SECRET, algorithm="HS256")
    assert c.get("/assistant", headers={"Authorization": f"Bearer {token}"}).status_code == 401


def test_supabase_wrong_key_and_alg_none_refused(supa_app):
    c = supa_app.test_client()
    wrong = jwt.encode(
        claims(), "another-secret-that-is-long-enough-for-hs256!!", algorithm="HS256"
    )
    assert c.get("/assistant", headers={"Authorization": f"Bearer {wrong}"}).status_code == 401
    unsigned = jwt.encode(claims(), None, algorithm="none")
    assert c.get("/assistant", headers={"Authorization": f"Bearer {unsigned}"}).status_code == 401
    other_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = jwt.encode(claims(), other_rsa, algorithm="RS256", headers={"kid": "k1"})
    assert c.get("/assistant", headers={"Authorization": f"Bearer {forged}"}).status_code == 401


def test_supabase_tokens_refused_when_not_configured(app):
    c = app.test_client()
    token = jwt.encode(claims(), SECRET, algorithm="HS256")
    assert c.get("/assistant", headers={"Authorization": f"Bearer {token}"}).status_code == 401
