"""Hangup causes and SIP codes -> Vapi endedReason, as tables."""

import re

import pytest

from esl_controller.calls import ended_reason as er


@pytest.mark.parametrize(
    ("cause", "sip", "expected"),
    [
        ("NORMAL_CLEARING", None, "NORMAL_CLEARING"),
        ("user_busy", None, "USER_BUSY"),
        (" NO_ANSWER ", None, "NO_ANSWER"),
        ("17", None, "USER_BUSY"),
        (17, None, "USER_BUSY"),
        (487, None, "ORIGINATOR_CANCEL"),
        ("802", None, "ALLOTTED_TIMEOUT"),
        (999, None, None),
        ("NONE", None, None),
        (None, None, None),
        ("", None, None),
        (None, 486, "USER_BUSY"),
        (None, 603, "CALL_REJECTED"),
        (None, 408, "RECOVERY_ON_TIMER_EXPIRE"),
        (None, 480, "NO_USER_RESPONSE"),
        (None, 599, "NORMAL_UNSPECIFIED"),
        ("NO_ANSWER", 486, "NO_ANSWER"),  # a named cause wins over the SIP status
        ("SOME_NEW_CAUSE", None, "SOME_NEW_CAUSE"),
    ],
)
def test_normalize_cause(cause, sip, expected):
    assert er.normalize_cause(cause, sip) == expected


@pytest.mark.parametrize(
    ("cause", "sip", "expected"),
    [
        ("USER_BUSY", None, er.CUSTOMER_BUSY),
        ("USER_BUSY", 486, er.CUSTOMER_BUSY),
        (None, 600, er.CUSTOMER_BUSY),
        ("CALL_REJECTED", 603, er.CUSTOMER_BUSY),
        ("UNWANTED", 607, er.CUSTOMER_BUSY),
        ("NO_ANSWER", None, er.CUSTOMER_DID_NOT_ANSWER),
        ("NO_USER_RESPONSE", None, er.CUSTOMER_DID_NOT_ANSWER),
        ("SUBSCRIBER_ABSENT", None, er.CUSTOMER_DID_NOT_ANSWER),
        ("PROGRESS_TIMEOUT", None, er.CUSTOMER_DID_NOT_ANSWER),
        ("ALLOTTED_TIMEOUT", None, er.CUSTOMER_DID_NOT_ANSWER),
        ("NO_USER_RESPONSE", 480, er.SIP_OUTBOUND_480),
        ("CALL_REJECTED", 403, er.SIP_OUTBOUND_403),
        ("CALL_REJECTED", 407, er.SIP_OUTBOUND_407),
        ("CALL_REJECTED", 401, er.SIP_OUTBOUND_407),
        ("RECOVERY_ON_TIMER_EXPIRE", 408, er.SIP_OUTBOUND_408),
        ("NORMAL_TEMPORARY_FAILURE", 503, er.SIP_OUTBOUND_503),
        ("CALL_REJECTED", None, er.SIP_OUTBOUND_FAILED_TO_CONNECT),
        ("UNALLOCATED_NUMBER", 404, er.SIP_OUTBOUND_FAILED_TO_CONNECT),
        ("INVALID_GATEWAY", None, er.SIP_OUTBOUND_FAILED_TO_CONNECT),
        ("GATEWAY_DOWN", None, er.SIP_OUTBOUND_FAILED_TO_CONNECT),
        ("NORMAL_TEMPORARY_FAILURE", 500, er.SIP_OUTBOUND_FAILED_TO_CONNECT),
        ("INCOMPATIBLE_DESTINATION", 488, er.SIP_OUTBOUND_FAILED_TO_CONNECT),
        ("SYSTEM_SHUTDOWN", None, er.WORKER_SHUTDOWN),
        ("MANAGER_REQUEST", None, er.MANUALLY_CANCELED),
        ("ORIGINATOR_CANCEL", None, er.MANUALLY_CANCELED),
        (None, None, er.SIP_OUTBOUND_FAILED_TO_CONNECT),
        ("17", None, er.CUSTOMER_BUSY),
    ],
)
def test_originate_failure_reason(cause, sip, expected):
    assert er.originate_failure_reason(cause, sip) == expected


