"""Call pricing from the operator's YAML rate card. Pure: data in, data out.

The card (``docs/rate-card.example.yaml``) gives transport per minute by direction and trunk, STT per
minute, model per 1k prompt / completion / cached-prompt tokens, TTS per 1k characters and a platform fee
per minute, in USD. ``price_call`` turns the usage recorded for a call (per provider request) and the call's
facts into a :class:`CostReport` in Vapi's shapes (``cost``, ``costBreakdown``, ``costs[]``).

* Amounts are ``decimal.Decimal``; each line keeps 6 decimal places; only the presentation of ``cost``
  and ``costBreakdown`` rounds (to the cent by default).
* A usage with no price is never guessed: it contributes 0 and is listed in ``missing``.
* Every report names the card that priced it (``RateCard.card_id``: label and content hash). The caller
  stores the report; reloading the card does not reprice past calls.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

import yaml

SIX_PLACES = Decimal("0.000001")
WILDCARD = "*"
DIRECTIONS = ("inbound", "outbound", "web")
USAGE_KINDS = ("stt", "llm", "tts")


class RateCardError(ValueError):
    """The rate card is malformed; the message starts with the key path at fault."""


@dataclass(frozen=True)
class TokenPrice:
    """USD per 1000 tokens. ``cached_prompt`` defaults to ``prompt`` when the card leaves it out."""

    prompt: Decimal
    completion: Decimal
    cached_prompt: Decimal


@dataclass(frozen=True)
class RateCard:
    currency: str
    #: operator's label (``version:`` in the file), may be empty
    label: str
    #: sha256 over the canonical parsed card
    digest: str
    #: (direction, trunk or "*") -> USD per minute
    transport: Mapping[tuple[str, str], Decimal] = field(default_factory=dict)
    #: (provider or "*", model or "*") -> USD per minute of audio
    stt: Mapping[tuple[str, str], Decimal] = field(default_factory=dict)
    #: (provider or "*", model or "*") -> per-1k-token prices
    model: Mapping[tuple[str, str], TokenPrice] = field(default_factory=dict)
    #: (provider or "*", model or "*") -> USD per 1000 characters
    tts: Mapping[tuple[str, str], Decimal] = field(default_factory=dict)
    #: USD per minute, None when the card has no platform section
    platform_per_minute: Decimal | None = None

    @property
    def card_id(self) -> str:
        """What a stored price records: ``<label>@<first 12 hex of digest>`` (≤ 64 characters)."""
        return f"{self.label[:50]}@{self.digest[:12]}" if self.label else self.digest[:12]


def _amount(value: Any, path: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise RateCardError(f"{path}: must be a number, not {type(value).__name__}")
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise RateCardError(f"{path}: {value!r} is not a number") from None
    if not amount.is_finite() or amount < 0:
        raise RateCardError(f"{path}: must be a non-negative number, not {value!r}")
    return amount


def _mapping(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise RateCardError(f"{path}: must be a mapping")
    return value


def _two_level(section: Any, path: str, leaf) -> dict[tuple[str, str], Any]:
    out: dict[tuple[str, str], Any] = {}
    for outer, inner in _mapping(section, path).items():
        for key, value in _mapping(inner, f"{path}.{outer}").items():
            out[(str(outer), str(key))] = leaf(value, f"{path}.{outer}.{key}")
    return out


def _token_price(value: Any, path: str) -> TokenPrice:
    data = _mapping(value, path)
    unknown = set(data) - {"prompt", "completion", "cached_prompt"}
    if unknown:
        raise RateCardError(
            f"{path}.{sorted(unknown)[0]}: unknown key (prompt, completion, cached_prompt)"
        )
    for key in ("prompt", "completion"):
        if key not in data:
            raise RateCardError(f"{path}.{key}: required")
    prompt = _amount(data["prompt"], f"{path}.prompt")
    cached = data.get("cached_prompt")
    return TokenPrice(
        prompt=prompt,
        completion=_amount(data["completion"], f"{path}.completion"),
        cached_prompt=prompt if cached is None else _amount(cached, f"{path}.cached_prompt"),
    )


_SECTIONS = {
    "transport": "per_minute",
    "stt": "per_minute",
    "model": "per_1k_tokens",
    "tts": "per_1k_characters",
    "platform": "per_minute",
}


def parse_rate_card(data: Any) -> RateCard:
    """A RateCard from the parsed YAML mapping; raises RateCardError naming the key at fault."""
    root = _mapping(data, "rate card")
    unknown = set(root) - set(_SECTIONS) - {"version", "currency"}
    if unknown:
        raise RateCardError(f"{sorted(unknown)[0]}: unknown key")
    currency = str(root.get("currency", "USD"))
    if currency != "USD":
        raise RateCardError(f"currency: only USD is supported, not {currency!r}")
    sections: dict[str, Any] = {}
    for name, unit in _SECTIONS.items():
        if name not in root:
            continue
        sec = _mapping(root[name], name)
        extra = set(sec) - {unit}
        if extra:
            raise RateCardError(f"{name}.{sorted(extra)[0]}: unknown key (expected {unit})")
        if unit not in sec:
            raise RateCardError(f"{name}.{unit}: required")
        sections[name] = sec[unit]
    path = {k: f"{k}.{u}" for k, u in _SECTIONS.items()}
    transport = (
        _two_level(sections["transport"], path["transport"], _amount)
        if "transport" in sections
        else {}
    )
    for direction, _trunk in transport:
        if direction not in DIRECTIONS:
            raise RateCardError(
                f"{path['transport']}.{direction}: direction must be inbound, outbound or web"
            )
    card = RateCard(
        currency=currency,
        label=str(root.get("version") or ""),
        digest="",
        transport=transport,
        stt=_two_level(sections["stt"], path["stt"], _amount) if "stt" in sections else {},
        model=_two_level(sections["model"], path["model"], _token_price)
        if "model" in sections
        else {},
        tts=_two_level(sections["tts"], path["tts"], _amount) if "tts" in sections else {},
        platform_per_minute=(
            _amount(sections["platform"], path["platform"]) if "platform" in sections else None
        ),
    )
    return RateCard(**{**card.__dict__, "digest": _digest(card)})


def _digest(card: RateCard) -> str:
    def flat(table: Mapping[tuple[str, str], Any]) -> list[Any]:
        return sorted(
            [a, b, [str(v.prompt), str(v.completion), str(v.cached_prompt)]]
            if isinstance(v, TokenPrice)
            else [a, b, str(v.normalize())]
            for (a, b), v in table.items()
        )

    canonical = {
        "currency": card.currency,
        "transport": flat(card.transport),
        "stt": flat(card.stt),
        "model": flat(card.model),
        "tts": flat(card.tts),
        "platform": None
        if card.platform_per_minute is None
        else str(card.platform_per_minute.normalize()),
    }
    return hashlib.sha256(json.dumps(canonical, sort_keys=True).encode()).hexdigest()


def load_rate_card(text: str) -> RateCard:
    """Parse the YAML text of a rate card."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise RateCardError(f"rate card: not valid YAML ({exc})") from None
    return parse_rate_card(data if data is not None else {})


