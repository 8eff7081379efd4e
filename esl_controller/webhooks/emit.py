"""Emitting server messages for a call: resolve its targets and queue one durable job per target.

Call :meth:`Emitter.emit` inside the transaction of the change that caused the message (a status change, a
stored transcript): the jobs commit or roll back with it. ``emit`` opens a transaction (or a savepoint) itself
when the caller has none, so it is always safe to call.

Targets follow Vapi's order (tool server for ``tool-calls``, then the assistant's server, then the phone number's)
filtered by the assistant's ``serverMessages``, plus every enabled ``/webhook-endpoint`` whose scope and events
match (see :func:`esl_controller.webhooks.targets.resolve_targets`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from esl_controller.calls.serialize import call_to_wire, message_rows_as_dicts
from esl_controller.db.base import database
from esl_controller.db.models import Assistant, Call, CallMessage, PhoneNumber, WebhookEndpoint
from esl_controller.security.secrets_box import SecretBox
from esl_controller.webhooks import messages as m
from esl_controller.webhooks.outbox import SEALED_SECRET_KEY, enqueue, target_dict
from esl_controller.webhooks.targets import resolve_targets

log = logging.getLogger("esl_controller.webhooks")

Builder = Callable[[m.MessageContext], dict[str, Any]]


def _public(resource: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """A resource as it may appear in a payload: sealed secrets removed."""
    if resource is None:
        return None
    out = dict(resource)
    server = out.get("server")
    if isinstance(server, Mapping) and SEALED_SECRET_KEY in server:
        out["server"] = {k: v for k, v in server.items() if k != SEALED_SECRET_KEY}
    return out


def _with_id(row: Any) -> dict[str, Any]:
    return {**(row.data or {}), "id": row.id}


def _endpoint_dict(row: WebhookEndpoint) -> dict[str, Any]:
    data = row.data or {}
    return {
        "id": row.id,
        "url": row.url,
        "scope": row.scope,
        "scopeId": row.scope_id,
        "events": list(data.get("events") or []),
        "enabled": bool(row.enabled),
        "credentialId": row.credential_id,
        "headers": dict(data.get("headers") or {}),
        "timeoutSeconds": data.get("timeoutSeconds"),
    }


class Emitter:
    """Queues a call's server messages. ``wake`` (the deliverer's) is called after queueing, for latency."""

    def __init__(
        self,
        org_id: str,
        box: SecretBox,
        wake: Callable[[], None] | None = None,
        max_attempts: int = 8,
    ) -> None:
        self.org_id = org_id
        self.box = box
        self.wake = wake
        self.max_attempts = max_attempts

    # -- context -------------------------------------------------------------------------------------
    def context_for(self, call: Call) -> tuple[m.MessageContext, dict | None, dict | None]:
        wire = call_to_wire(call)
        assistant = wire.get("assistant")
        if assistant is None and call.assistant_id:
            row = Assistant.get_or_none(Assistant.id == call.assistant_id)
            assistant = _with_id(row) if row is not None else None
        phone = None
        if call.phone_number_id:
            row = PhoneNumber.get_or_none(PhoneNumber.id == call.phone_number_id)
            phone = {**_with_id(row), "provider": row.provider} if row is not None else None
        ctx = m.MessageContext(
            call=wire,
            assistant=_public(assistant),
            customer=wire.get("customer"),
            phone_number=_public(phone),
            artifact=wire.get("artifact"),
        )
        return ctx, assistant, phone

    # -- emitting ------------------------------------------------------------------------------------
    def emit(
        self, call: Call, message_type: str, build: Builder, *, transcript_type: str | None = None
    ) -> int:
        """Queue ``build(ctx)`` for every target of ``message_type``; returns the number of jobs queued."""
        ctx, assistant, phone = self.context_for(call)
        endpoints = [
            _endpoint_dict(e)
            for e in WebhookEndpoint.select().where(WebhookEndpoint.enabled == True)  # noqa: E712
        ]
        targets = resolve_targets(
            message_type,
            assistant=assistant,
            phone_number=phone,
            endpoints=endpoints,
            transcript_type=transcript_type,
        )
        if not targets:
            return 0
        payload = build(ctx)
        sealed = {
            "assistant": ((assistant or {}).get("server") or {}).get(SEALED_SECRET_KEY),
            "phone-number": ((phone or {}).get("server") or {}).get(SEALED_SECRET_KEY),
        }
        with database.atomic():
            for target in targets:
                stored = target_dict(target, self.box)
                if sealed.get(target.source) and SEALED_SECRET_KEY not in stored:
                    stored[SEALED_SECRET_KEY] = sealed[target.source]
                enqueue(
                    payload["message"]["type"],
                    payload,
                    stored,
                    call_id=call.id,
                    org_id=self.org_id,
                    max_attempts=self.max_attempts,
                )
        if self.wake is not None:
            self.wake()
        return len(targets)

    def status_update(self, call: Call) -> int:
        return self.emit(
            call,
            "status-update",
            lambda ctx: m.status_update(ctx, call.status, ended_reason=call.ended_reason),
        )

    def transcript(self, call: Call, role: str, transcript_type: str, text: str) -> int:
        return self.emit(
            call,
            "transcript",
            lambda ctx: m.transcript(ctx, role, transcript_type, text),
            transcript_type=transcript_type,
        )

    def end_of_call_report(self, call: Call) -> int:
        def build(ctx: m.MessageContext) -> dict[str, Any]:
            rows = CallMessage.select().where(CallMessage.call == call.id).order_by(CallMessage.seq)
            history = m.call_messages(message_rows_as_dicts(rows))
            wire = ctx.call or {}
            artifact = dict(wire.get("artifact") or {})
            artifact.setdefault("messages", history)
            artifact.setdefault("messagesOpenAIFormatted", m.messages_openai_formatted(history))
            artifact.setdefault("transcript", m.transcript_text(history))
            cost_fields = {k: wire[k] for k in ("cost", "costBreakdown", "costs") if k in wire}
            return m.end_of_call_report(
                ctx,
                ended_reason=call.ended_reason or "unknown",
                artifact=artifact,
                analysis=wire.get("analysis") or {},
                cost_fields=cost_fields,
                started_at=wire.get("startedAt"),
                ended_at=wire.get("endedAt"),
            )

        return self.emit(call, "end-of-call-report", build)
