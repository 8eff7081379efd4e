"""POST /call/:id/control bodies -> typed commands or ControlError, as tables."""

import pytest

from esl_controller.calls.control import (
    CONTROL_NAMES,
    AddMessageCommand,
    ChannelControlCommand,
    ControlError,
    DtmfCommand,
    EndCallCommand,
    HandoffCommand,
    SayCommand,
    TransferCommand,
    TransferDestination,
    command_name,
    parse_control,
)

VALID = [
    ({"type": "say", "content": "Hello there"}, SayCommand("Hello there")),
    (
        {
            "type": "say",
            "content": "Goodbye",
            "endCallAfterSpoken": True,
            "interruptionsEnabled": False,
            "interruptAssistantEnabled": True,
            "somethingNew": 1,
        },
        SayCommand("Goodbye", True, False, True),
    ),
    (
        {"type": "add-message", "message": {"role": "system", "content": "Be brief"}},
        AddMessageCommand("system", "Be brief", True),
    ),
    (
        {
            "type": "add-message",
            "message": {"role": "user", "content": "I moved"},
            "triggerResponseEnabled": False,
        },
        AddMessageCommand("user", "I moved", False),
    ),
    ({"type": "end-call"}, EndCallCommand()),
    (
        {"type": "transfer", "destination": {"type": "number", "number": "+15551230001"}},
        TransferCommand(TransferDestination("number", number="+15551230001")),
    ),
    (
        {
            "type": "transfer",
            "destination": {"type": "number", "number": "+442071838750", "extension": "12#"},
            "content": "Transferring you now",
        },
        TransferCommand(
            TransferDestination("number", number="+442071838750", extension="12#"),
            "Transferring you now",
        ),
    ),
    (
        {
            "type": "transfer",
            "destination": {"type": "number", "number": "5551234", "numberE164CheckEnabled": False},
        },
        TransferCommand(TransferDestination("number", number="5551234")),
    ),
    (
        {
            "type": "transfer",
            "destination": {
                "type": "sip",
                "sipUri": "sip:support@pbx.example.com:5061;transport=tls",
                "message": "One moment",
            },
        },
        TransferCommand(
            TransferDestination("sip", sip_uri="sip:support@pbx.example.com:5061;transport=tls"),
            "One moment",
        ),
    ),
    (
        {"type": "transfer", "destination": {"type": "sip", "sipUri": "sips:[2001:db8::1]"}},
        TransferCommand(TransferDestination("sip", sip_uri="sips:[2001:db8::1]")),
    ),
    (
        {"type": "handoff", "destination": {"type": "assistant", "assistantName": "Billing"}},
        HandoffCommand(assistant_name="Billing"),
    ),
    (
        {"type": "handoff", "destination": {"assistantId": "a1b2"}, "content": "Passing you on"},
        HandoffCommand(assistant_id="a1b2", content="Passing you on"),
    ),
    (
        {"type": "handoff", "destination": {"assistant": {"name": "inline"}}},
        HandoffCommand(assistant={"name": "inline"}),
    ),
    ({"type": "dtmf", "digits": "1234#"}, DtmfCommand("1234#")),
    ({"type": "dtmf", "digits": "*9wW0abcd"}, DtmfCommand("*9wW0ABCD")),
    ({"type": "dtmf", "digits": "1" * 64}, DtmfCommand("1" * 64)),
    ({"type": "hold"}, ChannelControlCommand("hold")),
    ({"type": "unhold"}, ChannelControlCommand("unhold")),
] + [({"type": "control", "control": name}, ChannelControlCommand(name)) for name in CONTROL_NAMES]


@pytest.mark.parametrize(("body", "expected"), VALID)
def test_valid_bodies(body, expected):
    command = parse_control(body)
    assert command == expected
    name = command_name(command)
    assert name == (body["control"] if body["type"] == "control" else body["type"])