# ------------------------------------------------------------------------------------------ pricing


@dataclass(frozen=True)
class UsageItem:
    """One provider request's usage, as recorded by the pipeline.

    ``kind``: stt (``audio_seconds``), llm (``prompt_tokens``, ``completion_tokens``,
    ``cached_prompt_tokens`` — cached tokens are a part of prompt tokens, as OpenAI counts them) or tts
    (``characters``).
    """

    kind: str
    provider: str
    model: str | None = None
    audio_seconds: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    characters: int = 0
    voice_id: str | None = None
    request_id: str | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> UsageItem:
        """From camelCase or snake_case keys."""

        def g(camel: str, snake: str, default: Any) -> Any:
            return d.get(camel, d.get(snake, default))

        return cls(
            kind=str(d["kind"]),
            provider=str(d["provider"]),
            model=d.get("model"),
            audio_seconds=float(g("audioSeconds", "audio_seconds", 0.0)),
            prompt_tokens=int(g("promptTokens", "prompt_tokens", 0)),
            completion_tokens=int(g("completionTokens", "completion_tokens", 0)),
            cached_prompt_tokens=int(g("cachedPromptTokens", "cached_prompt_tokens", 0)),
            characters=int(d.get("characters", 0)),
            voice_id=g("voiceId", "voice_id", None),
            request_id=g("requestId", "request_id", None),
        )


@dataclass(frozen=True)
class CallFacts:
    duration_seconds: float
    #: inbound | outbound | web
    direction: str
    #: gateway / trunk name the call used, None for web calls
    trunk: str | None = None
    #: what costs[].provider says for transport (vapi.sip, vapi.websocket, daily, ...)
    transport_provider: str = "vapi.sip"


