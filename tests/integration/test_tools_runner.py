"""Function and apiRequest tools against a local HTTP server on an ephemeral loopback port.

The server receives the real ``tool-calls`` body and answers per test; slow answers are held on events the
test controls (never sleeps)."""

import json

import gevent
import gevent.event
import pytest
from cryptography.fernet import Fernet
from gevent.pywsgi import WSGIHandler, WSGIServer

from esl_controller.pipeline.tools.messages import DEFAULT_FILLERS
from esl_controller.pipeline.tools.runner import (
    QUEUED_RESULT,
    ToolHttpSettings,
    ToolRunner,
    box_unseal,
    db_credential_loader,
    db_tool_loader,
)
from esl_controller.pipeline.tools.spec import ToolsetError, build_toolset
from esl_controller.security.secrets_box import SecretBox
from esl_controller.webhooks.messages import MessageContext
from esl_controller.webhooks.signing import auth_from_plan, verify
from esl_controller.webhooks.targets import UrlPolicy

# ------------------------------------------------------------------------------------------ fixtures


class _RawPathHandler(WSGIHandler):
    def get_environ(self):
        env = super().get_environ()
        env["RAW_PATH"] = self.path
        return env


class Recorded:
    def __init__(self, environ, body):
        self.method = environ["REQUEST_METHOD"]
        self.raw_path = environ["RAW_PATH"]
        self.path = environ["PATH_INFO"]
        self.headers = {
            k[5:].replace("_", "-").title(): v for k, v in environ.items() if k.startswith("HTTP_")
        }
        if environ.get("CONTENT_TYPE"):
            self.headers["Content-Type"] = environ["CONTENT_TYPE"]
        self.body = body

    def json(self):
        return json.loads(self.body)


