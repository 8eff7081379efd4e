"""/logs/webhooks through the API: list and filters, one job, replay to the current target, retry."""

from __future__ import annotations

import uuid

import pytest
from test_webhook_delivery import Receiver

from esl_controller.db import database as db_proxy
from esl_controller.db.models import WebhookJob
from esl_controller.webhooks import outbox
from esl_controller.webhooks.delivery import Deliverer, DeliverySettings

SETTINGS = DeliverySettings(workers=4, backoff_base=0.01, backoff_cap=0.02)
CALL_A = str(uuid.uuid4())
CALL_B = str(uuid.uuid4())


@pytest.fixture
def receivers():
    made: list[Receiver] = []

    def make(**kwargs) -> Receiver:
        made.append(Receiver(**kwargs))
        return made[-1]

    yield make
    for r in made:
        r.stop()


def box(app):
    return app.extensions["esl_controller"].secret_box


def put(database, kind, target, call_id, max_attempts=8, payload=None):
    with database.connection_context():
        with db_proxy.atomic():
            job = outbox.enqueue(
                kind,
                payload or {"message": {"type": kind}},
                target,
                call_id,
                max_attempts=max_attempts,
            )
    return job.id


def deliver(app, database):
    with database.connection_context():
        return Deliverer(SETTINGS, box(app)).run_once()


def test_list_filters_and_pages(app, client, database, receivers):
    ok = receivers()
    bad = receivers(script=lambda seen, n: (500, [], b"no"))
    a1 = put(database, "status-update", {"url": ok.url + "/1"}, CALL_A)
    a2 = put(database, "end-of-call-report", {"url": bad.url + "/2"}, CALL_A, max_attempts=1)
    b1 = put(database, "status-update", {"url": ok.url + "/3", "headers": {"Authorization": "Bearer zzz"}}, CALL_B)  # fmt: skip
    assert deliver(app, database) == 3

    body = client.get("/logs/webhooks").get_json()
    assert body["metadata"]["totalItems"] == 3 and body["metadata"]["currentPage"] == 1
    assert [r["id"] for r in body["results"]] == [b1, a2, a1]  # newest first
    by_id = {r["id"]: r for r in body["results"]}
    assert by_id[a1]["status"] == "delivered" and by_id[a1]["attempts"][0]["statusCode"] == 200
    assert by_id[a2]["status"] == "failed" and by_id[a2]["lastStatusCode"] == 500
    assert by_id[a2]["attempts"][0]["responseExcerpt"] == "no"
    assert by_id[b1]["target"]["headers"]["Authorization"] == "Bearer ***"
    assert "payload" not in by_id[a1]

    assert {r["id"] for r in client.get(f"/logs/webhooks?callId={CALL_A}").get_json()["results"]} == {a1, a2}  # fmt: skip
    assert [r["id"] for r in client.get("/logs/webhooks?status=failed").get_json()["results"]] == [
        a2
    ]
    assert [r["id"] for r in client.get("/logs/webhooks?type=end-of-call-report").get_json()["results"]] == [a2]  # fmt: skip
    page = client.get("/logs/webhooks?limit=2&page=2&sortOrder=ASC").get_json()
    assert [r["id"] for r in page["results"]] == [b1]
    assert page["metadata"]["totalPages"] == 2 and page["metadata"]["hasNextPage"] is False
    assert client.get("/logs/webhooks?createdAtGt=2999-01-01T00:00:00Z").get_json()["results"] == []

    for query, text in (
        ("status=lost", "status must be one of"),
        ("callId=nope", "callId must be a UUID"),
        ("page=0", "page must be"),
        ("sortOrder=sideways", "sortOrder"),
        ("limit=abc", "limit"),
    ):
        resp = client.get(f"/logs/webhooks?{query}")
        assert resp.status_code == 400, query
        err = resp.get_json()
        assert err["statusCode"] == 400 and err["error"] == "Bad Request" and text in err["message"]


