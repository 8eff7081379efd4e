"""endCall, dtmf, transferCall and handoff tools: messages said and side effects as notices."""

import json

import gevent.event
import pytest
from gevent.pywsgi import WSGIServer

from esl_controller.pipeline.tools.runner import ToolRunner
from esl_controller.pipeline.tools.spec import build_toolset
from esl_controller.webhooks.messages import MessageContext

CALL = {"id": "call-7", "type": "inboundPhoneCall"}


class Speaker:
    def __init__(self):
        self.said = []

    def __call__(self, msg):
        self.said.append(msg)

    @property
    def texts(self):
        return [(m.type, m.content, m.blocking) for m in self.said]


def runner_for(tools, assistant=None, variables=None):
    ctx = MessageContext(call=CALL, assistant=assistant or {"id": "a-1"})
    return ToolRunner(ctx, build_toolset({"tools": tools}), variables=variables)


def run(runner, name, arguments=None, speak=None):
    return runner.run({"id": "tc-9", "name": name, "arguments": json.dumps(arguments or {})}, speak)


TRANSFER = {
    "type": "transferCall",
    "messages": [{"type": "request-start", "content": "Let me connect you."}],
    "destinations": [
        {
            "type": "number",
            "number": "+15550101",
            "message": "Transferring you to sales, {{name}}.",
        },
        {"type": "sip", "sipUri": "sip:support@pbx.example.com", "description": "support"},
        {"type": "assistant", "assistantName": "Billing", "message": "One moment."},
    ],
}


def test_end_call_says_its_messages_then_ends():
    tool = {
        "type": "endCall",
        "messages": [
            {"type": "request-start", "content": "Thanks for calling."},
            {"type": "request-complete", "content": "Goodbye!"},
        ],
    }
    speak = Speaker()
    out = run(runner_for([tool]), "endCall", speak=speak)
    assert [t[1] for t in speak.texts] == ["Thanks for calling.", "Goodbye!"]
    assert out.ask_model is False and out.result == "Ending the call."
    (notice,) = out.notices
    assert notice.kind == "end-call"
    assert notice.data == {
        "reason": "assistant-ended-call",
        "message": "Thanks for calling. Goodbye!",
    }


def test_end_call_without_messages_says_nothing_no_filler():
    speak = Speaker()
    out = run(runner_for([{"type": "endCall"}]), "endCall", speak=speak)
    assert speak.said == [] and out.notices[0].data["message"] == ""


@pytest.mark.parametrize(
    ("digits", "sent"),
    [("1 2#", "12#"), ("*9w0", "*9w0"), ("12-34", "1234")],
)
def test_dtmf_sends_clean_digits(digits, sent):
    out = run(runner_for([{"type": "dtmf"}]), "dtmf", {"digits": digits})
    assert out.ok and out.ask_model is True
    (notice,) = out.notices
    assert notice.kind == "dtmf" and notice.data == {"digits": sent}


@pytest.mark.parametrize("digits", ["", "1;hangup", "1\r\nbgapi", "9" * 65, "uuid_kill"])
def test_dtmf_refuses_anything_but_keys(digits):
    tool = {"type": "dtmf", "messages": [{"type": "request-failed", "content": "I couldn't."}]}
    speak = Speaker()
    out = run(runner_for([tool]), "dtmf", {"digits": digits}, speak)
    assert out.error and out.notices == ()
    assert speak.texts == [("request-failed", "I couldn't.", False)]


def test_transfer_to_the_chosen_destination_announced_first():
    speak = Speaker()
    runner = runner_for([TRANSFER], variables={"name": "Sam"})
    out = run(runner, "transferCall", {"destination": "+1 (555) 010-1"}, speak)
    assert speak.texts == [
        ("request-start", "Let me connect you.", False),
        ("destination-message", "Transferring you to sales, Sam.", True),
    ]
    assert out.ask_model is False and out.ok
    (notice,) = out.notices
    assert notice.kind == "transfer"
    assert notice.data == {
        "destination": {"type": "number", "number": "+15550101"},
        "message": "Transferring you to sales, Sam.",
    }
    out = run(runner, "transferCall", {"destination": "sip:support@pbx.example.com"})
    assert out.notices[0].data["destination"]["sipUri"] == "sip:support@pbx.example.com"