class ToolServer:
    """Records every request; ``answer(req) -> (status, body, headers)`` decides the response."""

    def __init__(self):
        self.log = []
        self.received = gevent.event.Event()
        self.release = gevent.event.Event()
        self.answer = lambda req: (200, {"results": []})
        self.server = WSGIServer(
            ("127.0.0.1", 0), self._app, handler_class=_RawPathHandler, log=None, error_log=None
        )
        self.server.start()
        self.port = self.server.server_port

    def url(self, path="/hook"):
        return f"http://127.0.0.1:{self.port}{path}"

    def _app(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        req = Recorded(environ, environ["wsgi.input"].read(length) if length else b"")
        self.log.append(req)
        self.received.set()
        status, body, *rest = self.answer(req)
        headers = rest[0] if rest else {}
        if not isinstance(body, bytes):
            body = json.dumps(body).encode() if not isinstance(body, str) else body.encode()
        reason = {200: "OK", 404: "Not Found", 500: "Internal Server Error"}.get(status, "X")
        start_response(f"{status} {reason}", [("Content-Length", str(len(body))), *headers.items()])
        return [body]

    def stop(self):
        self.release.set()
        self.server.stop(timeout=1)


@pytest.fixture
def server():
    s = ToolServer()
    yield s
    s.stop()


class Speaker:
    """The engine's ``speak`` callback: records messages; ``hooks[type](msg)`` runs while "speaking"."""

    def __init__(self):
        self.said = []
        self.hooks = {}

    def __call__(self, msg):
        self.said.append(msg)
        hook = self.hooks.get(msg.type)
        if hook:
            hook(msg)

    @property
    def texts(self):
        return [(m.type, m.content) for m in self.said]


CALL = {"id": "call-1", "type": "webCall", "customer": {"number": "+15550100"}}
ASSISTANT = {"id": "asst-1", "name": "Ann", "serverMessages": ["end-of-call-report"]}


def weather_tool(srv, **extra):
    tool = {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
        "server": {"url": srv.url("/tool")},
    }
    tool.update(extra)
    return tool


def make_runner(tools, *, assistant=ASSISTANT, settings=None, **kw):
    ctx = MessageContext(call=CALL, assistant=assistant, timestamp_ms=1_700_000_000_000)
    return ToolRunner(ctx, build_toolset({"tools": tools}), settings, **kw)


def call(name="get_weather", arguments='{"city": "Paris"}', call_id="tc-1"):
    return {"id": call_id, "name": name, "arguments": arguments}


# ------------------------------------------------------------------------------------ function tools


def test_function_round_trip_body_shape_and_result(server):
    server.answer = lambda req: (200, {"results": [{"toolCallId": "tc-1", "result": {"t": 21}}]})
    tool = weather_tool(server, server={"url": server.url("/tool"), "secretSealed": "sealed!"})
    speak = Speaker()
    runner = make_runner([tool], unseal=lambda token: "s3cret")
    out = runner.run(call(), speak)

    assert out.ok and out.result == '{"t":21}' and out.content == '{"t":21}'
    assert out.ask_model is True and out.notices == () and out.status_code == 200
    assert out.request_bytes > 0 and out.response_bytes > 0
    assert out.usage()["kind"] == "tool" and out.usage()["status_code"] == 200
    # the filler was said, before the request
    assert [m.type for m in speak.said] == ["request-start"]
    assert speak.said[0].content in DEFAULT_FILLERS
    assert out.messages == tuple(speak.said) and out.spoken

    (req,) = server.log
    assert req.method == "POST" and req.path == "/tool"
    assert req.headers["X-Vapi-Secret"] == "s3cret"
    assert req.headers["Content-Type"] == "application/json"
    msg = req.json()["message"]
    assert msg["type"] == "tool-calls"
    assert msg["timestamp"] == 1_700_000_000_000
    assert msg["call"]["id"] == "call-1" and msg["customer"] == {"number": "+15550100"}
    assert msg["assistant"]["id"] == "asst-1"
    (item,) = msg["toolCallList"]
    assert item == {
        "id": "tc-1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        "name": "get_weather",
        "arguments": {"city": "Paris"},
        "parameters": {"city": "Paris"},
    }
    (with_tool,) = msg["toolWithToolCallList"]
    assert with_tool["type"] == "function" and with_tool["function"]["name"] == "get_weather"
    assert with_tool["server"] == {"url": server.url("/tool")}  # the sealed secret stays home
    assert with_tool["toolCall"] == item


def test_bare_result_error_item_and_static_parameters(server):
    answers = iter(
        [
            (200, {"result": "sunny"}),
            (200, {"results": [{"toolCallId": "tc-1", "error": "no such city"}]}),
        ]
    )
    server.answer = lambda req: next(answers)
    tool = weather_tool(server, parameters=[{"key": "source", "value": "call {{callRef}}"}])
    runner = make_runner([tool], settings=ToolHttpSettings(fillers=()), variables={"callRef": "x9"})
    out = runner.run(call())
    assert out.result == "sunny" and out.messages == ()
    assert server.log[0].json()["message"]["toolCallList"][0]["arguments"] == {
        "city": "Paris",
        "source": "call x9",
    }
    out = runner.run(call())
    assert out.error == "no such city" and out.content == "Error: no such city"


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (500, {"results": [{"toolCallId": "tc-1", "result": "ignored"}]}, "HTTP 500"),
        (200, "{not json", "not valid JSON"),
        (200, [1, 2], "not a JSON object"),
        (
            200,
            {"results": [{"toolCallId": "other", "result": "x"}]},
            "no result for this tool call",
        ),
        (200, {"hello": 1}, "neither results nor result"),
    ],
)
def test_bad_answers_are_error_results_with_the_failed_message(server, status, body, error):
    server.answer = lambda req: (status, body)
    tool = weather_tool(
        server,
        messages=[
            {"type": "request-start", "content": ""},
            {"type": "request-failed", "content": "Sorry, the weather service is down."},
        ],
    )
    speak = Speaker()
    out = make_runner([tool]).run(call(), speak)
    assert out.result is None and error in out.error
    assert speak.texts == [("request-failed", "Sorry, the weather service is down.")]
    assert out.ask_model is False  # the failed message replaces the model's reply


def test_slow_server_times_out_after_saying_the_delayed_message(server):
    server.answer = lambda req: (server.release.wait(timeout=10), (200, {"result": "late"}))[1]
    tool = weather_tool(
        server,
        server={"url": server.url("/tool"), "timeoutSeconds": 0.3},
        messages=[
            {
                "type": "request-response-delayed",
                "content": "Still checking.",
                "timingMilliseconds": 50,
            },  # fmt: skip
            {"type": "request-failed", "content": "That took too long."},
        ],
    )
    speak = Speaker()
    out = make_runner([tool], settings=ToolHttpSettings(fillers=())).run(call(), speak)
    assert out.error == "timed out after 0.3 s"
    assert speak.texts == [
        ("request-response-delayed", "Still checking."),
        ("request-failed", "That took too long."),
    ]


