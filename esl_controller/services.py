"""The narrow call service the API uses (architecture.md section 2): create, originate, control a
call, and read its live state. The API never touches ESL; this module never imports ``api/``.

Errors are :class:`CallServiceError` ``(status, message)``; the routes turn them into API errors.

Interface::

    svc.create_phone_calls(body, idempotency_key=None) -> (201, Call | {results, errors})
    svc.create_web_call(body) -> Call
    svc.control(call_id, body) -> {"id", "status": "accepted"|"queued", ...}
    svc.live_state(call_id) -> dict | None
    svc.on_socket_call(call)          # the outbound-socket server's on_call
    svc.hook_inbound(body) -> dict    # /freeswitch/inbound
    svc.hook_event(event) -> bool     # /freeswitch/events
    svc.push_audio(call_id, pcm, rate) -> bool
    svc.on_fork_stream(stream)        # the fork WebSocket server's on_stream

Outbound calls go through the phone number's BYO SIP credential as a sofia gateway named
``gw_<credential id without dashes>`` (``sofia/gateway/gw_<hex>/<number>``), or to a customer's
SIP URI through the ``freeswitch.sip_profile`` profile. The leg is placed with
``bgapi originate {origination_uuid=<uuid>,ignore_early_media=true,...}<dialstring> '&socket(<our
outbound socket> async full)'``.
"""

from __future__ import annotations

import logging
import re
import uuid as _uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

import gevent

from esl_controller.calls import inbound as routing
from esl_controller.calls import persist
from esl_controller.calls.control import ControlError, EndCallCommand, parse_control
from esl_controller.calls.registry import Registry
from esl_controller.calls.serialize import call_to_wire
from esl_controller.calls.session import CallSession, OriginatePlan, SessionDeps
from esl_controller.calls.state import (
    CallConfig,
    CallCreated,
    CallSetupFailed,
    ChannelCreate,
    ControlAccepted,
    new_call,
)
from esl_controller.config import Settings
from esl_controller.db.models import Assistant, Call, Credential, PhoneNumber
from esl_controller.esl import commands as cmds

log = logging.getLogger("esl_controller.services")

_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
IDEMPOTENCY_CACHE = 5000


class CallServiceError(Exception):
    def __init__(self, status: int, message: str | list[str]) -> None:
        super().__init__(message if isinstance(message, str) else "; ".join(message))
        self.status = status
        self.message = message


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def gateway_name(credential_id: str) -> str:
    """The sofia gateway a BYO SIP credential is provisioned as."""
    return "gw_" + credential_id.replace("-", "")