@pytest.mark.parametrize(
    ("cause", "direction", "answered", "sip", "disposition", "forwarding", "expected"),
    [
        # answered calls
        ("NORMAL_CLEARING", "inbound", True, None, "recv_bye", False, er.CUSTOMER_ENDED_CALL),
        ("NORMAL_CLEARING", "outbound", True, None, "recv_bye", False, er.CUSTOMER_ENDED_CALL),
        ("NORMAL_CLEARING", "inbound", True, None, None, False, er.CUSTOMER_ENDED_CALL),
        (None, "inbound", True, None, None, False, er.CUSTOMER_ENDED_CALL),
        ("NORMAL_CLEARING", "inbound", True, None, "send_bye", False, er.SIP_COMPLETED_CALL),
        ("BLIND_TRANSFER", "inbound", True, None, None, False, er.ASSISTANT_FORWARDED_CALL),
        ("ATTENDED_TRANSFER", "outbound", True, None, None, False, er.ASSISTANT_FORWARDED_CALL),
        ("ALLOTTED_TIMEOUT", "inbound", True, None, None, False, er.EXCEEDED_MAX_DURATION),
        ("SYSTEM_SHUTDOWN", "inbound", True, None, "send_bye", False, er.WORKER_SHUTDOWN),
        ("MANAGER_REQUEST", "inbound", True, None, "send_bye", False, er.MANUALLY_CANCELED),
        ("MEDIA_TIMEOUT", "inbound", True, None, "send_bye", False, er.PROVIDER_CLOSED_CONNECTION),
        ("NORMAL_TEMPORARY_FAILURE", "inbound", True, None, None, False, er.SIP_COMPLETED_CALL),
        ("804", "inbound", True, None, None, False, er.PROVIDER_CLOSED_CONNECTION),
        # a transfer we started
        ("BLIND_TRANSFER", "inbound", True, None, "send_bye", True, er.ASSISTANT_FORWARDED_CALL),
        ("NORMAL_CLEARING", "inbound", True, None, None, True, er.ASSISTANT_FORWARDED_CALL),
        (
            "NORMAL_CLEARING",
            "inbound",
            True,
            None,
            "recv_bye",
            True,
            er.CUSTOMER_ENDED_CALL_DURING_TRANSFER,
        ),
        ("CALL_REJECTED", "inbound", True, 403, None, True, er.TRANSFER_FAILED),
        # inbound before answer
        (
            "ORIGINATOR_CANCEL",
            "inbound",
            False,
            None,
            "recv_cancel",
            False,
            er.SIP_INBOUND_HUNGUP_BEFORE_CONNECT,
        ),
        (
            "NORMAL_CLEARING",
            "inbound",
            False,
            None,
            None,
            False,
            er.SIP_INBOUND_HUNGUP_BEFORE_CONNECT,
        ),
        (None, "inbound", False, None, None, False, er.SIP_INBOUND_HUNGUP_BEFORE_CONNECT),
        (
            "INCOMPATIBLE_DESTINATION",
            "inbound",
            False,
            None,
            "send_refuse",
            False,
            er.SIP_INBOUND_FAILED_TO_CONNECT,
        ),
        (
            "RECOVERY_ON_TIMER_EXPIRE",
            "inbound",
            False,
            None,
            None,
            False,
            er.SIP_INBOUND_FAILED_TO_CONNECT,
        ),
        # outbound before answer: same as an originate failure
        ("USER_BUSY", "outbound", False, 486, "recv_refuse", False, er.CUSTOMER_BUSY),
        ("NO_ANSWER", "outbound", False, None, None, False, er.CUSTOMER_DID_NOT_ANSWER),
        ("CALL_REJECTED", "outbound", False, 403, None, False, er.SIP_OUTBOUND_403),
        # web calls: the client left
        ("NORMAL_CLEARING", "web", True, None, None, False, er.CUSTOMER_ENDED_CALL),
        (None, "web", False, None, None, False, er.CUSTOMER_ENDED_CALL),
    ],
)
def test_hangup_reason(cause, direction, answered, sip, disposition, forwarding, expected):
    got = er.hangup_reason(
        cause,
        direction=direction,
        answered=answered,
        sip_code=sip,
        disposition=disposition,
        forwarding=forwarding,
    )
    assert got == expected


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("pipeline-error-openai-llm-failed", "pipeline-error-openai-llm-failed"),
        ("pipeline-error-openai-429-exceeded-quota", "pipeline-error-openai-429-exceeded-quota"),
        (
            "call.in-progress.error-providerfault-openai-llm-failed",
            "call.in-progress.error-providerfault-openai-llm-failed",
        ),
        ("customer-ended-call", er.PIPELINE_ERROR_UNKNOWN),
        ("pipeline-error-has space", er.PIPELINE_ERROR_UNKNOWN),
        ("pipeline-error-" + "x" * 113, "pipeline-error-" + "x" * 113),
        ("pipeline-error-" + "x" * 114, er.PIPELINE_ERROR_UNKNOWN),
        ("Pipeline-Error-OPENAI", er.PIPELINE_ERROR_UNKNOWN),
        ("", er.PIPELINE_ERROR_UNKNOWN),
    ],
)
def test_pipeline_reason(kind, expected):
    assert er.pipeline_reason(kind) == expected


_VAPI_SHAPE = re.compile(r"^[a-z][a-z0-9.\-]+$")


def test_every_constant_is_listed_and_explained():
    constants = {
        name: value
        for name, value in vars(er).items()
        if name.isupper() and not name.startswith("_") and isinstance(value, str)
    }
    assert len(constants) >= 30
    for name, value in constants.items():
        assert value in er.ENDED_REASONS, name
        assert _VAPI_SHAPE.match(value), value
        assert len(value) <= 128, value  # Call.ended_reason column
    for reason, why in er.ENDED_REASONS.items():
        assert why.strip().endswith("."), reason
        assert er.is_known_reason(reason)


def test_mappers_only_emit_listed_reasons():
    causes = [*er.CAUSE_BY_CODE.values(), None, "SOMETHING_ELSE"]
    sips = [None, *er.CAUSE_BY_SIP_STATUS]
    seen = set()
    for cause in causes:
        for sip in sips:
            seen.add(er.originate_failure_reason(cause, sip))
            for direction in ("inbound", "outbound", "web"):
                for answered in (True, False):
                    for disp in (None, "recv_bye", "send_bye", "recv_cancel"):
                        for fwd in (True, False):
                            seen.add(
                                er.hangup_reason(
                                    cause,
                                    direction=direction,
                                    answered=answered,
                                    sip_code=sip,
                                    disposition=disp,
                                    forwarding=fwd,
                                )
                            )
    assert seen <= set(er.ENDED_REASONS)
    assert {er.CUSTOMER_BUSY, er.CUSTOMER_DID_NOT_ANSWER, er.CUSTOMER_ENDED_CALL} <= seen


def test_q850_numbers_round_trip_through_names():
    for code, name in er.CAUSE_BY_CODE.items():
        if name != "NONE":
            assert er.normalize_cause(str(code)) == name
