"""Pricing a call with the configured rate card (I/O glue around the pure ``esl_controller.observe.costs``).

* Usage comes from the call's ``usage`` CallEvents (``data`` = ``{kind: stt|llm|tts, provider, model,
  audioSeconds|audio_seconds, promptTokens|prompt_tokens, completionTokens, cachedPromptTokens, characters,
  voiceId, requestId}``); malformed rows are left out and logged, never guessed at.
* Facts come from the Call row: duration ``ended_at - started_at`` (0 when never answered), direction from
  ``type``, the trunk from ``data.trunk`` (or ``data.gateway``; the gateway name the call used), the
  transport provider from ``data.transport.provider`` (default ``vapi.sip``, ``vapi.websocket`` for web).
* An ended call is priced once: its ``costs[]`` lines are stored as CostItem rows (amount as 6-place decimal
  text, NULL when the card had no price; the card key that was missing kept in ``usage.missingKey``; the
  card id in ``rate_card_version``) and the call's ``cost`` (to the cent), ``costBreakdown`` and ``costs``
  are written on the Call. After that the stored rows are the answer: reloading the card never reprices a
  past call. A call still running gets a provisional figure that is not stored.
* No card configured (or the file is unreadable or invalid): every price is reported missing with a
  message saying why, and nothing is stored, so the call is priced once a card is in place.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from esl_controller.db import database
from esl_controller.db.fields import utcnow
from esl_controller.db.models import Call, CallEvent, CostItem
from esl_controller.observe.costs import (
    USAGE_KINDS,
    CallFacts,
    CostLine,
    CostReport,
    MissingPrice,
    RateCard,
    RateCardError,
    UsageItem,
    load_rate_card,
    parse_rate_card,
    price_call,
)

log = logging.getLogger("esl_controller.observe.pricing")

NO_CARD = "no rate card configured (observe.rate_card_path): every price is reported missing"
USAGE_EVENT = "usage"
_EMPTY_CARD = parse_rate_card({})
_TYPE_ORDER = {"transport": 0, "transcriber": 1, "model": 2, "voice": 3, "vapi": 4}
_DIRECTION = {
    "inboundPhoneCall": "inbound",
    "outboundPhoneCall": "outbound",
    "webCall": "web",
    "vapi.websocketCall": "web",
}


class RateCardSource:
    """The configured rate card, parsed again whenever the file's text changes."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._text: str | None = None
        self._card: RateCard | None = None
        self._problem: str | None = None

    def current(self) -> tuple[RateCard | None, str | None]:
        """(card, None) or (None, why there is no usable card)."""
        if not self.path:
            return None, NO_CARD
        try:
            text = Path(self.path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            return (
                None,
                f"rate card {self.path} cannot be read ({exc}): every price is reported missing",
            )
        if text != self._text:
            try:
                self._card, self._problem = load_rate_card(text), None
            except RateCardError as exc:
                self._card = None
                self._problem = (
                    f"rate card {self.path} is invalid ({exc}): every price is reported missing"
                )
                log.warning("%s", self._problem)
            else:
                log.info("rate card %s loaded: %s", self.path, self._card.card_id)
            self._text = text
        return self._card, self._problem


def usage_items(call_id: str) -> list[UsageItem]:
    items = []
    query = (
        CallEvent.select(CallEvent.id, CallEvent.data)
        .where((CallEvent.call == call_id) & (CallEvent.kind == USAGE_EVENT))
        .order_by(CallEvent.at, CallEvent.id)
    )
    for ev in query:
        try:
            if not isinstance(ev.data, Mapping):
                raise TypeError("data is not an object")
            item = UsageItem.from_dict(ev.data)
            if item.kind not in USAGE_KINDS:
                raise ValueError(f"kind {item.kind!r}")
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("call %s: usage event %s left out of pricing: %s", call_id, ev.id, exc)
            continue
        items.append(item)
    return items


def call_facts(call: Call, now: datetime | None = None) -> CallFacts:
    """Raises ValueError for a call type with no direction."""
    direction = _DIRECTION.get(call.type)
    if direction is None:
        raise ValueError(f"a {call.type!r} call cannot be priced")
    data = call.data if isinstance(call.data, Mapping) else {}
    end = call.ended_at
    if end is None and call.status != "ended":
        end = now or utcnow()  # still running: the duration so far
    seconds = 0.0
    if call.started_at is not None and end is not None:
        seconds = max(0.0, (end - call.started_at).total_seconds())
    transport = data.get("transport") if isinstance(data.get("transport"), Mapping) else {}
    provider = transport.get("provider") or ("vapi.websocket" if direction == "web" else "vapi.sip")
    trunk = data.get("trunk") or data.get("gateway")
    return CallFacts(
        duration_seconds=seconds,
        direction=direction,
        trunk=str(trunk) if trunk else None,
        transport_provider=str(provider),
    )


def _line_key(line: CostLine) -> tuple[Any, ...]:
    return (_TYPE_ORDER.get(line.type, 9), line.type, line.provider or "", line.model or "")


def _sorted(report: CostReport) -> CostReport:
    return CostReport(
        tuple(sorted(report.lines, key=_line_key)),
        report.missing,
        report.rate_card_id,
        report.currency,
    )


def stored_report(call_id: str) -> CostReport | None:
    rows = list(CostItem.select().where(CostItem.call == call_id))
    if not rows:
        return None
    lines, missing = [], []
    for row in rows:
        usage = dict(row.usage or {})
        key = usage.pop("missingKey", None)
        priced = row.amount is not None
        amount = Decimal(row.amount) if priced else Decimal("0.000000")
        lines.append(CostLine(row.type, row.provider, row.model, usage, amount, priced))
        if not priced:
            missing.append(MissingPrice(key or "", row.type, row.provider, row.model, usage))
    card_id = rows[0].rate_card_version or ""
    lines.sort(key=_line_key)
    missing.sort(key=lambda m: m.key)
    return CostReport(tuple(lines), tuple(missing), card_id)


def price_and_store(call_id: str, card: RateCard) -> CostReport:
    """Price an ended call once and store it; a call already priced returns its stored report.

    The first statement updates the call row, which serialises concurrent pricers of one call (a row lock
    on PostgreSQL, the write lock on SQLite)."""
    with database.atomic():
        Call.update(updated_at=utcnow()).where(Call.id == call_id).execute()
        existing = stored_report(call_id)
        if existing is not None:
            return existing
        call = Call.get_by_id(call_id)
        report = _sorted(price_call(usage_items(call_id), call_facts(call), card))
        missing_keys = {(m.type, m.provider, m.model): m.key for m in report.missing}
        now = utcnow()
        CostItem.insert_many(
            [
                {
                    "org_id": call.org_id,
                    "created_at": now,
                    "updated_at": now,
                    "call": call_id,
                    "type": line.type,
                    "provider": line.provider,
                    "model": line.model,
                    "usage": dict(line.usage)
                    if line.priced
                    else {
                        **line.usage,
                        "missingKey": missing_keys.get((line.type, line.provider, line.model)),
                    },
                    "amount": str(line.amount) if line.priced else None,
                    "rate_card_version": report.rate_card_id[:64],
                }
                for line in report.lines
            ]
        ).execute()
        fields = report.call_fields()
        data = dict(call.data or {})
        data["costBreakdown"] = fields["costBreakdown"]
        data["costs"] = fields["costs"]
        Call.update(cost=fields["cost"], data=data).where(Call.id == call_id).execute()
    log.info("call %s priced with %s: %s USD", call_id, report.rate_card_id, report.total)
    return report


def price_if_ended(call_id: str, source: RateCardSource) -> CostReport | None:
    """For the call session at the end of a call: price and store it when a card is configured."""
    card, problem = source.current()
    if card is None:
        log.info("call %s not priced: %s", call_id, problem)
        return None
    return price_and_store(call_id, card)


def costs_body(call: Call, source: RateCardSource, now: datetime | None = None) -> dict[str, Any]:
    """The ``GET /call/:id/costs`` body. Raises ValueError for a call that cannot be priced."""
    stored = stored_report(call.id)
    message = None
    card_id: str | None = None
    if stored is not None:
        report, is_stored, final = stored, True, True
        card_id = report.rate_card_id
    else:
        card, problem = source.current()
        if card is None:
            report = _sorted(price_call(usage_items(call.id), call_facts(call, now), _EMPTY_CARD))
            is_stored, final, message = False, False, problem
        elif call.status == "ended":
            report, is_stored, final = price_and_store(call.id, card), True, True
            card_id = report.rate_card_id
        else:
            report = _sorted(price_call(usage_items(call.id), call_facts(call, now), card))
            is_stored, final, card_id = False, False, card.card_id
            message = f"call is {call.status}: provisional figures, priced for good when it ends"
    body = report.to_dict()
    body.update(
        rateCard=card_id,
        callId=call.id,
        costExact=str(report.total),
        final=final,
        stored=is_stored,
        message=message,
    )
    return body