@dataclass(frozen=True)
class CostLine:
    """One ``costs[]`` item; ``amount`` has 6 decimal places. Maps onto a stored CostItem row."""

    type: str
    provider: str | None
    model: str | None
    usage: Mapping[str, Any]
    amount: Decimal
    priced: bool = True

    def wire(self) -> dict[str, Any]:
        cost = float(self.amount)
        if self.type == "transport":
            item: dict[str, Any] = {"type": "transport", "provider": self.provider, **self.usage}
        elif self.type == "transcriber":
            item = {
                "type": "transcriber",
                "transcriber": {"provider": self.provider, "model": self.model},
            }
            item.update(self.usage)
        elif self.type == "model":
            item = {"type": "model", "model": {"provider": self.provider, "model": self.model}}
            item.update(self.usage)
        elif self.type == "voice":
            voice = {"provider": self.provider, "model": self.model}
            usage = dict(self.usage)
            if usage.get("voiceId"):
                voice["voiceId"] = usage.pop("voiceId")
            item = {"type": "voice", "voice": voice, **usage}
        else:
            item = {"type": self.type, **self.usage}
        item["cost"] = cost
        if not self.priced:
            item["priceMissing"] = True
        return item


@dataclass(frozen=True)
class MissingPrice:
    #: the card key that would have priced it, e.g. ``model.per_1k_tokens.openai.gpt-4o``
    key: str
    type: str
    provider: str | None
    model: str | None
    usage: Mapping[str, Any]

    def wire(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "type": self.type,
            "provider": self.provider,
            "model": self.model,
            "usage": dict(self.usage),
        }


_BREAKDOWN = {
    "transport": "transport",
    "transcriber": "stt",
    "model": "llm",
    "voice": "tts",
    "vapi": "vapi",
}


@dataclass(frozen=True)
class CostReport:
    lines: tuple[CostLine, ...]
    missing: tuple[MissingPrice, ...]
    rate_card_id: str
    currency: str = "USD"

    def subtotal(self, category: str) -> Decimal:
        """Sum for transport / stt / llm / tts / vapi (full 6-place precision)."""
        return sum(
            (line.amount for line in self.lines if _BREAKDOWN.get(line.type) == category),
            Decimal(0),
        )

    @property
    def total(self) -> Decimal:
        return sum((line.amount for line in self.lines), Decimal(0))

    def _usage_sum(self, line_type: str, key: str) -> int:
        return int(
            sum(int(line.usage.get(key, 0)) for line in self.lines if line.type == line_type)
        )

    def call_fields(self, places: int = 2) -> dict[str, Any]:
        """``{cost, costBreakdown, costs}`` for the Call object and end-of-call-report.

        ``cost`` and the money fields of ``costBreakdown`` are rounded to ``places`` (cents by default);
        ``costs[]`` items keep 6 places.
        """
        q = Decimal(1).scaleb(-places)

        def money(v: Decimal) -> float:
            return float(v.quantize(q, rounding=ROUND_HALF_UP))

        breakdown: dict[str, Any] = {
            k: money(self.subtotal(k)) for k in ("transport", "stt", "llm", "tts", "vapi")
        }
        breakdown["total"] = money(self.total)
        breakdown["llmPromptTokens"] = self._usage_sum("model", "promptTokens")
        breakdown["llmCompletionTokens"] = self._usage_sum("model", "completionTokens")
        breakdown["llmCachedPromptTokens"] = self._usage_sum("model", "cachedPromptTokens")
        breakdown["ttsCharacters"] = self._usage_sum("voice", "characters")
        return {
            "cost": money(self.total),
            "costBreakdown": breakdown,
            "costs": [line.wire() for line in self.lines],
        }

    def to_dict(self, places: int = 2) -> dict[str, Any]:
        """The ``/call/:id/costs`` body: the call fields plus ``missing``, ``currency``, ``rateCard``."""
        return {
            **self.call_fields(places),
            "currency": self.currency,
            "rateCard": self.rate_card_id,
            "complete": not self.missing,
            "missing": [m.wire() for m in self.missing],
        }


def _q(value: Decimal) -> Decimal:
    return value.quantize(SIX_PLACES, rounding=ROUND_HALF_UP)