INVALID = [
    ([], "body: must be a JSON object"),
    ("say", "body: must be a JSON object"),
    ({}, "type: required"),
    ({"type": 3}, "type: required"),
    ({"type": "sing"}, "unknown control type 'sing'"),
    ({"type": "send-transport-message", "message": {}}, "not supported"),
    ({"type": "say"}, "content: Field required"),
    ({"type": "say", "content": ""}, "content:"),
    ({"type": "say", "content": "   "}, "content: Value error, must not be blank"),
    ({"type": "say", "content": 5}, "content: Input should be a valid string"),
    ({"type": "say", "content": "x" * 4001}, "content: String should have at most 4000"),
    ({"type": "say", "content": "hi", "endCallAfterSpoken": "yes"}, "endCallAfterSpoken:"),
    ({"type": "add-message"}, "message: Field required"),
    ({"type": "add-message", "message": {"role": "tool", "content": "x"}}, "message.role:"),
    ({"type": "add-message", "message": {"role": "user"}}, "message.content: Field required"),
    ({"type": "transfer"}, "destination: Field required"),
    ({"type": "transfer", "destination": {"type": "fax"}}, "destination.type:"),
    ({"type": "transfer", "destination": {"type": "number"}}, "destination.number: required"),
    (
        {"type": "transfer", "destination": {"type": "number", "number": "15551230001"}},
        "destination.number: must be an E.164 number",
    ),
    (
        {"type": "transfer", "destination": {"type": "number", "number": "+1555 123"}},
        "destination.number: must be an E.164",
    ),
    (
        {"type": "transfer", "destination": {"type": "number", "number": "+15551230001' &park"}},
        "destination.number",
    ),
    (
        {
            "type": "transfer",
            "destination": {"type": "number", "number": "+1;x", "numberE164CheckEnabled": False},
        },
        "destination.number: must be digits",
    ),
    (
        {
            "type": "transfer",
            "destination": {"type": "number", "number": "+15551230001", "extension": "1 2"},
        },
        "destination.extension",
    ),
    ({"type": "transfer", "destination": {"type": "sip"}}, "destination.sipUri: required"),
    (
        {"type": "transfer", "destination": {"type": "sip", "sipUri": "tel:+15551230001"}},
        "destination.sipUri: must be a sip: or sips: URI",
    ),
    (
        {"type": "transfer", "destination": {"type": "sip", "sipUri": "sip:a@b c"}},
        "destination.sipUri",
    ),
    (
        {"type": "transfer", "destination": {"type": "sip", "sipUri": "sip:x@h'}{bridge"}},
        "destination.sipUri",
    ),
    (
        {"type": "transfer", "destination": {"type": "sip", "sipUri": "sip:x@h\\n"}},
        "destination.sipUri",
    ),
    (
        {"type": "transfer", "destination": {"type": "sip", "sipUri": "sip:" + "a" * 300}},
        "destination.sipUri: String should have at most 256",
    ),
    ({"type": "handoff", "destination": {}}, "give exactly one of"),
    (
        {"type": "handoff", "destination": {"assistantId": "a", "assistantName": "b"}},
        "give exactly one of",
    ),
    ({"type": "handoff", "destination": {"assistantName": "a\nb"}}, "no control characters"),
    ({"type": "dtmf"}, "digits: Field required"),
    ({"type": "dtmf", "digits": ""}, "digits: String should have at least 1"),
    ({"type": "dtmf", "digits": "12x"}, "digits: only 0-9"),
    ({"type": "dtmf", "digits": "1 2"}, "digits: only 0-9"),
    ({"type": "dtmf", "digits": "1@500"}, "digits: only 0-9"),
    ({"type": "dtmf", "digits": "1" * 65}, "digits: String should have at most 64"),
    ({"type": "dtmf", "digits": 123}, "digits: Input should be a valid string"),
    ({"type": "control"}, "control: Field required"),
    ({"type": "control", "control": "explode"}, "control: must be one of"),
]


@pytest.mark.parametrize(("body", "fragment"), INVALID)
def test_invalid_bodies(body, fragment):
    with pytest.raises(ControlError) as info:
        parse_control(body)
    assert info.value.messages
    assert any(fragment in message for message in info.value.messages), info.value.messages
    assert str(info.value) == "; ".join(info.value.messages)


def test_several_problems_are_all_reported():
    with pytest.raises(ControlError) as info:
        parse_control({"type": "say", "content": 1, "endCallAfterSpoken": "no"})
    assert len(info.value.messages) == 2


def test_commands_are_frozen():
    command = parse_control({"type": "dtmf", "digits": "1"})
    with pytest.raises(AttributeError):
        command.digits = "2"


def test_destination_target():
    assert TransferDestination("number", number="+15551230001").target == "+15551230001"
    assert TransferDestination("sip", sip_uri="sip:a@b").target == "sip:a@b"
