"""The call reducer, as tables of input sequences and expected status, endedReason and actions."""

import itertools
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from esl_controller.calls import ended_reason as er
from esl_controller.calls.control import parse_control
from esl_controller.calls.state import (
    ENDED,
    IN_PROGRESS,
    INPUT_TYPES,
    QUEUED,
    RINGING,
    STATUS_ORDER,
    AddMessage,
    Answer,
    AssistantEndedCall,
    BreakPlayback,
    CallConfig,
    CallCreated,
    CallSetupFailed,
    CancelTimer,
    ChannelAnswer,
    ChannelBridge,
    ChannelCreate,
    ChannelExecuteComplete,
    ChannelHangup,
    ChannelHangupComplete,
    ChannelProgress,
    ChannelProgressMedia,
    CommandFailed,
    CommandTimeout,
    ControlAccepted,
    ControlRequest,
    Dtmf,
    EmitStatusUpdate,
    ForkClosed,
    ForkConnected,
    ForkError,
    Handoff,
    Hangup,
    Hold,
    MaxDurationElapsed,
    MuteAssistant,
    MuteCustomer,
    Originate,
    OriginateAccepted,
    OriginateFailed,
    PersistStatus,
    PipelineError,
    PipelineReady,
    ReconcileFound,
    ReconcileNotFound,
    RecordEvent,
    Rejected,
    RingTimeout,
    RuntimeRestarted,
    RuntimeShutdown,
    SayFirstMessage,
    ScheduleTimer,
    SealArtifacts,
    SendDtmf,
    SilenceTimeout,
    SocketDisconnected,
    Speak,
    StartFork,
    StopFork,
    Transfer,
    TransferCompleted,
    Unhold,
    UnmuteAssistant,
    UnmuteCustomer,
    WebClientConnected,
    new_call,
    reduce,
)

T0 = datetime(2024, 5, 14, 10, 21, 0, tzinfo=timezone.utc)
BOOKKEEPING = (RecordEvent, PersistStatus, EmitStatusUpdate, ScheduleTimer, CancelTimer)


