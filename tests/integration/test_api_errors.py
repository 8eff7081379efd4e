"""Bad input of every kind: a clear 4xx with the NestJS body, never a 500, never a partial write."""

import pytest

FAKE = "00000000-0000-4000-8000-00000000abcd"


def assert_error(resp, status):
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.get_json()
    assert set(body) == {"statusCode", "error", "message"}
    assert body["statusCode"] == status
    return body


@pytest.mark.parametrize(
    "data,ctype,status",
    [
        ("{", "application/json", 400),
        ('{"name": "x",}', "application/json", 400),
        ("[1, 2]", "application/json", 400),
        ('"just a string"', "application/json", 400),
        ("null", "application/json", 400),
        ("", "application/json", 400),
        ("name=x", "application/x-www-form-urlencoded", 415),
        ('{"name": "x"}', "text/plain", 415),
        (b"\xff\xfe{", "application/json", 400),
    ],
)
def test_malformed_bodies(client, data, ctype, status):
    assert_error(client.post("/assistant", data=data, content_type=ctype), status)
    assert client.get("/assistant").get_json() == []


def test_huge_body_is_413(client):
    big = '{"name": "' + "x" * (2 * 1024 * 1024) + '"}'
    assert_error(client.post("/assistant", data=big, content_type="application/json"), 413)


def test_not_found_and_bad_ids(client):
    assert_error(client.get(f"/assistant/{FAKE}"), 404)
    assert_error(client.get("/assistant/not-a-uuid"), 400)
    assert_error(client.patch("/assistant/../../etc", json={}), 404)
    assert_error(client.get("/no/such/route"), 404)


def test_method_not_allowed(client):
    body = assert_error(client.put("/assistant", json={}), 405)
    assert body["message"] == "Method Not Allowed"


def test_unexpected_exception_is_500_body(app, client, monkeypatch):
    def boom(id):
        raise RuntimeError("kaput")

    a = client.post("/assistant", json={"name": "x"}).get_json()
    monkeypatch.setitem(app.view_functions, "assistants.assistant_get", boom)
    body = assert_error(client.get(f"/assistant/{a['id']}"), 500)
    assert "kaput" not in body["message"]


def test_failed_request_writes_nothing(app, client, monkeypatch):
    """A request that fails after writing rolls back: each request is one transaction."""
    from esl_controller.db.models import Assistant

    def half_write():
        Assistant.create(org_id="o", name="ghost", data={})
        from api.errors import ApiError

        raise ApiError(400, "second step failed")

    app.add_url_rule("/_test/half", "half", half_write, methods=["POST"])
    assert_error(client.post("/_test/half", json={}), 400)
    assert client.get("/assistant").get_json() == []
