"""/logs (unified, Vapi's old Log shape) and /logs/calls: filters, ordering, pagination, bad parameters."""

from datetime import datetime, timedelta, timezone

import pytest

A1 = "11111111-1111-4111-8111-111111111111"
A2 = "22222222-2222-4222-8222-222222222222"
P1 = "33333333-3333-4333-8333-333333333333"
T0 = datetime(2025, 6, 1, 9, 0, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def seed(database) -> dict[str, object]:
    """Two calls with events, messages, an artifact and webhook jobs/attempts; returns their ids."""
    from esl_controller.db.models import (
        Artifact,
        Call,
        CallEvent,
        CallMessage,
        WebhookAttempt,
        WebhookJob,
    )

    ids: dict[str, object] = {}
    with database.connection_context():
        a = Call.create(
            org_id="o",
            type="inboundPhoneCall",
            status="ended",
            assistant_id=A1,
            phone_number_id=P1,
            created_at=at(0),
            updated_at=at(9),
            started_at=at(0.5),
            ended_at=at(9),
            ended_reason="customer-ended-call",
            data={"analysis": {"summary": "A short greeting."}},
        )
        b = Call.create(
            org_id="o", type="webCall", status="in-progress", assistant_id=A2, created_at=at(0)
        )
        ids.update(a=a.id, b=b.id)

        def ev(name, call, t, event_kind, level="INFO", source="runtime", **data):
            ids[name] = CallEvent.create(
                call=call.id, at=at(t), kind=event_kind, level=level, source=source, data=data
            ).id

        ev("e1", a, 1, "status-update", source="esl", status="in-progress")
        ev("e2", a, 2, "usage", source="pipeline", kind="llm", provider="openai", promptTokens=5)
        ev(
            "e3",
            a,
            3,
            "provider-error",
            "ERROR",
            "pipeline",
            message="openai 500",
            provider="openai",
        )
        ev("e4", a, 3, "transcript-partial", source="pipeline", text="hel")
        ev("e5", b, 4, "status-update", source="esl", status="in-progress")
        ev("e6", b, 5, "frames-dropped", "WARN", frames=12)

        def job(name, call_id, t, kind, status):
            row = WebhookJob.create(
                org_id="o",
                call_id=call_id,
                message_type=kind,
                target_url="http://127.0.0.1:9/hook",
                payload={"message": {"type": kind}},
                ordering_key=f"{call_id}:x",
                status=status,
                created_at=at(t),
                updated_at=at(t),
            )
            ids[name] = row.id
            return row

        def attempt(name, j, number, t, code, latency, error=None):
            ids[name] = WebhookAttempt.create(
                org_id="o",
                job=j.id,
                number=number,
                request_url=j.target_url,
                request_headers={"X-Vapi-Secret": "***"},
                status_code=code,
                latency_ms=latency,
                error=error,
                response_excerpt="oops" if code == 500 else "ok",
                created_at=at(t),
                updated_at=at(t),
            ).id

        j1 = job("j1", a.id, 1.5, "status-update", "delivered")
        attempt("w1", j1, 1, 2.5, 500, 120, "HTTP 500")
        attempt("w2", j1, 2, 6, 200, 30)
        j2 = job("j2", None, 6.5, "end-of-call-report", "delivered")
        attempt("w3", j2, 1, 7, 200, 10)

        CallMessage.create(call=a.id, seq=1, role="user", message="hello", time=at(1.2))
        CallMessage.create(call=a.id, seq=2, role="bot", message="hi there", time=at(2.2))
        Artifact.create(
            org_id="o",
            call=a.id,
            kind="recording-mono",
            path="/var/rec/a.wav",
            bytes=64000,
            mimetype="audio/wav",
            status="sealed",
            created_at=at(8),
            updated_at=at(8),
        )
    return ids


def logs(client, query="", path="/logs"):
    r = client.get(path + ("?" + query if query else ""))
    assert r.status_code == 200, r.get_json()
    return r.get_json()


def keys(ids, body):
    """Names of the seeded rows behind each result, in order."""
    by_value = {v: k for k, v in ids.items()}
    out = []
    for item in body["results"]:
        ref = item.get("eventId") or item.get("webhookAttemptId") or item.get("id")
        out.append(by_value[ref])
    return out


ASC = ["e1", "e2", "w1", "e3", "e4", "e5", "e6", "w2", "w3"]


def test_unified_logs_order_types_and_filters(client, database):
    ids = seed(database)
    body = logs(client, "sortOrder=ASC")
    assert keys(ids, body) == ASC
    assert body["metadata"]["totalItems"] == 9
    assert keys(ids, logs(client)) == ASC[::-1]  # newest first by default

    assert keys(ids, logs(client, "type=Call&sortOrder=ASC")) == ["e1", "e4", "e5", "e6"]
    assert keys(ids, logs(client, "type=provider&sortOrder=ASC")) == ["e2", "e3"]
    assert keys(ids, logs(client, "type=Webhook&sortOrder=ASC")) == ["w1", "w2", "w3"]
    api = logs(client, "type=API")
    assert api["results"] == [] and api["metadata"]["totalItems"] == 0
    assert keys(ids, logs(client, f"callId={ids['a']}&sortOrder=ASC")) == [
        "e1",
        "e2",
        "w1",
        "e3",
        "e4",
        "w2",
    ]
    assert keys(ids, logs(client, f"assistantId={A2}&sortOrder=ASC")) == ["e5", "e6"]
    assert len(logs(client, f"phoneNumberId={P1}")["results"]) == 6
    assert keys(ids, logs(client, "level=ERROR&sortOrder=ASC")) == ["w1", "e3"]
    assert keys(ids, logs(client, "level=warn")) == ["e6"]
    assert keys(ids, logs(client, "level=INFO&sortOrder=ASC")) == [
        "e1",
        "e2",
        "e4",
        "e5",
        "w2",
        "w3",
    ]
    assert keys(ids, logs(client, "webhookType=status-update&sortOrder=ASC")) == ["w1", "w2"]
    window = "createdAtGe=2025-06-01T09:00:03Z&createdAtLt=2025-06-01T09:00:06Z&sortOrder=ASC"
    assert keys(ids, logs(client, window)) == ["e3", "e4", "e5", "e6"]
    # updatedAt bounds map onto the same log time; Gt with a millisecond value skips that millisecond
    assert keys(ids, logs(client, "updatedAtGt=2025-06-01T09:00:06.000Z")) == ["w3"]


def test_unified_logs_item_shapes(client, database):
    ids = seed(database)
    body = logs(client)
    items = dict(zip(keys(ids, body), body["results"], strict=True))
    w1 = items["w1"]
    assert w1["type"] == "Webhook" and w1["webhookType"] == "status-update"
    assert w1["time"] == "2025-06-01T09:00:02.500Z" and w1["orgId"] == "o"
    assert w1["callId"] == ids["a"] and w1["assistantId"] == A1 and w1["phoneNumberId"] == P1
    assert w1["responseHttpCode"] == 500 and w1["requestDurationSeconds"] == 0.12
    assert w1["error"] == {"message": "HTTP 500"} and w1["level"] == "ERROR"
    assert w1["requestHeaders"] == {"X-Vapi-Secret": "***"} and w1["webhookJobId"] == ids["j1"]
    assert items["w3"]["callId"] is None and items["w3"]["resource"] is None
    e3 = items["e3"]
    assert e3["type"] == "Provider" and e3["provider"] == "openai" and e3["resource"] == "call"
    assert e3["error"] == {"message": "openai 500"} and e3["log"] == "openai 500"
    assert e3["assistantId"] == A1 and e3["kind"] == "provider-error"
    assert items["e1"]["type"] == "Call" and "error" not in items["e1"]


def test_unified_logs_pages(client, database):
    ids = seed(database)
    first = logs(client, "limit=4&sortOrder=ASC")
    assert keys(ids, first) == ASC[:4]
    assert first["metadata"] == {
        "itemsPerPage": 4,
        "totalItems": 9,
        "currentPage": 1,
        "totalPages": 3,
        "hasNextPage": True,
        "sortOrder": "ASC",
    }
    assert keys(ids, logs(client, "limit=4&page=2&sortOrder=ASC")) == ASC[4:8]
    last = logs(client, "limit=4&page=3&sortOrder=ASC")
    assert keys(ids, last) == ["w3"] and last["metadata"]["hasNextPage"] is False
    assert logs(client, "limit=4&page=9")["results"] == []
    assert logs(client, "limit=0")["results"] == []


def test_call_logs(client, database):
    ids = seed(database)
    a = ids["a"]
    body = logs(client, f"callId={a}", "/logs/calls")
    assert keys(ids, body) == ["e4", "e3", "e2", "e1"]
    e3 = body["results"][1]
    assert e3 == {
        "id": ids["e3"],
        "callId": a,
        "orgId": "o",
        "time": "2025-06-01T09:00:03.000Z",
        "level": "ERROR",
        "kind": "provider-error",
        "source": "pipeline",
        "log": "openai 500",
        "data": {"message": "openai 500", "provider": "openai"},
    }
    assert keys(ids, logs(client, "kind=status-update&sortOrder=ASC", "/logs/calls")) == [
        "e1",
        "e5",
    ]
    assert keys(ids, logs(client, "level=WARN", "/logs/calls")) == ["e6"]
    assert keys(ids, logs(client, "source=pipeline&sortOrder=ASC", "/logs/calls")) == [
        "e2",
        "e3",
        "e4",
    ]
    page = logs(client, f"callId={a}&limit=2&page=2&sortOrder=ASC", "/logs/calls")
    assert keys(ids, page) == ["e3", "e4"] and page["metadata"]["totalItems"] == 4
    bounded = logs(client, "createdAtLe=2025-06-01T09:00:02Z", "/logs/calls")
    assert keys(ids, bounded) == ["e2", "e1"]


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/logs", "type=Foo"),
        ("/logs", "callId=nope"),
        ("/logs", "assistantId=1"),
        ("/logs", "phoneNumberId=x"),
        ("/logs", "level=LOUD"),
        ("/logs", "page=0"),
        ("/logs", "page=two"),
        ("/logs", "sortOrder=UP"),
        ("/logs", "limit=5000"),
        ("/logs", "createdAtGt=yesterday"),
        ("/logs/calls", "source=bogus"),
        ("/logs/calls", "kind=" + "k" * 65),
        ("/logs/calls", "callId=nope"),
    ],
)
def test_bad_parameters_are_400(client, database, path, query):
    r = client.get(f"{path}?{query}")
    assert r.status_code == 400, r.get_json()
    assert r.get_json()["statusCode"] == 400


def test_logs_need_auth(anon, database):
    assert anon.get("/logs").status_code == 401
    assert anon.get("/logs/calls").status_code == 401
