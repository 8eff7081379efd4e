"""Pure pieces of the control plane: ESL events -> reducer inputs, dialed-number candidates,
assistant-request answers, gateway names."""

from __future__ import annotations

from esl_controller.calls import ended_reason as er
from esl_controller.calls.inbound import _choice_from_answer, dialed_candidates
from esl_controller.calls.registry import event_id, event_to_input
from esl_controller.calls.state import (
    ChannelAnswer,
    ChannelCreate,
    ChannelHangupComplete,
    Dtmf,
    ForkConnected,
    ForkError,
)
from esl_controller.esl.protocol import Event
from esl_controller.services import gateway_name

UUID = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"


def ev(**headers: str) -> Event:
    items = [("Core-UUID", "core"), ("Event-Sequence", "5"), ("Unique-ID", UUID)]
    items += [
        (k.replace("_", "-") if not k.startswith("variable") else k, v) for k, v in headers.items()
    ]
    return Event(items=tuple(items))


def test_event_mapping():
    create = event_to_input(ev(Event_Name="CHANNEL_CREATE", Answer_State="answered"))
    assert isinstance(create, ChannelCreate) and create.already_answered
    assert create.channel_uuid == UUID and create.event_id == "core:5"
    assert isinstance(event_to_input(ev(Event_Name="CHANNEL_ANSWER")), ChannelAnswer)
    done = event_to_input(
        ev(
            Event_Name="CHANNEL_HANGUP_COMPLETE",
            Hangup_Cause="USER_BUSY",
            variable_sip_term_status="486",
            variable_billsec="0",
            variable_sip_hangup_disposition="recv_refuse",
        )
    )
    assert isinstance(done, ChannelHangupComplete)
    assert (done.cause, done.sip_code, done.billsec, done.disposition) == (
        "USER_BUSY",
        486,
        0,
        "recv_refuse",
    )
    assert isinstance(event_to_input(ev(Event_Name="DTMF", DTMF_Digit="5")), Dtmf)
    assert event_to_input(ev(Event_Name="DTMF")) is None
    fork = event_to_input(ev(Event_Name="CUSTOM", Event_Subclass="mod_audio_fork::connect"))
    assert isinstance(fork, ForkConnected)
    failed = event_to_input(
        ev(Event_Name="CUSTOM", Event_Subclass="mod_audio_fork::connect_failed")
    )
    assert isinstance(failed, ForkError)
    assert event_to_input(ev(Event_Name="HEARTBEAT")) is None
    assert event_to_input(ev(Event_Name="CUSTOM", Event_Subclass="other::thing")) is None


def test_event_id_needs_core_and_sequence():
    assert event_id(Event(items=(("Event-Name", "X"),))) is None


def test_dialed_candidates_order_and_sip_uri():
    headers = {
        "Caller-Destination-Number": "15557654321",
        "variable_sip_req_user": "15557654321",
        "variable_sip_to_user": "+15557654321",
        "variable_sip_req_uri": "agent@pbx.example.com",
    }
    assert dialed_candidates(headers.get) == [
        "15557654321",
        "+15557654321",
        "sip:agent@pbx.example.com",
    ]
    assert dialed_candidates({}.get) == []


def test_assistant_request_answers():
    assert _choice_from_answer([1]).reason == er.ASSISTANT_REQUEST_RETURNED_INVALID_ASSISTANT
    assert _choice_from_answer({"error": "x"}).reason == er.ASSISTANT_REQUEST_RETURNED_ERROR
    assert _choice_from_answer({}).reason == er.ASSISTANT_REQUEST_RETURNED_NO_ASSISTANT
    assert _choice_from_answer({"assistant": None}).reason == (
        er.ASSISTANT_REQUEST_RETURNED_NO_ASSISTANT
    )
    assert _choice_from_answer({"assistantId": "nope"}).reason == (
        er.ASSISTANT_REQUEST_RETURNED_INVALID_ASSISTANT
    )
    ok = _choice_from_answer({"assistant": {"name": "x"}, "assistantOverrides": {"a": 1}})
    assert ok.ok and ok.assistant == {"name": "x"} and ok.overrides == {"a": 1}


def test_gateway_name():
    assert gateway_name(UUID) == "gw_0a1b2c3d4e5f4a6b8c7d9e0f1a2b3c4d"
