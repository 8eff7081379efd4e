"""Why a call ended: FreeSWITCH hangup causes and SIP codes -> Vapi ``endedReason`` strings.

Pure: data in, data out. The reducer in :mod:`esl_controller.calls.state` decides *which* cause
ended a call (a hangup we asked for beats the ``NORMAL_CLEARING`` that follows it); this module only
names it.

FreeSWITCH reports a cause by name in ``Hangup-Cause`` / ``variable_hangup_cause`` (and in
``-ERR <CAUSE>`` replies to ``originate``), by Q.850 number in ``variable_hangup_cause_q850``, and the
SIP side of it in ``variable_sip_hangup_disposition`` (``recv_bye``, ``send_bye``, ``recv_cancel``,
``send_refuse``...) and, for failed outgoing INVITEs, ``variable_sip_term_status``. Every function
here accepts a cause name, a cause number or nothing, plus an optional SIP status.

``ENDED_REASONS`` maps every endedReason this runtime emits to one line saying when we emit it.
Setup failures (assistant lookup, assistant-request) are passed through as given by the creation
code; they are listed here so that the list is complete.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# -- normal ends -----------------------------------------------------------------------------------
CUSTOMER_ENDED_CALL = "customer-ended-call"
CUSTOMER_ENDED_CALL_DURING_TRANSFER = "customer-ended-call-during-transfer"
CUSTOMER_BUSY = "customer-busy"
CUSTOMER_DID_NOT_ANSWER = "customer-did-not-answer"
ASSISTANT_ENDED_CALL = "assistant-ended-call"
ASSISTANT_SAID_END_CALL_PHRASE = "assistant-said-end-call-phrase"
ASSISTANT_ENDED_CALL_AFTER_MESSAGE_SPOKEN = "assistant-ended-call-after-message-spoken"
ASSISTANT_ENDED_CALL_WITH_HANGUP_TASK = "assistant-ended-call-with-hangup-task"
ASSISTANT_FORWARDED_CALL = "assistant-forwarded-call"
EXCEEDED_MAX_DURATION = "exceeded-max-duration"
SILENCE_TIMED_OUT = "silence-timed-out"
MANUALLY_CANCELED = "manually-canceled"
# -- runtime ---------------------------------------------------------------------------------------
WORKER_SHUTDOWN = "worker-shutdown"
WORKER_DIED = "call.in-progress.error-vapifault-worker-died"
TRANSPORT_NEVER_CONNECTED = "call.in-progress.error-vapifault-transport-never-connected"
PROVIDER_CLOSED_CONNECTION = "phone-call-provider-closed-websocket"
TRANSFER_FAILED = "call.in-progress.error-transfer-failed"
# -- SIP -------------------------------------------------------------------------------------------
SIP_COMPLETED_CALL = "call.in-progress.sip-completed-call"
SIP_INBOUND_HUNGUP_BEFORE_CONNECT = "call.ringing.sip-inbound-caller-hungup-before-call-connect"
SIP_INBOUND_FAILED_TO_CONNECT = "call.ringing.error-sip-inbound-call-failed-to-connect"
SIP_OUTBOUND_FAILED_TO_CONNECT = "call.in-progress.error-sip-outbound-call-failed-to-connect"
SIP_OUTBOUND_403 = "call.in-progress.error-providerfault-outbound-sip-403-forbidden"
SIP_OUTBOUND_407 = (
    "call.in-progress.error-providerfault-outbound-sip-407-proxy-authentication-required"
)
SIP_OUTBOUND_408 = "call.in-progress.error-providerfault-outbound-sip-408-request-timeout"
SIP_OUTBOUND_480 = "call.in-progress.error-providerfault-outbound-sip-480-temporarily-unavailable"
SIP_OUTBOUND_503 = "call.in-progress.error-providerfault-outbound-sip-503-service-unavailable"
# -- setup (passed through from call creation) -----------------------------------------------------
ASSISTANT_NOT_FOUND = "assistant-not-found"
ASSISTANT_NOT_VALID = "assistant-not-valid"
ASSISTANT_REQUEST_FAILED = "assistant-request-failed"
ASSISTANT_REQUEST_RETURNED_ERROR = "assistant-request-returned-error"
ASSISTANT_REQUEST_RETURNED_INVALID_ASSISTANT = "assistant-request-returned-invalid-assistant"
ASSISTANT_REQUEST_RETURNED_NO_ASSISTANT = "assistant-request-returned-no-assistant"
NEITHER_ASSISTANT_NOR_SERVER_SET = "call-start-error-neither-assistant-nor-server-set"
GET_PHONE_NUMBER_FAILED = "call.start.error-get-phone-number"
# -- pipeline (prefixes; the provider and failure are filled in by the pipeline) --------------------
PIPELINE_ERROR_PREFIXES = ("pipeline-error-", "call.in-progress.error-")
PIPELINE_ERROR_UNKNOWN = "pipeline-error-unknown"

ENDED_REASONS: Mapping[str, str] = {
    CUSTOMER_ENDED_CALL: "The customer hung up (BYE/CANCEL from the caller side, or the web client left).",
    CUSTOMER_ENDED_CALL_DURING_TRANSFER: "The customer hung up while a transfer we started was in flight.",
    CUSTOMER_BUSY: "Outbound: the callee was busy or declined (USER_BUSY, SIP 486/600/603).",
    CUSTOMER_DID_NOT_ANSWER: "Outbound: nobody answered before the ring timeout (NO_ANSWER and kin); web: the client never joined.",
    ASSISTANT_ENDED_CALL: "The assistant ended the call with its endCall tool.",
    ASSISTANT_SAID_END_CALL_PHRASE: "The assistant said one of the assistant's endCallPhrases.",
    ASSISTANT_ENDED_CALL_AFTER_MESSAGE_SPOKEN: "The call ended after a message spoken for that purpose (endCallMessage, say with endCallAfterSpoken).",
    ASSISTANT_ENDED_CALL_WITH_HANGUP_TASK: "The assistant ended the call through a hangup task.",
    ASSISTANT_FORWARDED_CALL: "The call was transferred away (uuid_transfer, or a SIP REFER that ended with BLIND_TRANSFER).",
    EXCEEDED_MAX_DURATION: "maxDurationSeconds elapsed (our timer, or FreeSWITCH's ALLOTTED_TIMEOUT).",
    SILENCE_TIMED_OUT: "Nobody spoke for silenceTimeoutSeconds.",
    MANUALLY_CANCELED: "Ended through the API, CLI or a supervisor (end-call control, DELETE), or a MANAGER_REQUEST kill.",
    WORKER_SHUTDOWN: "The runtime shut down (or FreeSWITCH reported SYSTEM_SHUTDOWN) while the call was live.",
    WORKER_DIED: "The runtime restarted and could not re-attach the call, or its channel was gone when reconciled.",
    TRANSPORT_NEVER_CONNECTED: "The media transport (mod_audio_fork WebSocket) never connected after answer.",
    PROVIDER_CLOSED_CONNECTION: "The FreeSWITCH connection dropped without a hangup, or RTP stopped (MEDIA_TIMEOUT).",
    TRANSFER_FAILED: "A transfer was refused or never confirmed; the call was ended.",
    SIP_COMPLETED_CALL: "An answered call ended by the SIP side for a cause that is not the customer's hangup.",
    SIP_INBOUND_HUNGUP_BEFORE_CONNECT: "Inbound: the caller hung up before the call was answered.",
    SIP_INBOUND_FAILED_TO_CONNECT: "Inbound: the call failed before it was answered (not a caller hangup).",
    SIP_OUTBOUND_FAILED_TO_CONNECT: "Outbound: the originate failed (bad number, gateway down, rejected...).",
    SIP_OUTBOUND_403: "Outbound: the trunk answered the INVITE with 403 Forbidden.",
    SIP_OUTBOUND_407: "Outbound: the trunk wanted authentication we could not give (401/407).",
    SIP_OUTBOUND_408: "Outbound: the INVITE timed out (SIP 408).",
    SIP_OUTBOUND_480: "Outbound: the destination was temporarily unavailable (SIP 480).",
    SIP_OUTBOUND_503: "Outbound: the trunk answered 503 Service Unavailable.",
    ASSISTANT_NOT_FOUND: "Setup: the phone number's or request's assistant does not exist.",
    ASSISTANT_NOT_VALID: "Setup: the assistant configuration did not validate.",
    ASSISTANT_REQUEST_FAILED: "Setup: the assistant-request to the server URL failed or timed out.",
    ASSISTANT_REQUEST_RETURNED_ERROR: "Setup: the server URL answered the assistant-request with an error.",
    ASSISTANT_REQUEST_RETURNED_INVALID_ASSISTANT: "Setup: the server URL returned an invalid assistant.",
    ASSISTANT_REQUEST_RETURNED_NO_ASSISTANT: "Setup: the server URL returned no assistant.",
    NEITHER_ASSISTANT_NOR_SERVER_SET: "Setup: no assistant and no server URL to ask for one.",
    GET_PHONE_NUMBER_FAILED: "Setup: the dialed number or SIP URI matches no phone number.",
    PIPELINE_ERROR_UNKNOWN: "A pipeline failure that did not name itself in the Vapi form.",
}
"""Every endedReason string we emit (``pipeline-error-<provider>-...`` ones aside), with when."""

#: Q.850 / FreeSWITCH cause numbers -> names (``variable_hangup_cause_q850`` and ``uuid_kill <n>``).
CAUSE_BY_CODE: Mapping[int, str] = {
    0: "NONE",
    1: "UNALLOCATED_NUMBER",
    3: "NO_ROUTE_DESTINATION",
    16: "NORMAL_CLEARING",
    17: "USER_BUSY",
    18: "NO_USER_RESPONSE",
    19: "NO_ANSWER",
    20: "SUBSCRIBER_ABSENT",
    21: "CALL_REJECTED",
    22: "NUMBER_CHANGED",
    25: "EXCHANGE_ROUTING_ERROR",
    27: "DESTINATION_OUT_OF_ORDER",
    28: "INVALID_NUMBER_FORMAT",
    31: "NORMAL_UNSPECIFIED",
    34: "NORMAL_CIRCUIT_CONGESTION",
    38: "NETWORK_OUT_OF_ORDER",
    41: "NORMAL_TEMPORARY_FAILURE",
    42: "SWITCH_CONGESTION",
    63: "SERVICE_UNAVAILABLE",
    79: "SERVICE_NOT_IMPLEMENTED",
    88: "INCOMPATIBLE_DESTINATION",
    102: "RECOVERY_ON_TIMER_EXPIRE",
    127: "INTERWORKING",
    487: "ORIGINATOR_CANCEL",
    701: "SYSTEM_SHUTDOWN",
    702: "LOSE_RACE",
    703: "MANAGER_REQUEST",
    800: "BLIND_TRANSFER",
    801: "ATTENDED_TRANSFER",
    802: "ALLOTTED_TIMEOUT",
    804: "MEDIA_TIMEOUT",
    806: "USER_NOT_REGISTERED",
    807: "PROGRESS_TIMEOUT",
    808: "INVALID_GATEWAY",
    809: "GATEWAY_DOWN",
    819: "UNWANTED",
}

#: SIP final response to an outgoing INVITE -> the cause FreeSWITCH sets (freeswitch-protocols 5.4).
CAUSE_BY_SIP_STATUS: Mapping[int, str] = {
    **{code: "CALL_REJECTED" for code in (401, 402, 403, 407, 603, 608)},
    **{code: "NO_ROUTE_DESTINATION" for code in (485, 604)},
    **{code: "USER_BUSY" for code in (486, 600)},
    **{code: "NORMAL_TEMPORARY_FAILURE" for code in (400, 481, 500, 503)},
    **{code: "SERVICE_NOT_IMPLEMENTED" for code in (406, 415, 501)},
    **{code: "INCOMPATIBLE_DESTINATION" for code in (488, 606)},
    **{code: "RECOVERY_ON_TIMER_EXPIRE" for code in (408, 504)},
    **{code: "INTERWORKING" for code in (413, 414, 416, 420, 421, 423, 505, 513)},
    **{code: "EXCHANGE_ROUTING_ERROR" for code in (482, 483)},
    200: "NORMAL_CLEARING",
    404: "UNALLOCATED_NUMBER",
    405: "SERVICE_UNAVAILABLE",
    410: "NUMBER_CHANGED",
    480: "NO_USER_RESPONSE",
    484: "INVALID_NUMBER_FORMAT",
    487: "ORIGINATOR_CANCEL",
    502: "NETWORK_OUT_OF_ORDER",
    607: "UNWANTED",
}

_SIP_SPECIFIC: Mapping[int, str] = {
    401: SIP_OUTBOUND_407,
    403: SIP_OUTBOUND_403,
    407: SIP_OUTBOUND_407,
    408: SIP_OUTBOUND_408,
    480: SIP_OUTBOUND_480,
    503: SIP_OUTBOUND_503,
}
_BUSY = frozenset({"USER_BUSY", "UNWANTED"})
_NO_ANSWER = frozenset(
    {"NO_ANSWER", "NO_USER_RESPONSE", "SUBSCRIBER_ABSENT", "PROGRESS_TIMEOUT", "ALLOTTED_TIMEOUT"}
)
_CALLER_GONE = frozenset({"NORMAL_CLEARING", "ORIGINATOR_CANCEL", "NORMAL_UNSPECIFIED"})
_TRANSFERRED = frozenset({"BLIND_TRANSFER", "ATTENDED_TRANSFER"})
_REMOTE_DISPOSITIONS = frozenset({"recv_bye", "recv_cancel", "recv_refuse"})
_PIPELINE_RE = re.compile(r"^[a-z0-9][a-z0-9.\-]{0,127}$")  # fits Call.ended_reason (128)


def normalize_cause(cause: str | int | None, sip_code: int | None = None) -> str | None:
    """A FreeSWITCH cause name from a name, a Q.850 number, or (failing both) a SIP status.

    ``"user_busy"`` -> ``"USER_BUSY"``, ``"17"``/``17`` -> ``"USER_BUSY"``, ``None`` with 486 ->
    ``"USER_BUSY"``. Unknown numbers give ``None``; unknown names are returned upper-cased.
    """
    if isinstance(cause, int) or (isinstance(cause, str) and cause.strip().isdigit()):
        return CAUSE_BY_CODE.get(int(cause))
    if isinstance(cause, str) and cause.strip():
        name = cause.strip().upper()
        return None if name == "NONE" else name
    if sip_code is not None:
        return CAUSE_BY_SIP_STATUS.get(sip_code, "NORMAL_UNSPECIFIED")
    return None


def originate_failure_reason(cause: str | int | None, sip_code: int | None = None) -> str:
    """endedReason for an outbound leg that never answered (``-ERR USER_BUSY``, hangup before answer)."""
    name = normalize_cause(cause, sip_code)
    if sip_code in (486, 600, 603) or name in _BUSY:
        return CUSTOMER_BUSY
    if sip_code is not None and sip_code in _SIP_SPECIFIC:
        return _SIP_SPECIFIC[sip_code]
    if name in _NO_ANSWER:
        return CUSTOMER_DID_NOT_ANSWER
    if name == "SYSTEM_SHUTDOWN":
        return WORKER_SHUTDOWN
    if name in ("MANAGER_REQUEST", "ORIGINATOR_CANCEL"):
        return MANUALLY_CANCELED
    return SIP_OUTBOUND_FAILED_TO_CONNECT


def hangup_reason(
    cause: str | int | None,
    *,
    direction: str,
    answered: bool,
    sip_code: int | None = None,
    disposition: str | None = None,
    forwarding: bool = False,
) -> str:
    """endedReason for a channel hangup that nobody on our side asked for.

    ``direction`` is ``inbound``, ``outbound`` or ``web``; ``answered`` whether the call reached
    in-progress; ``disposition`` is ``variable_sip_hangup_disposition`` when known; ``forwarding``
    whether a transfer we started was in flight.
    """
    name = normalize_cause(cause, sip_code)
    remote = (disposition or "").lower() in _REMOTE_DISPOSITIONS
    if direction == "web":
        return CUSTOMER_ENDED_CALL
    if forwarding:
        if remote:
            return CUSTOMER_ENDED_CALL_DURING_TRANSFER
        if name in _TRANSFERRED or name in (None, "NORMAL_CLEARING"):
            return ASSISTANT_FORWARDED_CALL
        return TRANSFER_FAILED
    if not answered:
        if direction == "outbound":
            return originate_failure_reason(name, sip_code)
        if remote or name in _CALLER_GONE or name is None:
            return SIP_INBOUND_HUNGUP_BEFORE_CONNECT
        return SIP_INBOUND_FAILED_TO_CONNECT
    if name in _TRANSFERRED:
        return ASSISTANT_FORWARDED_CALL
    if name == "ALLOTTED_TIMEOUT":
        return EXCEEDED_MAX_DURATION
    if name == "SYSTEM_SHUTDOWN":
        return WORKER_SHUTDOWN
    if name == "MANAGER_REQUEST":
        return MANUALLY_CANCELED
    if name == "MEDIA_TIMEOUT":
        return PROVIDER_CLOSED_CONNECTION
    if remote:
        return CUSTOMER_ENDED_CALL
    if (disposition or "").lower().startswith("send_"):
        # We (FreeSWITCH) sent the BYE but nobody here asked for it.
        return SIP_COMPLETED_CALL
    if name in _CALLER_GONE or name is None:
        return CUSTOMER_ENDED_CALL
    return SIP_COMPLETED_CALL


def pipeline_reason(kind: str) -> str:
    """Accept a ``pipeline-error-...`` / ``call.in-progress.error-...`` reason, else a generic one."""
    text = (kind or "").strip()
    if _PIPELINE_RE.match(text) and text.startswith(PIPELINE_ERROR_PREFIXES):
        return text
    return PIPELINE_ERROR_UNKNOWN


def is_known_reason(reason: str) -> bool:
    """True for a reason in ``ENDED_REASONS`` or a well-formed pipeline error."""
    return reason in ENDED_REASONS or pipeline_reason(reason) == reason


__all__ = [name for name in dir() if name.isupper() and not name.startswith("_")] + [
    "hangup_reason",
    "is_known_reason",
    "normalize_cause",
    "originate_failure_reason",
    "pipeline_reason",
]