def test_delayed_message_is_said_while_the_server_is_late(server):
    said_delayed = gevent.event.Event()

    def answer(req):
        assert said_delayed.wait(timeout=5), "the delayed message was not said while waiting"
        return 200, {"results": [{"toolCallId": "tc-1", "result": "cloudy"}]}

    server.answer = answer
    tool = weather_tool(
        server,
        messages=[
            {"type": "request-start", "content": "Let me check."},
            {
                "type": "request-response-delayed",
                "content": "Bear with me.",
                "timingMilliseconds": 20,
            },  # fmt: skip
            {
                "type": "request-response-delayed",
                "content": "Never said.",
                "timingMilliseconds": 60_000,
            },  # fmt: skip
            {"type": "request-complete", "content": "It is {{weather}}.", "role": "system"},
        ],
    )
    speak = Speaker()
    speak.hooks["request-response-delayed"] = lambda m: said_delayed.set()
    out = make_runner([tool]).run(call(), speak)
    assert out.result == "cloudy"
    assert speak.texts == [
        ("request-start", "Let me check."),
        ("request-response-delayed", "Bear with me."),
    ]
    assert out.system_messages == ("It is {{weather}}.",) and out.ask_model is True


def test_blocking_start_is_said_before_the_request_and_non_blocking_during_it(server):
    server.answer = lambda req: (200, {"result": "ok"})
    seen_during_speech = []

    def during(msg):
        seen_during_speech.append(server.received.wait(timeout=0.3 if msg.blocking else 5))

    for blocking in (True, False):
        server.received.clear()
        tool = weather_tool(
            server,
            messages=[{"type": "request-start", "content": "Hold on.", "blocking": blocking}],
        )
        speak = Speaker()
        speak.hooks["request-start"] = during
        out = make_runner([tool]).run(call(), speak)
        assert out.result == "ok" and speak.said[0].blocking is blocking
    assert seen_during_speech == [False, True]


def test_complete_message_from_server_replaces_the_reply_and_can_end_the_call(server):
    server.answer = lambda req: (
        200,
        {"results": [{"toolCallId": "tc-1", "result": "booked", "message": {
            "type": "request-complete", "content": "You're booked. Bye!",
            "endCallAfterSpokenEnabled": True}}]},
    )  # fmt: skip
    tool = weather_tool(server, messages=[{"type": "request-complete", "content": "Tool's own."}])
    speak = Speaker()
    out = make_runner([tool], settings=ToolHttpSettings(fillers=())).run(call(), speak)
    assert out.result == "booked" and out.ask_model is False
    assert speak.texts == [("request-complete", "You're booked. Bye!")]
    (notice,) = out.notices
    assert notice.kind == "end-call"
    assert notice.data == {
        "reason": "assistant-ended-call-after-message-spoken",
        "message": "You're booked. Bye!",
    }


def test_async_tool_returns_at_once_and_posts_in_the_background(server):
    server.answer = lambda req: (
        server.release.wait(timeout=10),
        (200, {"results": [{"toolCallId": "tc-async", "result": "stored"}]}),
    )[1]
    tool = weather_tool(
        server,
        **{
            "async": True,
            "messages": [
                {"type": "request-start", "content": "never for async"},
                {"type": "request-complete", "content": "I've noted that."},
            ],
        },
    )
    speak = Speaker()
    runner = make_runner([tool])
    out = runner.run(call(call_id="tc-async"), speak)
    assert out.queued and out.result == QUEUED_RESULT and out.ask_model is False
    assert speak.texts == [("request-complete", "I've noted that.")]
    assert server.received.wait(timeout=5) and runner.pending == 1
    server.release.set()
    runner.close(timeout=5)
    assert runner.pending == 0
    assert runner.async_results == [("tc-async", "stored", None)]


def test_async_limit(server):
    server.answer = lambda req: (server.release.wait(timeout=10), (200, {"result": "x"}))[1]
    tool = weather_tool(server, **{"async": True})
    runner = make_runner([tool], settings=ToolHttpSettings(max_async=1))
    assert runner.run(call(call_id="a")).queued
    out = runner.run(call(call_id="b"))
    assert not out.queued and "too many async" in out.error
    server.release.set()
    runner.close(timeout=5)


