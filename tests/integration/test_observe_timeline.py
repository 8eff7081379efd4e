"""/call/:id/timeline: events, messages, webhook jobs and attempts, artifacts and the transcript, in order."""

import uuid

from test_api_logs_calls import seed


def test_timeline_merges_every_source_in_time_order(client, database):
    ids = seed(database)
    r = client.get(f"/call/{ids['a']}/timeline")
    assert r.status_code == 200, r.get_json()
    body = r.get_json()
    assert body["callId"] == ids["a"] and body["status"] == "ended"
    assert body["truncated"] is False
    items = body["items"]
    assert [(i["type"], i["time"][11:23]) for i in items] == [
        ("event", "09:00:01.000"),
        ("message", "09:00:01.200"),
        ("webhook-job", "09:00:01.500"),
        ("event", "09:00:02.000"),
        ("message", "09:00:02.200"),
        ("webhook-attempt", "09:00:02.500"),
        ("event", "09:00:03.000"),
        ("event", "09:00:03.000"),
        ("webhook-attempt", "09:00:06.000"),
        ("artifact", "09:00:08.000"),
        ("transcript", "09:00:09.000"),
    ]
    # events at the same instant keep their insertion order
    assert [i["kind"] for i in items if i["type"] == "event"] == [
        "status-update",
        "usage",
        "provider-error",
        "transcript-partial",
    ]
    assert items[0]["secondsFromStart"] == 0.5  # from startedAt
    assert items[1]["role"] == "user" and items[1]["message"] == "hello"
    assert items[2]["id"] == ids["j1"] and items[2]["messageType"] == "status-update"
    assert items[5]["statusCode"] == 500 and items[5]["jobId"] == ids["j1"]
    assert items[8]["number"] == 2 and items[8]["statusCode"] == 200
    assert items[9]["kind"] == "recording-mono" and "path" not in items[9]
    assert items[10]["transcript"] == "User: hello\nAI: hi there"
    assert items[10]["summary"] == "A short greeting." and items[10]["turns"] == 2
    # the unrelated call's rows and the job without a call stay out
    assert ids["w3"] not in {i.get("id") for i in items}


def test_timeline_of_a_call_with_only_events(client, database):
    ids = seed(database)
    items = client.get(f"/call/{ids['b']}/timeline").get_json()["items"]
    assert [(i["type"], i["kind"]) for i in items] == [
        ("event", "status-update"),
        ("event", "frames-dropped"),
    ]


def test_timeline_unknown_and_bad_ids(client, database):
    r = client.get(f"/call/{uuid.uuid4()}/timeline")
    assert r.status_code == 404 and r.get_json()["statusCode"] == 404
    assert client.get("/call/123/timeline").status_code == 400