class CallService:
    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        deps: SessionDeps,
        *,
        fork_enabled: bool = False,
    ) -> None:
        self.settings = settings
        self.registry = registry
        self.deps = deps
        self.fork_enabled = fork_enabled
        #: ws:// bases of the web-call and live-listen servers (set by the controller once bound)
        self.web_ws_base: str | None = None
        self.listen_ws_base: str | None = None
        self._idempotent: OrderedDict[str, tuple[int, dict[str, Any]]] = OrderedDict()

    # ------------------------------------------------------------------ helpers
    @property
    def inbound(self) -> Any:
        return self.deps.inbound

    def freeswitch_state(self) -> tuple[bool, str]:
        if not self.settings.freeswitch.enabled or self.inbound is None:
            return False, "FreeSWITCH is not configured (freeswitch.enabled is false)"
        state = self.inbound.state.value
        detail = state if not self.inbound.last_error else f"{state}: {self.inbound.last_error}"
        return state == "connected", detail

    def _require_freeswitch(self) -> None:
        if not self.settings.freeswitch.enabled or self.inbound is None:
            raise CallServiceError(
                503,
                "FreeSWITCH is not configured (freeswitch.enabled is false): phone calls need it",
            )
        ok, detail = self.freeswitch_state()
        if not ok:
            raise CallServiceError(503, f"not connected to FreeSWITCH ({detail}); try again later")

    def _config(self, assistant: Mapping[str, Any] | None) -> CallConfig:
        calls, fs = self.settings.calls, self.settings.freeswitch
        max_duration = calls.max_duration_seconds
        if assistant and isinstance(assistant.get("maxDurationSeconds"), (int, float)):
            max_duration = float(assistant["maxDurationSeconds"])
        return CallConfig(
            max_duration_seconds=max_duration,
            ring_timeout_seconds=calls.ring_timeout_seconds,
            command_timeout_seconds=fs.command_timeout * 2,
            start_fork=self.fork_enabled,
        )

    def _monitor(self, call_id: str) -> dict[str, str]:
        out = {"controlUrl": f"{self.settings.public_url}/call/{call_id}/control"}
        if self.listen_ws_base:
            from esl_controller.media.listen import listen_url

            out["listenUrl"] = listen_url(self.listen_ws_base, call_id)
        return out

    def _wire(self, row: Call) -> dict[str, Any]:
        return call_to_wire(row)

    def _assistant(
        self, body: Mapping[str, Any], phone: PhoneNumber | None
    ) -> tuple[str | None, dict | None]:
        assistant_id, inline = body.get("assistantId"), body.get("assistant")
        if assistant_id is not None:
            if not isinstance(assistant_id, str) or not _UUID.match(assistant_id):
                raise CallServiceError(400, "assistantId must be a UUID")
            row = Assistant.get_or_none(Assistant.id == assistant_id.lower())
            if row is None:
                raise CallServiceError(400, f"assistant {assistant_id} not found")
            return row.id, dict(row.data or {})
        if inline is not None:
            if not isinstance(inline, Mapping):
                raise CallServiceError(400, "assistant must be an object")
            return None, dict(inline)
        if body.get("squadId") or body.get("squad"):
            raise CallServiceError(
                400, "squads are not supported yet: give assistantId or assistant"
            )
        if phone is not None and phone.assistant_id:
            row = Assistant.get_or_none(Assistant.id == phone.assistant_id)
            return phone.assistant_id, dict(row.data or {}) if row else None
        raise CallServiceError(400, "assistantId or assistant is required")

    # ------------------------------------------------------------------ outbound phone calls
    def create_phone_calls(
        self, body: Mapping[str, Any], idempotency_key: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        """``POST /call`` and ``/call/phone``. Batch (``customers[]``) -> ``{results, errors}``."""
        if idempotency_key:
            cached = self._idempotent.get(idempotency_key)
            if cached is not None:
                return cached
        customers = body.get("customers")
        if customers is not None:
            if not isinstance(customers, list) or not customers:
                raise CallServiceError(400, "customers must be a non-empty array")
            if body.get("customer") is not None:
                raise CallServiceError(400, "give customer or customers, not both")
            if len(customers) > 100:
                raise CallServiceError(400, "at most 100 customers per request")
            self._require_freeswitch()
            results, errors = [], []
            for customer in customers:
                try:
                    results.append(self._create_phone_call({**body, "customer": customer}))
                except CallServiceError as exc:
                    if exc.status >= 500:
                        raise
                    errors.append({"customer": customer, "error": exc.message})
            answer = (201, {"results": results, "errors": errors})
        else:
            answer = (201, self._create_phone_call(body))
        if idempotency_key:
            self._idempotent[idempotency_key] = answer
            while len(self._idempotent) > IDEMPOTENCY_CACHE:
                self._idempotent.popitem(last=False)
        return answer

    def _plan(self, phone: PhoneNumber | None, customer: Mapping[str, Any]) -> OriginatePlan:
        fs = self.settings.freeswitch
        number, sip_uri = customer.get("number"), customer.get("sipUri")
        variables: dict[str, str] = {"ignore_early_media": "true"}
        if phone is not None and phone.number:
            caller = phone.number
            try:
                cmds.validate_number(caller)
            except cmds.CommandError:
                raise CallServiceError(
                    400, f"phone number {phone.id} has an unusable number"
                ) from None
            variables["origination_caller_id_number"] = caller
        timeout = int(self.settings.calls.ring_timeout_seconds)
        try:
            if sip_uri is not None:
                if not isinstance(sip_uri, str):
                    raise CallServiceError(400, "customer.sipUri must be a string")
                dial = cmds.sip_uri_dialstring(sip_uri, fs.sip_profile)
                return OriginatePlan(dial, variables, timeout, None)
            if not isinstance(number, str) or not number:
                raise CallServiceError(400, "customer.number or customer.sipUri is required")
            if customer.get("numberE164CheckEnabled", True) is not False and not _E164.match(
                number
            ):
                raise CallServiceError(
                    400, f"customer.number must be E.164 (like +15551230001), got {number!r}"
                )
            cmds.validate_number(number)
            if phone is None:
                raise CallServiceError(400, "phoneNumberId is required to call a number")
            if phone.credential_id is None:
                raise CallServiceError(
                    400,
                    f"phone number {phone.id} has no SIP credential (credentialId): outbound calls "
                    "go through the number's BYO SIP trunk",
                )
            gateway = gateway_name(phone.credential_id)
            return OriginatePlan(
                cmds.gateway_dialstring(gateway, number), variables, timeout, gateway
            )
        except cmds.CommandError as exc:
            raise CallServiceError(400, f"customer: {exc}") from None

    def _create_phone_call(self, body: Mapping[str, Any]) -> dict[str, Any]:
        customer = body.get("customer")
        if body.get("customerId") is not None and customer is None:
            raise CallServiceError(400, "customerId is not supported: give customer")
        if not isinstance(customer, Mapping):
            raise CallServiceError(400, "customer is required (customer.number or customer.sipUri)")
        phone = None
        phone_id = body.get("phoneNumberId")
        if body.get("phoneNumber") is not None:
            raise CallServiceError(400, "inline phoneNumber is not supported: give phoneNumberId")
        if phone_id is not None:
            if not isinstance(phone_id, str) or not _UUID.match(phone_id):
                raise CallServiceError(400, "phoneNumberId must be a UUID")
            phone = PhoneNumber.get_or_none(PhoneNumber.id == phone_id.lower())
            if phone is None:
                raise CallServiceError(400, f"phone number {phone_id} not found")
        assistant_id, assistant = self._assistant(body, phone)
        plan = self._plan(phone, customer)
        self._require_freeswitch()
        if phone is not None and phone.credential_id is not None:
            if Credential.get_or_none(Credential.id == phone.credential_id) is None:
                raise CallServiceError(400, f"credential {phone.credential_id} not found")
        channel_uuid = str(_uuid.uuid4())
        call_id = str(_uuid.uuid4())
        data: dict[str, Any] = {
            "customer": dict(customer),
            "phoneCallProvider": "vapi",
            "phoneCallTransport": "sip",
            "phoneCallProviderId": channel_uuid,
            "monitor": self._monitor(call_id),
        }
        if body.get("assistant") is not None:
            data["assistant"] = dict(body["assistant"])
        for key in ("assistantOverrides", "schedulePlan", "metadata"):
            if body.get(key) is not None:
                data[key] = body[key]
        row = persist.create_call(
            persist.NewCall(
                id=call_id,
                type="outboundPhoneCall",
                org_id=self.settings.org_id,
                node_id=self.settings.node_id,
                name=body.get("name"),
                assistant_id=assistant_id,
                phone_number_id=phone.id if phone else None,
                customer_number=customer.get("number") or customer.get("sipUri"),
                channel_uuid=channel_uuid,
                data=data,
            )
        )
        state = new_call(
            call_id, "outbound", channel_uuid=channel_uuid, config=self._config(assistant)
        )
        session = CallSession(state, self.deps, plan=plan)
        self.registry.add(session)
        session.start()
        session.feed(CallCreated(at=utcnow()))
        return self._wire(row)

    # ------------------------------------------------------------------ web calls
    def create_web_call(self, body: Mapping[str, Any]) -> dict[str, Any]:
        assistant_id, assistant = self._assistant(body, None)
        call_id = str(_uuid.uuid4())
        from esl_controller.calls.media import call_token

        public = self.settings.public_url
        ws = self.web_ws_base
        if not ws:
            m = self.settings.media
            ws = m.public_ws_url.rstrip("/") or f"ws://{m.webcall_host}:{m.webcall_port}"
        token = call_token(call_id)
        data: dict[str, Any] = {
            "webCallUrl": f"{public}/call/{call_id}/web?token={token}",
            "transport": {
                "provider": "vapi.websocket",
                "websocketCallUrl": f"{ws}/call/{call_id}/ws?token={token}",
            },
            "monitor": self._monitor(call_id),
        }
        if body.get("assistant") is not None:
            data["assistant"] = dict(body["assistant"])
        if body.get("assistantOverrides") is not None:
            data["assistantOverrides"] = body["assistantOverrides"]
        if assistant and assistant.get("artifactPlan") is not None:
            data["artifactPlan"] = assistant["artifactPlan"]
        row = persist.create_call(
            persist.NewCall(
                id=call_id,
                type="webCall",
                org_id=self.settings.org_id,
                node_id=self.settings.node_id,
                name=body.get("name"),
                assistant_id=assistant_id,
                data=data,
            )
        )
        session = CallSession(new_call(call_id, "web", config=self._config(assistant)), self.deps)
        self.registry.add(session)
        session.start()
        session.feed(CallCreated(at=utcnow()))
        return self._wire(row)

    # ------------------------------------------------------------------ control and state
    def control(self, call_id: str, body: Any) -> dict[str, Any]:
        """Live control. 404 unknown call; 400 bad body, call not live or control refused (not
        409: the SDK retries 409s and a retry would not fix these); 409 when another node owns the
        call (forwarding between nodes is not built yet); 503 when the session did not answer."""
        if not isinstance(body, Mapping):
            raise CallServiceError(400, "control body must be a JSON object")
        session = self.registry.get(call_id)
        if session is None:
            row = Call.get_or_none(Call.id == call_id)
            if row is None:
                raise CallServiceError(404, f"call {call_id} not found")
        try:
            command = parse_control(dict(body))
        except ControlError as exc:
            raise CallServiceError(400, exc.messages) from None
        if session is None:
            if row.status == "ended":
                raise CallServiceError(400, f"call {call_id} has ended ({row.ended_reason})")
            if row.node_id and row.node_id != self.settings.node_id:
                raise CallServiceError(
                    409,
                    f"call {call_id} is owned by node {row.node_id}; send the control to that node",
                )
            raise CallServiceError(400, f"call {call_id} is {row.status} but not live on this node")
        try:
            outcome = session.control(command, timeout=self.settings.calls.control_timeout)
        except TimeoutError:
            raise CallServiceError(
                503, f"call {call_id} did not take the control in time"
            ) from None
        if outcome is None:
            raise CallServiceError(400, f"call {call_id} has ended")
        if not isinstance(outcome, ControlAccepted):
            raise CallServiceError(400, outcome.message)
        return {
            "id": call_id,
            "status": "queued" if outcome.queued else "accepted",
            "duplicate": outcome.duplicate,
            "callStatus": session.state.status,
        }

    def hangup(self, call_id: str) -> dict[str, Any]:
        session = self.registry.get(call_id)
        if session is None:
            return self.control(call_id, {"type": "end-call"})
        outcome = session.control(EndCallCommand(), timeout=self.settings.calls.control_timeout)
        return {"id": call_id, "status": "accepted" if outcome is not None else "ended"}

    def live_state(self, call_id: str) -> dict[str, Any] | None:
        session = self.registry.get(call_id)
        return None if session is None else session.live_state()

    # ------------------------------------------------------------------ inbound calls
    def _start_inbound(
        self, phone: PhoneNumber, channel_uuid: str, caller: str, dialed: str
    ) -> tuple[CallSession, Call]:
        """Write the Call row FIRST, then build the (not yet started) session; CallCreated is queued."""
        call_id = str(_uuid.uuid4())
        data: dict[str, Any] = {
            "customer": {"number": caller} if caller else {},
            "phoneCallProvider": "vapi",
            "phoneCallTransport": "sip",
            "phoneCallProviderId": channel_uuid,
            "monitor": self._monitor(call_id),
            "freeswitch": {"dialed": dialed},
        }
        with persist.transaction():
            row = persist.create_call(
                persist.NewCall(
                    id=call_id,
                    type="inboundPhoneCall",
                    org_id=self.settings.org_id,
                    node_id=self.settings.node_id,
                    assistant_id=phone.assistant_id,
                    phone_number_id=phone.id,
                    customer_number=caller or None,
                    channel_uuid=channel_uuid,
                    data=data,
                )
            )
            assistant = None
            if phone.assistant_id:
                arow = Assistant.get_or_none(Assistant.id == phone.assistant_id)
                assistant = dict(arow.data or {}) if arow else None
        session = CallSession(
            new_call(call_id, "inbound", channel_uuid=channel_uuid, config=self._config(assistant)),
            self.deps,
            gateway=gateway_name(phone.credential_id) if phone.credential_id else None,
        )
        session.feed(CallCreated(at=utcnow()))
        self.registry.add(session)
        return session, row

    def _resolve_and_go(
        self, session: CallSession, row: Call, phone: PhoneNumber, already: bool
    ) -> None:
        """Resolve the assistant (assistant-request when the number has none), start the session."""
        calls = self.settings.calls
        try:
            with persist.transaction():
                choice = routing.resolve_assistant(
                    phone,
                    self._wire(row),
                    default_url=calls.server_url,
                    secret=calls.server_secret,
                    timeout=calls.assistant_request_timeout,
                )
                if choice.ok and not phone.assistant_id:
                    extra: dict[str, Any] = {}
                    if choice.assistant is not None:
                        extra["assistant"] = dict(choice.assistant)
                        session.state = replace(
                            session.state, config=self._config(choice.assistant)
                        )
                    if choice.overrides is not None:
                        extra["assistantOverrides"] = dict(choice.overrides)
                    if choice.assistant_id:
                        Call.update(assistant_id=choice.assistant_id).where(
                            Call.id == row.id
                        ).execute()
                    if extra:
                        persist.set_data(row.id, **extra)
        finally:
            session.start()
        if not choice.ok:
            log.info("call %s: no assistant: %s", session.call_id, choice.reason)
            session.feed(CallSetupFailed(at=utcnow(), reason=choice.reason, message=choice.message))
            return
        session.feed(
            ChannelCreate(at=utcnow(), channel_uuid=session.channel_uuid, already_answered=already)
        )

    def on_socket_call(self, call: Any) -> None:
        """The outbound-socket server's ``on_call``: an originated leg joins its session; any other
        channel is a new inbound call. Returns when the call is over (the server then exits)."""
        uuid = call.uuid
        existing = self.registry.by_channel(uuid)
        if existing is not None:
            existing.attach_socket(call)
            self._wait(existing)
            return
        data = call.channel_data
        candidates = routing.dialed_candidates(data.get)
        with persist.transaction():
            phone = routing.find_phone_number(candidates)
        if phone is None:
            self.registry.count("inbound_rejected_unknown_number")
            cause = self.settings.freeswitch.unknown_number_cause
            log.info(
                "inbound call %s to unknown number %s: rejected (%s)", uuid, candidates[:1], cause
            )
            call.hangup(cause)
            return
        caller = data.get("Caller-Caller-ID-Number") or data.get("Channel-Caller-ID-Number") or ""
        already = data.get("Answer-State") == "answered"
        dialed = candidates[0] if candidates else ""
        session, row = self._start_inbound(phone, uuid, caller, dialed)
        try:
            session.attach_socket(call)
        except Exception as exc:  # noqa: BLE001 - a socket that fails at setup: the events say how
            log.warning("call %s: socket setup failed: %s", session.call_id, exc)
        self._resolve_and_go(session, row, phone, already)
        self._wait(session)

    def _wait(self, session: CallSession) -> None:
        limit = (session.state.config.max_duration_seconds or 3600.0) + 600.0
        if not session.wait(limit):
            log.error(
                "call %s: session still running after %.0fs; stopping it", session.call_id, limit
            )
            session.kill()

    def hook_inbound(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """``/freeswitch/inbound``: a dialplan that calls HTTP instead of ``socket``."""
        channel_uuid = str(body.get("uuid") or body.get("channelUuid") or "")
        if not _UUID.match(channel_uuid):
            raise CallServiceError(400, "uuid (the channel uuid) is required")
        channel_uuid = channel_uuid.lower()
        if self.registry.by_channel(channel_uuid) is not None:
            raise CallServiceError(400, f"channel {channel_uuid} already has a call")
        dialed = [str(v) for v in (body.get("destination"), body.get("sipUri")) if v]
        if not dialed:
            raise CallServiceError(400, "destination (the dialed number) or sipUri is required")
        caller = str(body.get("caller") or "")[:64]
        phone = routing.find_phone_number(dialed)
        if phone is None:
            self.registry.count("inbound_rejected_unknown_number")
            return {
                "action": "hangup",
                "cause": self.settings.freeswitch.unknown_number_cause,
                "message": f"no phone number matches {dialed[0]}",
            }
        session, row = self._start_inbound(phone, channel_uuid, caller, dialed[0])
        gevent.spawn(self._resolve_and_go, session, row, phone, bool(body.get("answered")))
        return {"action": "park", "callId": row.id, "call": self._wire(row)}

    def hook_event(self, event: Any) -> bool:
        return self.registry.route_event(event)

    def push_audio(self, call_id: str, pcm: bytes, rate: int) -> bool:
        session = self.registry.get(call_id)
        if session is None or not session.is_live:
            row = Call.get_or_none(Call.id == call_id)
            if row is None:
                raise CallServiceError(404, f"call {call_id} not found")
            if row.status == "ended" or session is not None:
                raise CallServiceError(409, f"call {call_id} has ended")
            raise CallServiceError(409, f"call {call_id} is not live on this node")
        return session.push_audio(pcm, rate)

    def on_fork_stream(self, stream: Any) -> None:
        session = self.registry.get(stream.call_id)
        if session is None or not session.is_live:
            log.info("fork stream for unknown or ended call %s: closing", stream.call_id)
            stream.close(1008, "unknown call")
            return
        session.run_fork(stream)