def test_hmac_signed_request_verifies_at_the_receiver(server):
    plan = {"type": "hmac", "secretKey": "k3y", "algorithm": "sha256", "signaturePrefix": "v1="}
    verdicts = []

    def answer(req):
        verdicts.append(verify(auth_from_plan(plan), headers=req.headers, body=req.body))
        return 200, {"result": "signed ok"}

    server.answer = answer
    creds = {"cred-h": {"provider": "webhook", "authenticationPlan": plan}}
    tool = weather_tool(server, server={"url": server.url("/tool"), "credentialId": "cred-h"})
    out = make_runner([tool], credentials=creds.get).run(call())
    assert out.result == "signed ok"
    assert verdicts and verdicts[0].ok, verdicts
    assert server.log[0].headers["X-Signature"].startswith("v1=")
    # a receiver with another key refuses it
    wrong = auth_from_plan({**plan, "secretKey": "other"})
    assert not verify(wrong, headers=server.log[0].headers, body=server.log[0].body).ok


def test_bearer_credential_and_missing_credential(server):
    server.answer = lambda req: (200, {"result": "ok"})
    plan = {
        "type": "bearer",
        "token": "tok",
        "headerName": "X-Api-Token",
        "bearerPrefixEnabled": False,
    }
    creds = {"cred-b": {"authenticationPlan": plan}}
    tool = weather_tool(server, server={"url": server.url("/tool"), "credentialId": "cred-b"})
    assert make_runner([tool], credentials=creds.get).run(call()).result == "ok"
    assert server.log[0].headers["X-Api-Token"] == "tok"
    out = make_runner([tool], credentials={}.get).run(call())
    assert "credential cred-b not found" in out.error and len(server.log) == 1


def test_assistant_server_is_used_when_the_tool_has_none(server):
    box = SecretBox(Fernet.generate_key())
    server.answer = lambda req: (200, {"result": "via assistant"})
    tool = weather_tool(server)
    del tool["server"]
    stored = {**ASSISTANT, "server": {"url": server.url("/assistant"),
                                      "secretSealed": box.seal({"secret": "asst-secret"})}}  # fmt: skip
    ctx = MessageContext(call=CALL, assistant=stored)
    runner = ToolRunner(ctx, build_toolset({"tools": [tool]}), unseal=box_unseal(box))
    out = runner.run(call())
    assert out.result == "via assistant"
    (req,) = server.log
    assert req.path == "/assistant" and req.headers["X-Vapi-Secret"] == "asst-secret"
    assert "secretSealed" not in req.json()["message"]["assistant"]["server"]


def test_no_server_and_refused_url_make_errors_without_a_request(server):
    tool = weather_tool(server)
    del tool["server"]
    out = make_runner([tool]).run(call())
    assert "no server URL" in out.error
    policy = UrlPolicy.build(deny=["127.0.0.0/8"])
    out = make_runner([weather_tool(server)], url_policy=policy).run(call())
    assert out.error.startswith("URL refused") and server.log == []


def test_unknown_tool_and_bad_arguments(server):
    server.answer = lambda req: (200, {"result": "ok"})
    runner = make_runner([weather_tool(server)])
    assert runner.run(call(name="launch_rockets")).error == "tool launch_rockets is not available"
    out = runner.run(call(arguments="{broken"))
    assert out.result == "ok"
    item = server.log[0].json()["message"]["toolCallList"][0]
    assert item["function"]["arguments"] == "{broken" and item["arguments"] == {}


# ---------------------------------------------------------------------------------------- apiRequest


def api_tool(srv, **extra):
    tool = {
        "type": "apiRequest",
        "name": "lookup_order",
        "method": "GET",
        "url": srv.url("/orders/{{orderId}}?q={{q}}&caller={{customer.number}}"),
        "body": {"type": "object", "properties": {"orderId": {"type": "string"}}},
    }
    tool.update(extra)
    return tool


def test_api_request_get_with_injection_attempts_stays_on_its_host(server):
    server.answer = lambda req: (200, b'{"status":"shipped"}')
    runner = make_runner([api_tool(server)], variables={"customer": {"number": "+15550100"}})
    args = {"orderId": "../admin?x=1#@evil.example", "q": "a&b=c"}
    out = runner.run(call(name="lookup_order", arguments=json.dumps(args)))
    assert out.result == '{"status":"shipped"}' and out.status_code == 200
    (req,) = server.log
    assert req.method == "GET" and req.body == b""
    assert req.raw_path == (
        "/orders/..%2Fadmin%3Fx%3D1%23%40evil.example?q=a%26b%3Dc&caller=%2B15550100"
    )
    assert req.headers["Host"] == f"127.0.0.1:{server.port}"