def test_transfer_to_an_assistant_destination_is_a_handoff():
    out = run(runner_for([TRANSFER]), "transferCall", {"destination": "billing"})
    (notice,) = out.notices
    assert notice.kind == "handoff"
    assert notice.data == {
        "destination": {"type": "assistant", "assistantName": "Billing"},
        "message": "One moment.",
    }


@pytest.mark.parametrize(
    ("arguments", "error"),
    [
        ({"destination": "+19005550000"}, "unknown destination"),
        ({"destination": "sip:evil@attacker.example"}, "unknown destination"),
        ({}, "destination argument is required"),
    ],
)
def test_the_model_cannot_pick_a_destination_of_its_own(arguments, error):
    out = run(runner_for([TRANSFER]), "transferCall", arguments)
    assert error in out.error and out.notices == ()


def test_a_single_destination_needs_no_argument():
    tool = {"type": "transferCall", "destinations": [{"type": "number", "number": "+15550102"}]}
    out = run(runner_for([tool]), "transferCall")
    assert out.notices[0].data == {
        "destination": {"type": "number", "number": "+15550102"},
        "message": "",
    }


def test_handoff_tool():
    tool = {
        "type": "handoff",
        "destinations": [
            {"type": "assistant", "assistantName": "Sales"},
            {
                "type": "assistant",
                "assistantId": "asst-2",
                "contextEngineeringPlan": {"type": "all"},
            },
        ],
    }
    out = run(runner_for([tool]), "handoff", {"destination": "asst-2"})
    (notice,) = out.notices
    assert notice.kind == "handoff"
    assert notice.data["destination"] == {
        "type": "assistant",
        "assistantId": "asst-2",
        "contextEngineeringPlan": {"type": "all"},
    }


@pytest.fixture
def destination_server():
    state = {"requests": [], "answer": None}
    got = gevent.event.Event()

    def app(environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        state["requests"].append(json.loads(environ["wsgi.input"].read(length)))
        got.set()
        body = json.dumps(state["answer"]).encode()
        start_response("200 OK", [("Content-Length", str(len(body)))])
        return [body]

    server = WSGIServer(("127.0.0.1", 0), app, log=None, error_log=None)
    server.start()
    state["url"] = f"http://127.0.0.1:{server.server_port}/assistant-hook"
    yield state
    server.stop(timeout=1)


def test_transfer_without_destinations_asks_the_server(destination_server):
    destination_server["answer"] = {
        "destination": {"type": "number", "number": "+15550103"},
        "message": {"type": "request-start", "content": "Connecting you now."},
    }
    assistant = {"id": "a-1", "server": {"url": destination_server["url"]}}
    speak = Speaker()
    out = run(runner_for([{"type": "transferCall"}], assistant), "transferCall", {}, speak)
    (req,) = destination_server["requests"]
    assert req["message"]["type"] == "transfer-destination-request"
    assert req["message"]["call"]["id"] == "call-7"
    assert speak.texts == [("request-start", "Connecting you now.", False)]
    assert out.notices[0].kind == "transfer"
    assert out.notices[0].data["destination"] == {"type": "number", "number": "+15550103"}


def test_transfer_destination_request_errors(destination_server):
    assistant = {"id": "a-1", "server": {"url": destination_server["url"]}}
    destination_server["answer"] = {"error": "nobody is available"}
    out = run(runner_for([{"type": "transferCall"}], assistant), "transferCall")
    assert "nobody is available" in out.error and out.notices == ()
    destination_server["answer"] = {"destination": {"type": "number"}}
    out = run(runner_for([{"type": "transferCall"}], assistant), "transferCall")
    assert "incomplete" in out.error
    out = run(runner_for([{"type": "transferCall"}], {"id": "a-1"}), "transferCall")
    assert "no server URL" in out.error


def test_handler_adapter_fits_the_conversation_hook():
    handler = runner_for([{"type": "dtmf"}]).handler()
    assert handler("dtmf", {"digits": "5"}, "tc-1", None) == "Sent DTMF 5."
    assert handler("nope", {}, "tc-2", None) == "Error: tool nope is not available"