def test_get_one_job(app, client, database, receivers):
    r = receivers()
    jid = put(
        database,
        "hang",
        {"url": r.url + "/h"},
        CALL_A,
        payload={"message": {"type": "hang", "x": 1}},
    )
    deliver(app, database)
    one = client.get(f"/logs/webhooks/{jid}").get_json()
    assert one["id"] == jid and one["payload"] == {"message": {"type": "hang", "x": 1}}
    assert one["attemptCount"] == 1 and len(one["attempts"]) == 1
    att = one["attempts"][0]
    assert att["requestHeaders"]["X-Esl-Webhook-Id"] == jid and att["replay"] is False
    assert client.get("/logs/webhooks/not-a-uuid").status_code == 400
    missing = client.get(f"/logs/webhooks/{uuid.uuid4()}")
    assert missing.status_code == 404 and missing.get_json()["message"] == "Webhook job not found"


def test_replay_goes_to_the_current_endpoint(app, client, database, receivers):
    first = receivers()
    second = receivers()
    ep = client.post(
        "/webhook-endpoint", json={"url": first.url + "/ep", "scope": "account"}
    ).get_json()
    target = {"url": ep["url"], "source": "endpoint", "endpointId": ep["id"]}
    jid = put(database, "status-update", target, CALL_A)
    deliver(app, database)
    attempt_id = client.get(f"/logs/webhooks/{jid}").get_json()["attempts"][0]["id"]
    assert len(first.requests) == 1

    moved = client.patch(f"/webhook-endpoint/{ep['id']}", json={"url": second.url + "/moved"})
    assert moved.status_code == 200
    resp = client.post(f"/logs/webhooks/{attempt_id}/replay")
    assert resp.status_code == 201, resp.get_json()
    att = resp.get_json()
    assert att["replay"] is True and att["statusCode"] == 200 and att["number"] == 2
    assert att["requestUrl"] == second.url + "/moved"
    assert len(second.requests) == 1 and len(first.requests) == 1
    assert second.requests[0].job_id == jid and second.requests[0].body == first.requests[0].body

    job = client.get(f"/logs/webhooks/{jid}").get_json()
    assert job["status"] == "delivered" and job["attemptCount"] == 1
    assert [a["replay"] for a in job["attempts"]] == [False, True]

    client.patch(f"/webhook-endpoint/{ep['id']}", json={"enabled": False})
    off = client.post(f"/logs/webhooks/{attempt_id}/replay")
    assert off.status_code == 400 and "disabled" in off.get_json()["message"]
    assert client.post(f"/logs/webhooks/{uuid.uuid4()}/replay").status_code == 404
    assert client.post("/logs/webhooks/xyz/replay").status_code == 400


def test_retry_requeues_failed_jobs_only(app, client, database, receivers):
    state = {"up": False}
    r = receivers(script=lambda seen, n: (200, [], b"ok") if state["up"] else (503, [], b"down"))
    jid = put(database, "status-update", {"url": r.url + "/x"}, CALL_A, max_attempts=1)
    deliver(app, database)
    assert client.get(f"/logs/webhooks/{jid}").get_json()["status"] == "failed"

    resp = client.post(f"/logs/webhooks/jobs/{jid}/retry")
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["status"] == "pending" and body["maxAttempts"] == 2 and body["nextAttemptAt"]
    state["up"] = True
    assert deliver(app, database) == 1
    done = client.get(f"/logs/webhooks/{jid}").get_json()
    assert done["status"] == "delivered" and [a["statusCode"] for a in done["attempts"]] == [
        503,
        200,
    ]

    again = client.post(f"/logs/webhooks/jobs/{jid}/retry")
    assert again.status_code == 400 and "delivered" in again.get_json()["message"]
    with database.connection_context():
        WebhookJob.update(status="pending").where(WebhookJob.id == jid).execute()
    assert client.post(f"/logs/webhooks/jobs/{jid}/retry").status_code == 400
    assert client.post(f"/logs/webhooks/jobs/{uuid.uuid4()}/retry").status_code == 404
    assert client.post("/logs/webhooks/jobs/nope/retry").status_code == 400


def test_openapi_lists_the_routes(client):
    doc = client.get("/openapi.json")
    if doc.status_code != 200:
        pytest.skip("no OpenAPI route in this build")
    paths = doc.get_json()["paths"]
    assert "/logs/webhooks" in paths and "/logs/webhooks/jobs/{id}/retry" in paths