def test_api_request_host_templated_from_arguments_is_refused(server):
    tool = api_tool(server, url="http://{{host}}/orders")
    out = make_runner([tool]).run(
        call(name="lookup_order", arguments={"host": f"127.0.0.1:{server.port}"})
    )
    assert "host part" in out.error and server.log == []


def test_api_request_post_body_headers_and_credential(server):
    server.answer = lambda req: (200, b"created")
    tool = api_tool(
        server,
        method="POST",
        url=server.url("/orders"),
        credentialId="cred-b",
        headers={
            "type": "object",
            "properties": {"X-Caller": {"type": "string", "value": "{{customer.number}}"}},
        },
        body={
            "type": "object",
            "properties": {
                "item": {"type": "string"},
                "channel": {"type": "string", "value": "phone"},
            },
        },
    )
    creds = {"cred-b": {"authenticationPlan": {"type": "bearer", "token": "tok"}}}
    runner = make_runner(
        [tool], credentials=creds.get, variables={"customer": {"number": "+15550100"}}
    )
    out = runner.run(call(name="lookup_order", arguments={"item": "pen", "channel": "forged"}))
    assert out.result == "created"
    (req,) = server.log
    assert req.method == "POST" and req.json() == {"item": "pen", "channel": "phone"}
    assert req.headers["X-Caller"] == "+15550100"
    assert req.headers["Authorization"] == "Bearer tok"


def test_api_request_header_injection_is_refused(server):
    tool = api_tool(server, headers={"X-Order": "{{orderId}}"})
    out = make_runner([tool]).run(
        call(name="lookup_order", arguments={"orderId": "1\r\nX-Admin: yes"})
    )
    assert "line break" in out.error and server.log == []


def test_api_request_error_status_and_bounded_body(server):
    answers = iter([(404, b"no such order"), (200, b"x" * 100_000)])
    server.answer = lambda req: next(answers)
    runner = make_runner([api_tool(server)], settings=ToolHttpSettings(max_response_bytes=1000))
    out = runner.run(call(name="lookup_order", arguments={"orderId": "7"}))
    assert out.error == "HTTP 404: no such order"
    out = runner.run(call(name="lookup_order", arguments={"orderId": "7"}))
    assert out.response_bytes == 1000
    assert out.result == "x" * 1000 + " [truncated]"


# -------------------------------------------------------------------------------- toolIds from the DB


def test_tool_ids_loaded_from_the_database(database, settings, server):
    from esl_controller.db.models.resources import Credential, Tool

    box = SecretBox(Fernet.generate_key())
    plan_public = {"type": "hmac", "algorithm": "sha256"}
    verdicts = []

    def answer(req):
        plan = {**plan_public, "secretKey": "db-key"}
        verdicts.append(verify(auth_from_plan(plan), headers=req.headers, body=req.body).ok)
        return 200, {"results": [{"toolCallId": "tc-1", "result": "from db tool"}]}

    server.answer = answer
    with database.connection_context():
        cred = Credential.create(
            org_id=settings.org_id,
            provider="webhook",
            name="hook",
            data={"provider": "webhook", "authenticationPlan": plan_public},
            secret_blob=box.seal({"authenticationPlan": {"secretKey": "db-key"}}),
            redacted={},
        )
        body = weather_tool(server, server={"url": server.url("/tool"), "credentialId": cred.id})
        row = Tool.create(
            org_id=settings.org_id, type="function", name="get_weather", credential=cred.id,
            data=body,
        )  # fmt: skip
        end = Tool.create(org_id=settings.org_id, type="endCall", data={"type": "endCall"})

        with pytest.raises(ToolsetError, match="nope not found"):
            build_toolset({"toolIds": [row.id, "nope"]}, db_tool_loader())
        toolset = build_toolset({"toolIds": [row.id, end.id]}, db_tool_loader())
        assert toolset.names == ("get_weather", "endCall")
        assert toolset.get("get_weather").tool_id == row.id

        runner = ToolRunner(
            MessageContext(call=CALL, assistant=ASSISTANT),
            toolset,
            credentials=db_credential_loader(box),
        )
        out = runner.run(call())
    assert out.result == "from db tool" and verdicts == [True]
    sent = server.log[0].json()["message"]["toolWithToolCallList"][0]
    assert sent["id"] == row.id
