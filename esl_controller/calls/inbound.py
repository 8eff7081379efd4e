"""Inbound call routing: which phone number was dialed, and which assistant answers it.

* :func:`dialed_candidates` lists what the channel says was dialed, most specific first:
  ``Caller-Destination-Number``, ``variable_sip_req_user``, ``variable_sip_to_user``, then the SIP
  URI (``variable_sip_req_uri``, as ``sip:user@host``).
* :func:`find_phone_number` looks them up in the PhoneNumber table (E.164 with or without ``+``,
  exact SIP URI, or a SIP URI's user part). The controller never imports ``api/``: this is its own
  lookup over the model.
* :func:`resolve_assistant` gives the phone number's assistant or, when it has none, asks the
  phone number's (or the configured) server with a synchronous ``assistant-request`` (bounded by a
  timeout). Failures map to Vapi's endedReasons: ``assistant-request-failed`` (no answer, timeout,
  non-2xx), ``assistant-request-returned-error`` (``{"error": ...}``),
  ``assistant-request-returned-invalid-assistant`` (an assistant that is not an object, or an
  unknown assistantId), ``assistant-request-returned-no-assistant`` (2xx without one), and
  ``call-start-error-neither-assistant-nor-server-set``.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import requests

from esl_controller.calls import ended_reason as er
from esl_controller.db.models import Assistant, PhoneNumber
from esl_controller.webhooks.messages import MessageContext, assistant_request

log = logging.getLogger("esl_controller.calls.inbound")

_DIGITS = re.compile(r"^\+?[0-9]{3,20}$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def dialed_candidates(get: Callable[[str], str | None]) -> list[str]:
    """What was dialed, from channel headers (``get(header)``), most specific first, no duplicates."""
    out: list[str] = []
    for header in (
        "Caller-Destination-Number",
        "Channel-Destination-Number",
        "variable_sip_req_user",
        "variable_sip_to_user",
        "variable_sip_req_uri",
        "variable_sip_to_uri",
    ):
        value = (get(header) or "").strip()
        if not value or len(value) > 255:
            continue
        if header.endswith("_uri") and not value.lower().startswith(("sip:", "sips:")):
            value = "sip:" + value
        if value not in out:
            out.append(value)
    return out


def _number_forms(text: str) -> list[str]:
    digits = text.lstrip("+")
    return [f"+{digits}", digits]


def find_phone_number(candidates: list[str]) -> PhoneNumber | None:
    """The PhoneNumber row for the first candidate that matches one (needs a DB connection)."""
    for text in candidates:
        if text.lower().startswith(("sip:", "sips:")):
            row = PhoneNumber.get_or_none(PhoneNumber.sip_uri == text)
            if row is not None:
                return row
            rest = text.split(":", 1)[1]
            user = rest.split("@", 1)[0].split(";", 1)[0] if "@" in rest else ""
            if user and _DIGITS.match(user):
                row = PhoneNumber.get_or_none(PhoneNumber.number.in_(_number_forms(user)))
                if row is not None:
                    return row
            continue
        if _DIGITS.match(text):
            row = (
                PhoneNumber.select()
                .where(PhoneNumber.number.in_(_number_forms(text)))
                .order_by(PhoneNumber.created_at)
                .first()
            )
            if row is not None:
                return row
    return None


@dataclass(frozen=True)
class AssistantChoice:
    """The assistant a call runs with, or why there is none (``reason`` is an endedReason)."""

    assistant_id: str | None = None
    assistant: Mapping[str, Any] | None = None
    overrides: Mapping[str, Any] | None = None
    reason: str | None = None
    message: str | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None


def server_of(phone: PhoneNumber, default_url: str) -> tuple[str, float | None, dict[str, str]]:
    """(url, timeout seconds or None, headers) for the phone number's server, else the default."""
    data = phone.data or {}
    server = data.get("server") if isinstance(data.get("server"), Mapping) else {}
    url = (server or {}).get("url") or data.get("serverUrl") or default_url
    timeout = (server or {}).get("timeoutSeconds")
    headers = dict((server or {}).get("headers") or {})
    return str(url or ""), float(timeout) if isinstance(timeout, (int, float)) else None, headers


