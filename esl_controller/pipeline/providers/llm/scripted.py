"""The scripted model: a deterministic, offline :class:`ChatModel` for demos and tests.

Configured from the assistant's ``model`` block. The Vapi SDK turns unknown provider names into ``None``, so the
scripted model is selected with a Vapi provider name::

    {"provider": "custom-llm", "model": "scripted", "url": "scripted://",
     "messages": [{"role": "system", "content": "When the caller says hours, reply We open at nine."}],
     "rules": [
        {"match": "book|reserve", "reply": "Sure {{name}}, for how many people?"},
        {"keywords": ["bye", "goodbye"], "reply": "Goodbye!", "endCall": true},
        {"keywords": ["human", "agent"], "reply": "Transferring you now.",
         "toolCall": {"name": "transferCall", "arguments": {"destination": "+15551230001"}}}
     ],
     "defaultReply": "Sorry, could you say that again?",
     "greeting": "Hello! How can I help?"}

Rules are tried in order against the caller's latest message: ``match`` is a case-insensitive regular
expression (its named groups become variables), ``keywords`` a list of which any one must appear as a word or
phrase. The reply is rendered with ``{{variables}}`` (``ChatRequest.metadata["variables"]``). ``toolCall`` is
streamed as a :class:`ToolCallDelta`; ``endCall: true`` adds an ``endCall`` tool call after the reply. Lines in
the system prompt shaped ``When the caller says X, reply Y`` (also "user", "customer"; "say"/"respond") add
keyword rules after ``rules``. ``greeting`` answers a request with no user message yet (the
``assistant-speaks-first-with-model-generated-message`` first message). ``tokenDelayMs`` paces the stream.

A request with ``json_schema`` gets one JSON object built from the schema and the conversation: for each
property its ``default``, else an ``enum`` value mentioned in the conversation (else the first), booleans true
when the property name's words appear in what the caller said, numbers the first number said, strings the
caller's last message, arrays ``[]`` and objects recursively.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from esl_controller.pipeline.history import render
from esl_controller.pipeline.providers.base import (
    ChatRequest,
    ModelChunk,
    ModelDone,
    ProviderError,
    TextDelta,
    ToolCallDelta,
    Usage,
)

PROVIDER = "custom-llm"
MODEL = "scripted"
DEFAULT_REPLY = "I'm sorry, I didn't catch that. Could you say it again?"
DEFAULT_GREETING = "Hello! How can I help you today?"

_PROMPT_RULE = re.compile(
    r"^\s*(?:[-*]\s*)?(?:when|if)\s+the\s+(?:caller|user|customer)\s+says\s+"
    r"[\"“']?(?P<match>.+?)[\"”']?\s*,\s*(?:then\s+)?(?:reply|say|respond|answer)(?:\s+with)?\s*:?\s*"
    r"[\"“']?(?P<reply>.+?)[\"”']?\s*$",
    re.IGNORECASE,
)


class ScriptConfigError(ValueError):
    """A rule cannot be used (bad regular expression, no reply)."""


@dataclass(frozen=True)
class Rule:
    pattern: re.Pattern[str] | None
    keywords: tuple[str, ...]
    reply: str
    tool_call: Mapping[str, Any] | None = None
    end_call: bool = False

    def matches(self, text: str) -> dict[str, str] | None:
        """Variables from the match (named groups), or None when the rule does not apply."""
        if self.pattern is not None:
            m = self.pattern.search(text)
            if m:
                return {k: v for k, v in m.groupdict().items() if v is not None}
            return None
        low = " " + " ".join(re.findall(r"[\w']+", text.lower())) + " "
        for kw in self.keywords:
            k = " ".join(re.findall(r"[\w']+", kw.lower()))
            if k and f" {k} " in low:
                return {}
        return None


def _rule(item: Mapping[str, Any]) -> Rule:
    match = item.get("match")
    keywords = item.get("keywords") or ()
    if isinstance(match, list):
        keywords, match = match, None
    pattern = None
    if isinstance(match, str) and match:
        try:
            pattern = re.compile(match, re.IGNORECASE)
        except re.error as exc:
            raise ScriptConfigError(f"scripted rule match {match!r}: {exc}") from None
    if isinstance(keywords, str):
        keywords = [keywords]
    if pattern is None and not keywords:
        raise ScriptConfigError("a scripted rule needs match (a regex) or keywords")
    tool = item.get("toolCall")
    return Rule(
        pattern=pattern,
        keywords=tuple(str(k) for k in keywords),
        reply=str(item.get("reply") or ""),
        tool_call=dict(tool) if isinstance(tool, Mapping) else None,
        end_call=bool(item.get("endCall")),
    )


def rules_from_prompt(prompt: str) -> list[Rule]:
    """Keyword rules from ``When the caller says X, reply Y`` lines (X may list alternatives with ``or``)."""
    out = []
    for line in prompt.splitlines():
        m = _PROMPT_RULE.match(line)
        if m:
            alternatives = re.split(r"\s+or\s+|\s*/\s*", m.group("match").strip("\"'“” "))
            out.append(Rule(None, tuple(a for a in alternatives if a), m.group("reply")))
    return out


class ScriptedModel:
    """``ChatModel`` with rules; see the module docstring for the config."""

    name = PROVIDER

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        config = dict(config or {})
        self.model = str(config.get("model") or MODEL)
        self.rules: list[Rule] = [_rule(r) for r in config.get("rules") or ()]
        self._config_rules = len(self.rules)
        self.default_reply = str(config.get("defaultReply") or DEFAULT_REPLY)
        self.greeting = str(config.get("greeting") or DEFAULT_GREETING)
        self.token_delay = float(config.get("tokenDelayMs") or 0) / 1000.0
        self.requests = 0

    def stream(self, request: ChatRequest, *, timeout: float) -> Iterator[ModelChunk]:
        started = time.monotonic()
        self.requests += 1
        variables = dict(request.metadata.get("variables") or {})
        messages = list(request.messages)
        prompt_tokens = sum(len(str(m.get("content") or "").split()) for m in messages)
        if request.json_schema is not None:
            obj = structured_output(request.json_schema, messages)
            text = json.dumps(obj)
            yield TextDelta(text)
            yield ModelDone("stop", self._usage(prompt_tokens, 1, started))
            return
        rule, found = self._choose(messages)
        variables.update(found)
        if rule is None:
            user = _last(messages, "user")
            reply = self.greeting if user is None else self.default_reply
        else:
            reply = rule.reply
        reply = render(reply, variables)
        words = reply.split(" ") if reply else []
        for i, word in enumerate(words):
            if self.token_delay:
                time.sleep(self.token_delay)
            if time.monotonic() - started > timeout:
                raise ProviderError(
                    "scripted model timed out", provider=PROVIDER, kind="llm", retryable=True
                )
            yield TextDelta(word if i == 0 else " " + word)
        index = 0
        finish = "stop"
        if rule is not None and rule.tool_call:
            name = str(rule.tool_call.get("name") or "")
            args = rule.tool_call.get("arguments") or {}
            args_text = render(json.dumps(args) if not isinstance(args, str) else args, variables)
            yield ToolCallDelta(index=index, id=f"call_{self.requests}_{index}", name=name)
            yield ToolCallDelta(index=index, arguments=args_text)
            index += 1
            finish = "tool_calls"
        if rule is not None and rule.end_call:
            yield ToolCallDelta(
                index=index, id=f"call_{self.requests}_{index}", name="endCall", arguments="{}"
            )
            finish = "tool_calls"
        yield ModelDone(finish, self._usage(prompt_tokens, len(words), started))

    def _choose(self, messages: Sequence[Mapping[str, Any]]) -> tuple[Rule | None, dict[str, str]]:
        if messages and messages[-1].get("role") == "tool":
            return None, {}
        user = _last(messages, "user")
        if user is None:
            return None, {}
        system = "\n".join(
            str(m.get("content") or "") for m in messages if m.get("role") == "system"
        )
        for rule in self.rules + rules_from_prompt(system):
            found = rule.matches(user)
            if found is not None:
                return rule, found
        return None, {}

    def _usage(self, prompt: int, completion: int, started: float) -> Usage:
        return Usage(
            kind="llm",
            provider=PROVIDER,
            model=self.model,
            prompt_tokens=prompt,
            completion_tokens=completion,
            latency_ms=(time.monotonic() - started) * 1000.0,
        )


def _last(messages: Sequence[Mapping[str, Any]], role: str) -> str | None:
    for m in reversed(messages):
        if m.get("role") == role:
            return str(m.get("content") or "")
    return None


# -- structured output ---------------------------------------------------------------------------------


def structured_output(schema: Mapping[str, Any], messages: Sequence[Mapping[str, Any]]) -> Any:
    """An object that satisfies ``schema`` (the subset used by structured outputs), built from the talk."""
    if "schema" in schema and "type" not in schema:  # OpenAI's {name, schema, strict} wrapper
        schema = schema["schema"]
    said = " ".join(str(m.get("content") or "") for m in messages if m.get("role") == "user")
    everything = " ".join(
        str(m.get("content") or "") for m in messages if m.get("role") != "system"
    )
    return _value(schema, "", said, everything)


def _value(schema: Mapping[str, Any], name: str, said: str, everything: str) -> Any:
    if "default" in schema:
        return schema["default"]
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if enum:
        low = everything.lower()
        for option in enum:
            if isinstance(option, str) and option.lower() in low:
                return option
        return enum[0]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        return {
            k: _value(v, k, said, everything) for k, v in props.items() if isinstance(v, Mapping)
        }
    if kind == "array":
        return []
    if kind == "boolean":
        words = [
            w for w in re.findall(r"[a-z]+", re.sub(r"([A-Z])", r" \1", name).lower()) if len(w) > 2
        ]
        words = [w for w in words if w not in ("has", "was", "did", "the", "and", "for")]
        low = said.lower()
        return bool(words) and any(re.search(rf"\b{re.escape(w)}", low) for w in words)
    if kind in ("number", "integer"):
        m = re.search(r"-?\d+(?:\.\d+)?", said)
        if not m:
            return 0
        return int(float(m.group(0))) if kind == "integer" else float(m.group(0))
    if kind == "null":
        return None
    return said.strip()