def T(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def ctl(body: dict, s: float = 5, event_id: str | None = None) -> ControlRequest:
    return ControlRequest(at=T(s), command=parse_control(body), event_id=event_id)


def run(direction: str, events: list, config: CallConfig | None = None):
    state = new_call("call-1", direction, at=T0, config=config)
    outs = []
    for event in events:
        state, out = reduce(state, event)
        outs.append(out)
    return state, outs


def effects(out: list) -> list:
    return [a for a in out if not isinstance(a, BOOKKEEPING)]


def statuses(outs: list) -> list:
    return [
        (a.status, a.ended_reason) for out in outs for a in out if isinstance(a, EmitStatusUpdate)
    ]


IN = [CallCreated(at=T0), ChannelCreate(at=T(0.1), channel_uuid="u-1")]
IN_LIVE = [*IN, ChannelAnswer(at=T(1))]
OUT = [CallCreated(at=T0)]
OUT_LIVE = [*OUT, OriginateAccepted(at=T(3), channel_uuid="u-2")]
WEB_LIVE = [CallCreated(at=T0), WebClientConnected(at=T(1))]
BYE = ChannelHangup(at=T(61), cause="NORMAL_CLEARING", disposition="recv_bye")
WE_HUNG_UP = ChannelHangup(at=T(61), cause="NORMAL_CLEARING", disposition="send_bye")
XFER_NUMBER = {"type": "transfer", "destination": {"type": "number", "number": "+15550001111"}}
XFER_SIP = {"type": "transfer", "destination": {"type": "sip", "sipUri": "sip:desk@pbx.example"}}

# (id, direction, inputs, status, endedReason, started_at offset, ended_at offset)
LIFECYCLES = [
    ("inbound-caller-hangs-up", "inbound", [*IN_LIVE, BYE], ENDED, er.CUSTOMER_ENDED_CALL, 1, 61),
    (
        "inbound-hangup-complete-only",
        "inbound",
        [*IN_LIVE, ChannelHangupComplete(at=T(61), cause="NORMAL_CLEARING", billsec=60)],
        ENDED,
        er.CUSTOMER_ENDED_CALL,
        1,
        61,
    ),
    (
        "inbound-cancel-before-answer",
        "inbound",
        [*IN, ChannelHangup(at=T(2), cause="ORIGINATOR_CANCEL", disposition="recv_cancel")],
        ENDED,
        er.SIP_INBOUND_HUNGUP_BEFORE_CONNECT,
        None,
        2,
    ),
    (
        "inbound-answer-before-create",
        "inbound",
        [CallCreated(at=T0), ChannelAnswer(at=T(1)), ChannelCreate(at=T(0.5))],
        IN_PROGRESS,
        None,
        1,
        None,
    ),
    (
        "inbound-answer-never-confirmed",
        "inbound",
        [*IN, CommandTimeout(at=T(10), what="answer")],
        ENDED,
        er.SIP_INBOUND_FAILED_TO_CONNECT,
        None,
        10,
    ),
    (
        "inbound-answer-refused",
        "inbound",
        [*IN, CommandFailed(at=T(1), what="answer", reply="-ERROR")],
        ENDED,
        er.SIP_INBOUND_FAILED_TO_CONNECT,
        None,
        1,
    ),
    ("outbound-answered", "outbound", [*OUT_LIVE, BYE], ENDED, er.CUSTOMER_ENDED_CALL, 3, 61),
    (
        "outbound-progress-then-answer",
        "outbound",
        [
            *OUT,
            ChannelCreate(at=T(0.2)),
            ChannelProgress(at=T(1)),
            ChannelProgressMedia(at=T(1.5)),
            ChannelAnswer(at=T(4)),
        ],
        IN_PROGRESS,
        None,
        4,
        None,
    ),
    (
        "outbound-busy",
        "outbound",
        [*OUT, OriginateFailed(at=T(2), cause="USER_BUSY")],
        ENDED,
        er.CUSTOMER_BUSY,
        None,
        2,
    ),
    (
        "outbound-no-answer",
        "outbound",
        [*OUT, ChannelProgress(at=T(1)), OriginateFailed(at=T(30), cause="NO_ANSWER")],
        ENDED,
        er.CUSTOMER_DID_NOT_ANSWER,
        None,
        30,
    ),
    (
        "outbound-bad-gateway",
        "outbound",
        [*OUT, OriginateFailed(at=T(0.1), cause="INVALID_GATEWAY")],
        ENDED,
        er.SIP_OUTBOUND_FAILED_TO_CONNECT,
        None,
        0.1,
    ),
    (
        "outbound-forbidden",
        "outbound",
        [*OUT, OriginateFailed(at=T(0.4), cause="CALL_REJECTED", sip_code=403)],
        ENDED,
        er.SIP_OUTBOUND_403,
        None,
        0.4,
    ),
    (
        "outbound-callee-rejects-while-ringing",
        "outbound",
        [*OUT, ChannelProgress(at=T(1)), ChannelHangup(at=T(5), cause="USER_BUSY", sip_code=486)],
        ENDED,
        er.CUSTOMER_BUSY,
        None,
        5,
    ),
    (
        "outbound-ring-timeout",
        "outbound",
        [
            *OUT,
            ChannelProgress(at=T(1)),
            RingTimeout(at=T(60)),
            ChannelHangup(at=T(60.1), cause="ORIGINATOR_CANCEL"),
        ],
        ENDED,
        er.CUSTOMER_DID_NOT_ANSWER,
        None,
        60.1,
    ),
    (
        "outbound-ring-timeout-then-originate-result",
        "outbound",
        [*OUT, RingTimeout(at=T(60)), OriginateFailed(at=T(60.2), cause="ORIGINATOR_CANCEL")],
        ENDED,
        er.CUSTOMER_DID_NOT_ANSWER,
        None,
        60.2,
    ),
    (
        "outbound-originate-timeout",
        "outbound",
        [*OUT, CommandTimeout(at=T(90), what="originate")],
        ENDED,
        er.SIP_OUTBOUND_FAILED_TO_CONNECT,
        None,
        90,
    ),
    (
        "stale-originate-failure-after-answer",
        "outbound",
        [*OUT_LIVE, OriginateFailed(at=T(4), cause="NO_ANSWER")],
        IN_PROGRESS,
        None,
        3,
        None,
    ),
    (
        "max-duration",
        "inbound",
        [*IN_LIVE, MaxDurationElapsed(at=T(601)), WE_HUNG_UP],
        ENDED,
        er.EXCEEDED_MAX_DURATION,
        1,
        61,
    ),
    (
        "freeswitch-allotted-timeout",
        "inbound",
        [*IN_LIVE, ChannelHangup(at=T(30), cause="ALLOTTED_TIMEOUT")],
        ENDED,
        er.EXCEEDED_MAX_DURATION,
        1,
        30,
    ),
    (
        "silence",
        "inbound",
        [*IN_LIVE, SilenceTimeout(at=T(31)), WE_HUNG_UP],
        ENDED,
        er.SILENCE_TIMED_OUT,
        1,
        61,
    ),
    (
        "control-end-call",
        "inbound",
        [*IN_LIVE, ctl({"type": "end-call"}), WE_HUNG_UP],
        ENDED,
        er.MANUALLY_CANCELED,
        1,
        61,
    ),
    (
        "requested-hangup-beats-customer-bye",
        "inbound",
        [*IN_LIVE, ctl({"type": "end-call"}), BYE],
        ENDED,
        er.MANUALLY_CANCELED,
        1,
        61,
    ),
    (
        "hangup-never-confirmed",
        "inbound",
        [*IN_LIVE, ctl({"type": "end-call"}), CommandTimeout(at=T(15), what="hangup")],
        ENDED,
        er.MANUALLY_CANCELED,
        1,
        15,
    ),
    (
        "hangup-no-such-channel",
        "inbound",
        [*IN_LIVE, SilenceTimeout(at=T(9)), CommandFailed(at=T(9.1), what="hangup", reply="-ERR")],
        ENDED,
        er.SILENCE_TIMED_OUT,
        1,
        9.1,
    ),
    (
        "end-phrase",
        "inbound",
        [*IN_LIVE, AssistantEndedCall(at=T(20), reason=er.ASSISTANT_SAID_END_CALL_PHRASE), WE_HUNG_UP],
        ENDED,
        er.ASSISTANT_SAID_END_CALL_PHRASE,
        1,
        61,
    ),
    (
        "end-call-tool",
        "outbound",
        [*OUT_LIVE, AssistantEndedCall(at=T(20)), WE_HUNG_UP],
        ENDED,
        er.ASSISTANT_ENDED_CALL,
        3,
        61,
    ),
    (
        "assistant-reason-not-ours-is-generic",
        "inbound",
        [*IN_LIVE, AssistantEndedCall(at=T(20), reason="customer-busy"), WE_HUNG_UP],
        ENDED,
        er.ASSISTANT_ENDED_CALL,
        1,
        61,
    ),
    (
        "after-message-spoken",
        "inbound",
        [
            *IN_LIVE,
            AssistantEndedCall(at=T(20), reason=er.ASSISTANT_ENDED_CALL_AFTER_MESSAGE_SPOKEN),
            WE_HUNG_UP,
        ],
        ENDED,
        er.ASSISTANT_ENDED_CALL_AFTER_MESSAGE_SPOKEN,
        1,
        61,
    ),
    (
        "pipeline-error",
        "inbound",
        [*IN_LIVE, PipelineError(at=T(8), kind="pipeline-error-openai-llm-failed"), WE_HUNG_UP],
        ENDED,
        "pipeline-error-openai-llm-failed",
        1,
        61,
    ),
    (
        "first-cause-wins-over-later-pipeline-error",
        "inbound",
        [
            *IN_LIVE,
            ctl({"type": "end-call"}),
            PipelineError(at=T(8), kind="pipeline-error-openai-llm-failed"),
            WE_HUNG_UP,
        ],
        ENDED,
        er.MANUALLY_CANCELED,
        1,
        61,
    ),
    (
        "blind-transfer-socket-released",
        "inbound",
        [*IN_LIVE, ctl(XFER_NUMBER), SocketDisconnected(at=T(7))],
        ENDED,
        er.ASSISTANT_FORWARDED_CALL,
        1,
        7,
    ),
    (
        "blind-transfer-bridged",
        "inbound",
        [*IN_LIVE, ctl(XFER_NUMBER), ChannelBridge(at=T(9), other_uuid="b-1")],
        ENDED,
        er.ASSISTANT_FORWARDED_CALL,
        1,
        9,
    ),
    (
        "refer-ends-with-blind-transfer",
        "outbound",
        [*OUT_LIVE, ctl(XFER_SIP), ChannelHangup(at=T(12), cause="BLIND_TRANSFER")],
        ENDED,
        er.ASSISTANT_FORWARDED_CALL,
        3,
        12,
    ),
    (
        "transfer-completed",
        "inbound",
        [*IN_LIVE, ctl(XFER_SIP), TransferCompleted(at=T(8))],
        ENDED,
        er.ASSISTANT_FORWARDED_CALL,
        1,
        8,
    ),
    (
        "customer-leaves-during-transfer",
        "inbound",
        [*IN_LIVE, ctl(XFER_SIP), ChannelHangup(at=T(6), cause="NORMAL_CLEARING", disposition="recv_bye")],
        ENDED,
        er.CUSTOMER_ENDED_CALL_DURING_TRANSFER,
        1,
        6,
    ),
    (
        "transfer-refused",
        "inbound",
        [*IN_LIVE, ctl(XFER_SIP), CommandFailed(at=T(6), what="transfer", reply="-ERR")],
        ENDED,
        er.TRANSFER_FAILED,
        1,
        6,
    ),
    (
        "transfer-never-confirmed",
        "inbound",
        [*IN_LIVE, ctl(XFER_NUMBER), CommandTimeout(at=T(65), what="transfer")],
        ENDED,
        er.TRANSFER_FAILED,
        1,
        65,
    ),
    (
        "socket-dropped-without-notice",
        "inbound",
        [*IN_LIVE, SocketDisconnected(at=T(40), notice=False)],
        ENDED,
        er.PROVIDER_CLOSED_CONNECTION,
        1,
        40,
    ),
    (
        "disconnect-notice-lost-hangup-event",
        "inbound",
        [*IN_LIVE, SocketDisconnected(at=T(40), notice=True)],
        ENDED,
        er.CUSTOMER_ENDED_CALL,
        1,
        40,
    ),
    (
        "disconnect-notice-before-answer",
        "inbound",
        [*IN, SocketDisconnected(at=T(3))],
        ENDED,
        er.SIP_INBOUND_HUNGUP_BEFORE_CONNECT,
        None,
        3,
    ),
    (
        "first-hangup-wins",
        "inbound",
        [*IN_LIVE, BYE, ChannelHangup(at=T(62), cause="MEDIA_TIMEOUT")],
        ENDED,
        er.CUSTOMER_ENDED_CALL,
        1,
        61,
    ),
    (
        "fork-never-connects",
        "inbound",
        [*IN_LIVE, ForkError(at=T(2), message="connect refused")],
        ENDED,
        er.TRANSPORT_NEVER_CONNECTED,
        1,
        2,
    ),
    (
        "fork-timeout",
        "inbound",
        [*IN_LIVE, CommandTimeout(at=T(11), what="fork")],
        ENDED,
        er.TRANSPORT_NEVER_CONNECTED,
        1,
        11,
    ),
    (
        "fork-error-after-connect-is-logged",
        "inbound",
        [*IN_LIVE, ForkConnected(at=T(1.2)), ForkError(at=T(30), message="ws reset")],
        IN_PROGRESS,
        None,
        1,
        None,
    ),
    (
        "fork-closed-mid-call",
        "inbound",
        [*IN_LIVE, ForkConnected(at=T(1.2)), ForkClosed(at=T(30)), Dtmf(at=T(31), digit="5")],
        IN_PROGRESS,
        None,
        1,
        None,
    ),
    (
        "setup-failed",
        "inbound",
        [*IN, CallSetupFailed(at=T(2), reason=er.ASSISTANT_REQUEST_FAILED, message="timeout")],
        ENDED,
        er.ASSISTANT_REQUEST_FAILED,
        None,
        2,
    ),
    ("shutdown", "inbound", [*IN_LIVE, RuntimeShutdown(at=T(50))], ENDED, er.WORKER_SHUTDOWN, 1, 50),
    ("restarted", "outbound", [*OUT_LIVE, RuntimeRestarted(at=T(50))], ENDED, er.WORKER_DIED, 3, 50),
    ("reconcile-gone", "inbound", [*IN_LIVE, ReconcileNotFound(at=T(50))], ENDED, er.WORKER_DIED, 1, 50),
    ("reconcile-found", "inbound", [*IN_LIVE, ReconcileFound(at=T(50))], IN_PROGRESS, None, 1, None),
    ("web-client-leaves", "web", [*WEB_LIVE, SocketDisconnected(at=T(30))], ENDED, er.CUSTOMER_ENDED_CALL, 1, 30),
    ("web-never-joins", "web", [CallCreated(at=T0), RingTimeout(at=T(60))], ENDED, er.CUSTOMER_DID_NOT_ANSWER, None, 60),
    ("web-end-call", "web", [*WEB_LIVE, ctl({"type": "end-call"}, s=9)], ENDED, er.MANUALLY_CANCELED, 1, 9),
    ("web-max-duration", "web", [*WEB_LIVE, MaxDurationElapsed(at=T(600))], ENDED, er.EXCEEDED_MAX_DURATION, 1, 600),
    ("stale-ring-timer-after-answer", "outbound", [*OUT_LIVE, RingTimeout(at=T(60))], IN_PROGRESS, None, 3, None),
    ("stale-max-duration-before-answer", "inbound", [*IN, MaxDurationElapsed(at=T(60))], RINGING, None, None, None),
    ("created-only", "outbound", [CallCreated(at=T0)], QUEUED, None, None, None),
    (
        "execute-complete-and-dtmf-change-nothing",
        "inbound",
        [*IN_LIVE, ChannelExecuteComplete(at=T(2), application="playback", response="FILE PLAYED"), Dtmf(at=T(3), digit="#")],
        IN_PROGRESS,
        None,
        1,
        None,
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("direction", "inputs", "status", "reason", "started", "ended"),
    [case[1:] for case in LIFECYCLES],
    ids=[case[0] for case in LIFECYCLES],
)
def test_lifecycle(direction, inputs, status, reason, started, ended):
    state, outs = run(direction, inputs)
    assert state.status == status
    assert state.ended_reason == reason
    assert state.started_at == (None if started is None else T(started))
    assert state.ended_at == (None if ended is None else T(ended))
    if started is not None and ended is not None:
        assert state.duration_seconds == pytest.approx(ended - started)
    else:
        assert state.duration_seconds is None
    ups = statuses(outs)
    order = [STATUS_ORDER.index(s) for s, _ in ups]
    assert order == sorted(set(order)), ups  # forward only, each status announced once
    if status == ENDED:
        assert ups[-1] == (ENDED, reason)
        assert sum(isinstance(a, SealArtifacts) for out in outs for a in out) == 1
        assert not state.timers  # every timer cancelled
    for out in outs:  # every input is logged first
        assert isinstance(out[0], RecordEvent)


def test_status_updates_and_persisted_fields_of_a_normal_call():
    complete = ChannelHangupComplete(at=T(61.5), cause="NORMAL_CLEARING", billsec=60)
    state, outs = run("inbound", [*IN_LIVE, BYE, complete])
    assert statuses(outs) == [
        (RINGING, None),
        (IN_PROGRESS, None),
        (ENDED, er.CUSTOMER_ENDED_CALL),
    ]
    persisted = [
        (a.status, dict(a.fields)) for out in outs for a in out if isinstance(a, PersistStatus)
    ]
    assert persisted == [
        (RINGING, {"channel_uuid": "u-1"}),
        (IN_PROGRESS, {"started_at": T(1)}),
        (
            ENDED,
            {
                "ended_at": T(61),
                "ended_reason": er.CUSTOMER_ENDED_CALL,
                "hangup_cause": "NORMAL_CLEARING",
                "duration_seconds": 60.0,
            },
        ),
        (ENDED, {"billsec": 60}),
    ]
    assert state.billsec == 60
    assert state.hangup_disposition == "recv_bye"


# (id, direction, setup inputs, the input under test, expected effects of that input)
STEP_EFFECTS = [
    ("inbound-create-answers", "inbound", [CallCreated(at=T0)], ChannelCreate(at=T(0.1)), [Answer()]),
    (
        "inbound-already-answered",
        "inbound",
        [CallCreated(at=T0)],
        ChannelCreate(at=T(0.1), already_answered=True),
        [],
    ),
    ("outbound-created-originates", "outbound", [], CallCreated(at=T0), [Originate()]),
    ("outbound-create-no-answer", "outbound", OUT, ChannelCreate(at=T(0.1)), []),
    ("web-created", "web", [], CallCreated(at=T0), []),
    ("phone-answer-starts-fork", "inbound", IN, ChannelAnswer(at=T(1)), [StartFork()]),
    ("outbound-accepted-starts-fork", "outbound", OUT, OriginateAccepted(at=T(3)), [StartFork()]),
    ("web-answer-no-fork", "web", [CallCreated(at=T0)], WebClientConnected(at=T(1)), []),
    ("second-answer-nothing", "inbound", IN_LIVE, ChannelAnswer(at=T(1.1)), []),
    ("end-call", "inbound", IN_LIVE, ctl({"type": "end-call"}), [Hangup("NORMAL_CLEARING"), ControlAccepted(parse_control({"type": "end-call"}))]),
    ("ring-timeout", "outbound", OUT, RingTimeout(at=T(60)), [Hangup("NO_ANSWER")]),
    ("hangup-with-fork", "inbound", IN_LIVE, BYE, [StopFork(), SealArtifacts()]),
    ("hangup-before-answer", "inbound", IN, BYE, [SealArtifacts()]),
    ("socket-drop", "inbound", IN_LIVE, SocketDisconnected(at=T(9), notice=False), [StopFork(), Hangup("NORMAL_CLEARING"), SealArtifacts()]),
    ("shutdown", "inbound", IN_LIVE, RuntimeShutdown(at=T(9)), [StopFork(), Hangup("SYSTEM_SHUTDOWN"), SealArtifacts()]),
    ("reconcile-gone-no-hangup", "inbound", IN_LIVE, ReconcileNotFound(at=T(9)), [StopFork(), SealArtifacts()]),
    ("setup-failed-rejects-leg", "inbound", IN, CallSetupFailed(at=T(1), reason=er.ASSISTANT_NOT_FOUND, cause="UNALLOCATED_NUMBER"), [Hangup("UNALLOCATED_NUMBER"), SealArtifacts()]),
    ("setup-failed-no-leg-yet", "outbound", [], CallSetupFailed(at=T(1), reason=er.ASSISTANT_NOT_FOUND), [SealArtifacts()]),
    ("fork-error-hangs-up", "inbound", IN_LIVE, ForkError(at=T(2)), [StopFork(), Hangup("NORMAL_CLEARING"), SealArtifacts()]),
    ("transfer-completed", "inbound", [*IN_LIVE, ctl(XFER_SIP)], TransferCompleted(at=T(8)), [StopFork(), SealArtifacts()]),
    ("answer-while-hangup-pending", "outbound", [*OUT, ctl({"type": "end-call"}, s=1)], ChannelAnswer(at=T(2)), [Hangup("NORMAL_CLEARING")]),
    ("pipeline-ready-empty", "inbound", IN_LIVE, PipelineReady(at=T(2)), []),
]  # fmt: skip


@pytest.mark.parametrize(
    ("direction", "setup", "event", "expected"),
    [case[1:] for case in STEP_EFFECTS],
    ids=[case[0] for case in STEP_EFFECTS],
)
def test_step_effects(direction, setup, event, expected):
    state, _ = run(direction, setup)
    _, out = reduce(state, event)
    assert effects(out) == expected


# -- live control --------------------------------------------------------------------------------

SAY = {"type": "say", "content": "Please hold"}
CONTROL_ON_LIVE = [
    ("say-queued", SAY, [], True),
    ("add-message-queued", {"type": "add-message", "message": {"role": "system", "content": "x"}}, [], True),
    ("say-first-message-queued", {"type": "control", "control": "say-first-message"}, [], True),
    ("end-call", {"type": "end-call"}, [Hangup("NORMAL_CLEARING")], False),
    ("transfer-number", XFER_NUMBER, [Transfer("+15550001111", "blind")], False),
    (
        "transfer-number-ext-announce",
        {"type": "transfer", "destination": {"type": "number", "number": "+15550001111", "extension": "22"}, "content": "Connecting"},
        [Transfer("+15550001111", "blind", "22", "Connecting")],
        False,
    ),
    ("transfer-sip", XFER_SIP, [Transfer("sip:desk@pbx.example", "refer")], False),
    ("handoff", {"type": "handoff", "destination": {"assistantName": "Billing"}}, [Handoff(assistant_name="Billing")], False),
    ("dtmf", {"type": "dtmf", "digits": "12#"}, [SendDtmf("12#")], False),
    ("mute-assistant", {"type": "control", "control": "mute-assistant"}, [MuteAssistant()], False),
    ("unmute-assistant-not-muted", {"type": "control", "control": "unmute-assistant"}, [], False),
    ("mute-customer", {"type": "control", "control": "mute-customer"}, [MuteCustomer()], False),
    ("unmute-customer-not-muted", {"type": "control", "control": "unmute-customer"}, [], False),
    ("hold", {"type": "hold"}, [Hold()], False),
    ("hold-as-control", {"type": "control", "control": "hold"}, [Hold()], False),
    ("unhold-not-held", {"type": "unhold"}, [], False),
]  # fmt: skip


@pytest.mark.parametrize(
    ("body", "expected", "queued"),
    [case[1:] for case in CONTROL_ON_LIVE],
    ids=[case[0] for case in CONTROL_ON_LIVE],
)
def test_control_on_live_call(body, expected, queued):
    state, _ = run("inbound", IN_LIVE)
    request = ctl(body)
    new, out = reduce(state, request)
    assert effects(out) == [*expected, ControlAccepted(request.command, queued=queued)]
    assert out[0].kind.startswith("control.") and out[0].source == "api"
    assert len(new.queued) == (1 if queued else 0)


@pytest.mark.parametrize(
    "body", [case[1] for case in CONTROL_ON_LIVE], ids=[case[0] for case in CONTROL_ON_LIVE]
)
@pytest.mark.parametrize("direction", ["inbound", "outbound", "web"])
def test_control_on_ended_call_is_rejected(direction, body):
    live = {"inbound": IN_LIVE, "outbound": OUT_LIVE, "web": WEB_LIVE}[direction]
    state, _ = run(direction, [*live, SocketDisconnected(at=T(20))])
    assert state.status == ENDED
    request = ctl(body, s=30)
    new, out = reduce(state, request)
    assert new == state
    assert effects(out) == [Rejected(request.command, "the call has ended", 409)]
    assert out[0].data["ignored"] == "call ended"


RINGING_RULES = [
    ("say", SAY, "queued"),
    ("end-call", {"type": "end-call"}, "accepted"),
    ("mute", {"type": "control", "control": "mute-assistant"}, "accepted"),
    ("handoff", {"type": "handoff", "destination": {"assistantId": "a"}}, "accepted"),
    ("dtmf", {"type": "dtmf", "digits": "1"}, "rejected"),
    ("transfer", XFER_NUMBER, "rejected"),
    ("hold", {"type": "hold"}, "rejected"),
]


@pytest.mark.parametrize(
    ("body", "outcome"), [c[1:] for c in RINGING_RULES], ids=[c[0] for c in RINGING_RULES]
)
def test_control_before_answer(body, outcome):
    state, _ = run("inbound", IN)
    assert state.status == RINGING
    request = ctl(body)
    _, out = reduce(state, request)
    last = out[-1]
    if outcome == "rejected":
        assert last == Rejected(
            request.command, f"{body['type']} needs an answered call; the call is ringing"
        )
    else:
        assert last == ControlAccepted(request.command, queued=outcome == "queued")


@pytest.mark.parametrize("body", [SAY, {"type": "dtmf", "digits": "1"}, XFER_SIP, {"type": "hold"}])
@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ([*IN_LIVE, ctl(XFER_NUMBER, s=4)], "the call is being transferred"),
        ([*IN_LIVE, ctl({"type": "end-call"}, s=4)], "the call is ending"),
        ([*IN_LIVE, SilenceTimeout(at=T(4))], "the call is ending"),
    ],
    ids=["forwarding", "ending", "silence-ending"],
)
def test_control_while_forwarding_or_ending_is_rejected(setup, message, body):
    state, _ = run("inbound", setup)
    request = ctl(body)
    new, out = reduce(state, request)
    assert effects(out) == [Rejected(request.command, message)]
    assert new.status == state.status