def resolve_assistant(
    phone: PhoneNumber,
    call_wire: Mapping[str, Any],
    *,
    default_url: str,
    secret: str = "",
    timeout: float = 5.0,
    post: Callable[..., Any] = requests.post,
) -> AssistantChoice:
    """The phone number's assistant, else an ``assistant-request`` to its (or the default) server."""
    if phone.assistant_id:
        return AssistantChoice(assistant_id=phone.assistant_id)
    url, own_timeout, headers = server_of(phone, default_url)
    if not url:
        return AssistantChoice(
            reason=er.NEITHER_ASSISTANT_NOR_SERVER_SET,
            message=f"phone number {phone.id} has no assistant and no server URL is configured",
        )
    ctx = MessageContext(
        call=call_wire,
        phone_number={"id": phone.id, "number": phone.number, "sipUri": phone.sip_uri},
        customer=call_wire.get("customer"),
    )
    body = assistant_request(ctx)
    headers = {"Content-Type": "application/json", **{str(k): str(v) for k, v in headers.items()}}
    if secret:
        headers.setdefault("X-Vapi-Secret", secret)
    wait = min(own_timeout or timeout, 60.0)
    try:
        resp = post(url, data=json.dumps(body), headers=headers, timeout=wait)
    except requests.RequestException as exc:
        log.warning("assistant-request to %s failed: %s", url, type(exc).__name__)
        return AssistantChoice(
            reason=er.ASSISTANT_REQUEST_FAILED,
            message=f"assistant-request failed: {type(exc).__name__}",
        )
    if not 200 <= resp.status_code < 300:
        return AssistantChoice(
            reason=er.ASSISTANT_REQUEST_FAILED,
            message=f"assistant-request answered HTTP {resp.status_code}",
        )
    try:
        answer = resp.json()
    except ValueError:
        return AssistantChoice(
            reason=er.ASSISTANT_REQUEST_RETURNED_INVALID_ASSISTANT,
            message="assistant-request answer is not JSON",
        )
    return _choice_from_answer(answer)


def _choice_from_answer(answer: Any) -> AssistantChoice:
    if not isinstance(answer, Mapping):
        return AssistantChoice(
            reason=er.ASSISTANT_REQUEST_RETURNED_INVALID_ASSISTANT,
            message="assistant-request answer is not a JSON object",
        )
    if answer.get("error"):
        return AssistantChoice(
            reason=er.ASSISTANT_REQUEST_RETURNED_ERROR, message=str(answer["error"])[:500]
        )
    overrides = answer.get("assistantOverrides")
    if overrides is not None and not isinstance(overrides, Mapping):
        overrides = None
    assistant_id = answer.get("assistantId")
    if assistant_id is not None:
        if not isinstance(assistant_id, str) or not _UUID.match(assistant_id):
            return AssistantChoice(
                reason=er.ASSISTANT_REQUEST_RETURNED_INVALID_ASSISTANT,
                message="assistantId is not a UUID",
            )
        if not Assistant.select().where(Assistant.id == assistant_id.lower()).exists():
            return AssistantChoice(
                reason=er.ASSISTANT_REQUEST_RETURNED_INVALID_ASSISTANT,
                message=f"assistant {assistant_id} not found",
            )
        return AssistantChoice(assistant_id=assistant_id.lower(), overrides=overrides)
    if "assistant" in answer and answer["assistant"] is not None:
        assistant = answer["assistant"]
        if not isinstance(assistant, Mapping):
            return AssistantChoice(
                reason=er.ASSISTANT_REQUEST_RETURNED_INVALID_ASSISTANT,
                message="assistant is not an object",
            )
        return AssistantChoice(assistant=dict(assistant), overrides=overrides)
    return AssistantChoice(
        reason=er.ASSISTANT_REQUEST_RETURNED_NO_ASSISTANT,
        message="assistant-request answer names no assistant",
    )