def _lookup(table: Mapping[tuple[str, str], Any], a: str, b: str | None) -> Any:
    for key in ((a, b or WILDCARD), (a, WILDCARD), (WILDCARD, b or WILDCARD), (WILDCARD, WILDCARD)):
        if key in table:
            return table[key]
    return None


def _minutes(seconds: Decimal) -> Decimal:
    return seconds / Decimal(60)


def price_call(
    usage: Iterable[UsageItem | Mapping[str, Any]], facts: CallFacts, card: RateCard
) -> CostReport:
    """Price one call: transport and platform from its duration, STT/LLM/TTS from its usage items."""
    items = [u if isinstance(u, UsageItem) else UsageItem.from_dict(u) for u in usage]
    lines: list[CostLine] = []
    missing: list[MissingPrice] = []

    def add(
        line_type: str,
        provider: str | None,
        model: str | None,
        usage_fields: dict[str, Any],
        amount: Decimal | None,
        key: str,
    ) -> None:
        if amount is None:
            missing.append(MissingPrice(key, line_type, provider, model, usage_fields))
            lines.append(
                CostLine(line_type, provider, model, usage_fields, Decimal("0.000000"), False)
            )
        else:
            lines.append(CostLine(line_type, provider, model, usage_fields, _q(amount)))

    if facts.direction not in DIRECTIONS:
        raise ValueError(
            f"call direction must be inbound, outbound or web, not {facts.direction!r}"
        )
    seconds = Decimal(str(facts.duration_seconds))
    minutes = _minutes(seconds)
    minutes_out = float(_q(minutes))

    rate = _lookup(
        {k: v for k, v in card.transport.items() if k[0] == facts.direction},
        facts.direction,
        facts.trunk,
    )
    add(
        "transport",
        facts.transport_provider,
        None,
        {"minutes": minutes_out},
        None if rate is None else minutes * rate,
        f"transport.per_minute.{facts.direction}.{facts.trunk or WILDCARD}",
    )

    groups: dict[tuple[str, str, str | None, str | None], dict[str, Any]] = {}
    for u in items:
        if u.kind not in USAGE_KINDS:
            raise ValueError(f"usage kind must be one of {', '.join(USAGE_KINDS)}, not {u.kind!r}")
        voice = u.voice_id if u.kind == "tts" else None
        g = groups.setdefault(
            (u.kind, u.provider, u.model, voice),
            {"seconds": Decimal(0), "prompt": 0, "completion": 0, "cached": 0, "chars": 0},
        )
        g["seconds"] += Decimal(str(u.audio_seconds))
        g["prompt"] += u.prompt_tokens
        g["completion"] += u.completion_tokens
        g["cached"] += u.cached_prompt_tokens
        g["chars"] += u.characters

    for (kind, provider, model, voice), g in groups.items():
        tail = f"{provider}.{model or WILDCARD}"
        if kind == "stt":
            per_min = _lookup(card.stt, provider, model)
            stt_minutes = _minutes(g["seconds"])
            add(
                "transcriber",
                provider,
                model,
                {"minutes": float(_q(stt_minutes))},
                None if per_min is None else stt_minutes * per_min,
                f"stt.per_minute.{tail}",
            )
        elif kind == "llm":
            price = _lookup(card.model, provider, model)
            cached = min(g["cached"], g["prompt"])
            amount = None
            if price is not None:
                amount = (
                    Decimal(g["prompt"] - cached) * price.prompt
                    + Decimal(cached) * price.cached_prompt
                    + Decimal(g["completion"]) * price.completion
                ) / Decimal(1000)
            add(
                "model",
                provider,
                model,
                {
                    "promptTokens": g["prompt"],
                    "completionTokens": g["completion"],
                    "cachedPromptTokens": g["cached"],
                },
                amount,
                f"model.per_1k_tokens.{tail}",
            )
        else:
            per_k = _lookup(card.tts, provider, model)
            usage_fields: dict[str, Any] = {"characters": g["chars"]}
            if voice:
                usage_fields["voiceId"] = voice
            add(
                "voice",
                provider,
                model,
                usage_fields,
                None if per_k is None else Decimal(g["chars"]) * per_k / Decimal(1000),
                f"tts.per_1k_characters.{tail}",
            )

    add(
        "vapi",
        None,
        None,
        {"subType": "normal", "minutes": minutes_out},
        None if card.platform_per_minute is None else minutes * card.platform_per_minute,
        "platform.per_minute",
    )
    return CostReport(tuple(lines), tuple(missing), card.card_id, card.currency)