def test_end_call_while_ending_is_idempotent():
    state, outs = run("inbound", [*IN_LIVE, ctl({"type": "end-call"}, s=4)])
    assert effects(outs[-1])[0] == Hangup("NORMAL_CLEARING")
    _, out = reduce(state, ctl({"type": "end-call"}, s=5))
    assert effects(out) == [ControlAccepted(parse_control({"type": "end-call"}))]


def test_end_call_while_forwarding_hangs_up():
    state, _ = run("inbound", [*IN_LIVE, ctl(XFER_NUMBER, s=4)])
    _, out = reduce(state, ctl({"type": "end-call"}))
    assert Hangup("NORMAL_CLEARING") in out


def test_queued_speech_flushes_in_order_when_pipeline_is_ready():
    first = {"type": "say", "content": "One", "endCallAfterSpoken": True}
    note = {
        "type": "add-message",
        "message": {"role": "user", "content": "Two"},
        "triggerResponseEnabled": False,
    }
    hello = {"type": "control", "control": "say-first-message"}
    state, _ = run("inbound", [*IN, ctl(first, 0.5), *IN_LIVE[2:], ctl(note, 2), ctl(hello, 3)])
    assert len(state.queued) == 3
    state, out = reduce(state, PipelineReady(at=T(4)))
    assert effects(out) == [
        Speak("One", end_call_after=True),
        AddMessage("user", "Two", trigger_response=False),
        SayFirstMessage(),
    ]
    assert state.queued == () and state.pipeline_ready
    state, out = reduce(
        state, ctl({"type": "say", "content": "Now", "interruptAssistantEnabled": True})
    )
    request_command = parse_control(
        {"type": "say", "content": "Now", "interruptAssistantEnabled": True}
    )
    assert effects(out) == [
        BreakPlayback(),
        Speak("Now", interrupt=True),
        ControlAccepted(request_command),
    ]


