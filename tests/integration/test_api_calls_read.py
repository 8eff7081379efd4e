"""The read side of /call: list filters (assistantId, phoneNumberId, status, id), get, rename, delete."""

from datetime import datetime, timedelta, timezone

A1 = "11111111-1111-4111-8111-111111111111"
A2 = "22222222-2222-4222-8222-222222222222"
P1 = "33333333-3333-4333-8333-333333333333"


def seed(database):
    from esl_controller.db.models import Call

    base = datetime(2025, 3, 1, tzinfo=timezone.utc)
    rows = []
    with database.connection_context():
        for i, (aid, pid, status) in enumerate(
            [(A1, P1, "ended"), (A1, None, "in-progress"), (A2, P1, "ended"), (A2, None, "queued")]
        ):
            rows.append(
                Call.create(
                    org_id="o",
                    type="outboundPhoneCall",
                    status=status,
                    assistant_id=aid,
                    phone_number_id=pid,
                    created_at=base + timedelta(minutes=i),
                    updated_at=base + timedelta(minutes=i),
                    ended_reason="customer-ended-call" if status == "ended" else None,
                    data={"customer": {"number": "+14155550100"}},
                )
            )
    return [r.id for r in rows]


def ids(client, q):
    r = client.get("/call?" + q)
    assert r.status_code == 200, r.get_json()
    return [c["id"] for c in r.get_json()]


def test_filters(client, database):
    c0, c1, c2, c3 = seed(database)
    assert ids(client, "") == [c3, c2, c1, c0]
    assert ids(client, f"assistantId={A1}") == [c1, c0]
    assert ids(client, f"phoneNumberId={P1}") == [c2, c0]
    assert ids(client, "status=ended") == [c2, c0]
    assert ids(client, f"id={c1}") == [c1]
    assert ids(client, f"assistantId={A2}&createdAtGe=2025-03-01T00:03:00Z") == [c3]
    for bad in ("assistantId=nope", "status=flying", "id=1"):
        r = client.get("/call?" + bad)
        assert r.status_code == 400 and r.get_json()["statusCode"] == 400


def test_get_shape_and_rename(client, database):
    c0, c1, *_ = seed(database)
    call = client.get(f"/call/{c0}").get_json()
    assert call["type"] == "outboundPhoneCall" and call["status"] == "ended"
    assert call["endedReason"] == "customer-ended-call" and call["customer"] == {
        "number": "+14155550100"
    }
    assert call["assistantId"] == A1 and call["createdAt"].endswith("Z")
    r = client.patch(f"/call/{c0}", json={"name": "renamed"})
    assert r.status_code == 200 and r.get_json()["name"] == "renamed"
    assert client.patch(f"/call/{c0}", json={"status": "queued"}).status_code == 400
    assert client.post("/call/" + c0, json={}).status_code == 405


def test_delete_only_when_not_live(client, database):
    c0, c1, *_ = seed(database)
    r = client.delete(f"/call/{c1}", json={})
    assert r.status_code == 400 and "in-progress" in r.get_json()["message"]
    r = client.delete(f"/call/{c0}", json={})
    assert r.status_code == 200 and r.get_json()["id"] == c0
    assert client.get(f"/call/{c0}").status_code == 404


def test_get_by_id_carries_the_conversation(client, database):
    from esl_controller.db.models import CallMessage

    c0, *_ = seed(database)
    with database.connection_context():
        CallMessage.create(
            call=c0, seq=0, role="bot", message="Hello, how can I help?", seconds_from_start=0.5
        )
        CallMessage.create(
            call=c0, seq=1, role="user", message="Book a table for two.", seconds_from_start=3.0
        )
    call = client.get(f"/call/{c0}").get_json()
    assert [m["role"] for m in call["messages"]] == ["bot", "user"]
    assert call["messages"][1]["message"] == "Book a table for two."
    lines = call["artifact"]["transcript"].splitlines()
    assert lines == ["AI: Hello, how can I help?", "User: Book a table for two."]
    assert [m["role"] for m in call["artifact"]["messagesOpenAIFormatted"]] == ["assistant", "user"]
    # lists stay light: no per-call history query
    listed = {c["id"]: c for c in client.get("/call").get_json()}
    assert "messages" not in listed[c0]