def test_queued_speech_is_dropped_at_end():
    state, _ = run("inbound", [*IN_LIVE, ctl(SAY), BYE])
    assert state.queued == ()


@pytest.mark.parametrize(
    ("bodies", "flag", "expected"),
    [
        (["mute-assistant", "mute-assistant", "unmute-assistant"], "assistant_muted", [MuteAssistant(), UnmuteAssistant()]),
        (["mute-customer", "unmute-customer", "unmute-customer"], "customer_muted", [MuteCustomer(), UnmuteCustomer()]),
        (["hold", "hold", "unhold", "hold"], "on_hold", [Hold(), Unhold(), Hold()]),
    ],
)  # fmt: skip
def test_toggles_are_idempotent(bodies, flag, expected):
    inputs = [ctl({"type": "control", "control": name}, s=5 + i) for i, name in enumerate(bodies)]
    state, outs = run("inbound", [*IN_LIVE, *inputs])
    got = [
        a
        for out in outs[len(IN_LIVE) :]
        for a in effects(out)
        if not isinstance(a, ControlAccepted)
    ]
    assert got == expected
    assert getattr(state, flag) == (bodies[-1] in ("mute-assistant", "mute-customer", "hold"))


# -- duplicates, late events, out-of-order ---------------------------------------------------------


@pytest.mark.parametrize(
    "event",
    [
        ChannelAnswer(at=T(1), event_id="core:12"),
        ChannelProgress(at=T(1), event_id="core:13"),
        ChannelHangup(at=T(61), cause="NORMAL_CLEARING", event_id="core:14"),
        Dtmf(at=T(3), digit="1", event_id="core:15"),
        ForkConnected(at=T(2), event_id="fork:1"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_duplicate_event_is_ignored(event):
    state, _ = run("inbound", IN)
    once, first = reduce(state, event)
    twice, second = reduce(once, event)
    assert first and second == []
    assert twice == once


def test_duplicate_control_request_is_acknowledged_without_effects():
    state, _ = run("inbound", IN_LIVE)
    request = ctl(XFER_NUMBER, event_id="req-1")
    state, first = reduce(state, request)
    assert Transfer("+15550001111", "blind") in first
    again, second = reduce(state, request)
    assert second == [ControlAccepted(request.command, duplicate=True)]
    assert again == state


LATE = [
    ChannelAnswer(at=T(70)),
    ChannelProgress(at=T(70)),
    ChannelCreate(at=T(70)),
    ChannelBridge(at=T(70)),
    ChannelHangup(at=T(70), cause="MEDIA_TIMEOUT"),
    Dtmf(at=T(70), digit="9"),
    ForkConnected(at=T(70)),
    ForkError(at=T(70)),
    OriginateAccepted(at=T(70)),
    OriginateFailed(at=T(70), cause="USER_BUSY"),
    SocketDisconnected(at=T(70), notice=False),
    MaxDurationElapsed(at=T(70)),
    RingTimeout(at=T(70)),
    SilenceTimeout(at=T(70)),
    CommandTimeout(at=T(70), what="hangup"),
    CommandFailed(at=T(70), what="transfer"),
    PipelineReady(at=T(70)),
    PipelineError(at=T(70), kind="pipeline-error-openai-voice-failed"),
    AssistantEndedCall(at=T(70)),
    TransferCompleted(at=T(70)),
    CallSetupFailed(at=T(70), reason=er.ASSISTANT_NOT_FOUND),
    RuntimeShutdown(at=T(70)),
    RuntimeRestarted(at=T(70)),
    ReconcileNotFound(at=T(70)),
    ReconcileFound(at=T(70)),
    WebClientConnected(at=T(70)),
    CallCreated(at=T(70)),
    ChannelProgressMedia(at=T(70)),
    ChannelExecuteComplete(at=T(70), application="playback"),
    ForkClosed(at=T(70)),
]


def test_late_table_covers_every_input_type():
    tested = {type(e) for e in LATE} | {ControlRequest, ChannelHangupComplete}
    assert tested == set(INPUT_TYPES)
    assert len({cls.KIND for cls in INPUT_TYPES}) == len(INPUT_TYPES)


@pytest.mark.parametrize("event", LATE, ids=lambda e: type(e).__name__)
def test_late_events_after_end_are_only_recorded(event):
    state, _ = run("inbound", [*IN_LIVE, BYE])
    new, out = reduce(state, event)
    assert new == state
    assert len(out) == 1 and isinstance(out[0], RecordEvent)
    assert out[0].data["ignored"] == "call ended"
    assert out[0].kind == event.KIND or out[0].kind.startswith("timer.")


def test_late_hangup_complete_only_adds_billsec_once():
    state, _ = run("inbound", [*IN_LIVE, BYE])
    state, out = reduce(
        state, ChannelHangupComplete(at=T(61.2), cause="NORMAL_CLEARING", billsec=60)
    )
    assert state.billsec == 60 and state.ended_reason == er.CUSTOMER_ENDED_CALL
    assert effects(out) == [] and PersistStatus(ENDED, {"billsec": 60}) in out
    _, out = reduce(state, ChannelHangupComplete(at=T(61.3), cause="NORMAL_CLEARING", billsec=60))
    assert not any(isinstance(a, PersistStatus) for a in out)


PERMUTED = [
    ChannelCreate(at=T(0.1), event_id="e1"),
    ChannelProgress(at=T(0.2), event_id="e2"),
    ChannelAnswer(at=T(1), event_id="e3"),
    ForkConnected(at=T(1.1), event_id="e4"),
    ChannelHangup(at=T(61), cause="NORMAL_CLEARING", disposition="recv_bye", event_id="e5"),
    ChannelHangupComplete(at=T(61.1), cause="NORMAL_CLEARING", billsec=60, event_id="e6"),
]


@pytest.mark.parametrize("direction", ["inbound", "outbound"])
def test_any_order_and_repeats_keep_invariants(direction):
    """Every order of a call's events, each delivered twice: statuses never go back, the first
    end is final, and the end always comes from the first hangup-class event seen."""
    for order in itertools.permutations(PERMUTED):
        state = reduce(new_call("c", direction, at=T0), CallCreated(at=T0))[0]
        seen_status = [state.status]
        ended_with = None
        for event in order:
            for _ in range(2):
                state, _out = reduce(state, event)
                seen_status.append(state.status)
                if state.status == ENDED and ended_with is None:
                    ended_with = (state.ended_reason, state.ended_at)
        idx = [STATUS_ORDER.index(s) for s in seen_status]
        assert idx == sorted(idx), [type(e).__name__ for e in order]
        assert state.status == ENDED
        assert (state.ended_reason, state.ended_at) == ended_with
        answered_first = order.index(PERMUTED[2]) < min(
            order.index(PERMUTED[4]), order.index(PERMUTED[5])
        )
        expected = (
            er.CUSTOMER_ENDED_CALL
            if answered_first
            else er.hangup_reason(
                "NORMAL_CLEARING", direction=direction, answered=False, disposition=None
            )
            if order.index(PERMUTED[5]) < order.index(PERMUTED[4])
            else er.hangup_reason(
                "NORMAL_CLEARING", direction=direction, answered=False, disposition="recv_bye"
            )
        )
        assert state.ended_reason == expected


# -- timers --------------------------------------------------------------------------------------


def _timer_actions(outs):
    return [a for out in outs for a in out if isinstance(a, (ScheduleTimer, CancelTimer))]


@pytest.mark.parametrize(
    ("direction", "inputs", "config", "expected"),
    [
        (
            "inbound",
            [*IN_LIVE, BYE],
            CallConfig(max_duration_seconds=300, command_timeout_seconds=5),
            [
                ScheduleTimer("answer", 5.0),
                CancelTimer("answer"),
                ScheduleTimer("max-duration", 300.0),
                ScheduleTimer("fork", 5.0),
                CancelTimer("fork"),
                CancelTimer("max-duration"),
            ],
        ),
        (
            "inbound",
            [*IN_LIVE, ForkConnected(at=T(1.5)), BYE],
            CallConfig(max_duration_seconds=None),
            [
                ScheduleTimer("answer", 10.0),
                CancelTimer("answer"),
                ScheduleTimer("fork", 10.0),
                CancelTimer("fork"),
            ],
        ),
        (
            "outbound",
            [*OUT_LIVE],
            CallConfig(ring_timeout_seconds=45, start_fork=False),
            [ScheduleTimer("ring", 45.0), CancelTimer("ring"), ScheduleTimer("max-duration", 600.0)],
        ),
        (
            "outbound",
            [*OUT, RingTimeout(at=T(45)), CommandTimeout(at=T(55), what="hangup")],
            CallConfig(ring_timeout_seconds=45, command_timeout_seconds=10),
            [ScheduleTimer("ring", 45.0), ScheduleTimer("hangup", 10.0)],
        ),
        (
            "inbound",
            [*IN_LIVE, ctl(XFER_SIP), TransferCompleted(at=T(9))],
            CallConfig(max_duration_seconds=None, start_fork=False, transfer_timeout_seconds=20),
            [
                ScheduleTimer("answer", 10.0),
                CancelTimer("answer"),
                ScheduleTimer("transfer", 20.0),
                CancelTimer("transfer"),
            ],
        ),
        ("web", [*WEB_LIVE], CallConfig(ring_timeout_seconds=None), [ScheduleTimer("max-duration", 600.0)]),
    ],
    ids=["inbound", "fork-connected", "outbound", "fired-timers-not-cancelled", "transfer", "web"],
)  # fmt: skip
def test_timers(direction, inputs, config, expected):
    state, outs = run(direction, inputs, config)
    assert _timer_actions(outs) == expected
    live = set()
    for action in _timer_actions(outs):
        if isinstance(action, ScheduleTimer):
            live.add(action.name)
        else:
            live.discard(action.name)
    fired = {"ring" for e in inputs if isinstance(e, RingTimeout)} | {
        e.what for e in inputs if isinstance(e, CommandTimeout)
    }
    assert state.timers == live - fired


def test_new_call_validates_direction():
    with pytest.raises(ValueError):
        new_call("c", "sideways")
    assert new_call("c", "web").type == "webCall"
    assert new_call("c", "inbound").type == "inboundPhoneCall"
    assert new_call("c", "outbound").type == "outboundPhoneCall"


def test_unknown_input_type_raises():
    with pytest.raises(TypeError):
        reduce(new_call("c", "inbound"), object())  # type: ignore[arg-type]


def test_inputs_and_state_are_frozen():
    state = new_call("c", "inbound")
    with pytest.raises(AttributeError):
        state.status = ENDED
    with pytest.raises(AttributeError):
        BYE.cause = "USER_BUSY"


def test_reducer_modules_stay_pure():
    code = (
        "import sys, esl_controller.calls.state, esl_controller.calls.control; "
        "print(sorted(m for m in ('gevent', 'flask', 'peewee', 'greenswitch') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
