"""A typed, read-only view of an assistant config dict (Vapi shape) with Vapi's defaults (pure).

The API stores assistants as camelCase JSON; the pipeline reads them once through
:func:`AssistantConfig.from_dict` (with the call's ``assistantOverrides`` merged in) and never looks at the raw
dict again. Legacy fields are mapped: top-level ``silenceTimeoutSeconds`` becomes the silence timeout, and a
``hooks[]`` entry ``on: customer.speech.timeout`` gives the idle messages (``do: [{type: say, exact}]``), their
timeout (``options.timeoutSeconds``) and how many are spoken (``options.triggerMaxCount``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from esl_controller.media.endpointing import StopSpeakingPlan

FIRST_MESSAGE_MODES = (
    "assistant-speaks-first",
    "assistant-speaks-first-with-model-generated-message",
    "assistant-waits-for-user",
)
DEFAULT_MAX_DURATION = 600.0
DEFAULT_SILENCE_TIMEOUT = 30.0
DEFAULT_IDLE_MAX_COUNT = 3
SILENCE_HOOK = "customer.speech.timeout"


class AssistantConfigError(ValueError):
    """The assistant cannot drive a conversation (bad firstMessageMode, negative durations...)."""


def merge_overrides(base: Mapping[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Deep-merge ``assistantOverrides`` into an assistant dict (objects merge, everything else replaces).

    ``variableValues`` and ``tools:append`` are handled by the caller, not merged as fields.
    """
    out: dict[str, Any] = dict(base)
    for key, value in (overrides or {}).items():
        if key in ("variableValues", "tools:append"):
            continue
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_overrides(out[key], value)
        else:
            out[key] = value
    append = (overrides or {}).get("tools:append")
    if append:
        model = dict(out.get("model") or {})
        model["tools"] = list(model.get("tools") or []) + list(append)
        out["model"] = model
    return out


@dataclass(frozen=True)
class IdlePlan:
    """What to do when nobody speaks: say ``messages`` after ``timeout_seconds`` (at most ``max_count`` times),
    and end the call with ``silence-timed-out`` after ``silence_timeout_seconds`` of silence."""

    timeout_seconds: float | None = None
    messages: tuple[str, ...] = ()
    max_count: int = DEFAULT_IDLE_MAX_COUNT
    #: a hook action ends the call as soon as its timeout passes (``do: [{type: endCall}]``)
    end_on_timeout: bool = False
    silence_timeout_seconds: float | None = DEFAULT_SILENCE_TIMEOUT


@dataclass(frozen=True)
class AssistantConfig:
    name: str = ""
    first_message: str = ""
    first_message_mode: str = "assistant-speaks-first"
    first_message_interruptions_enabled: bool = False
    end_call_message: str = ""
    end_call_phrases: tuple[str, ...] = ()
    max_duration_seconds: float | None = DEFAULT_MAX_DURATION
    model: Mapping[str, Any] = field(default_factory=dict, hash=False)
    voice: Mapping[str, Any] = field(default_factory=dict, hash=False)
    transcriber: Mapping[str, Any] = field(default_factory=dict, hash=False)
    #: the model's ``messages[]`` (system prompt first), templates not yet rendered
    messages: tuple[Mapping[str, Any], ...] = ()
    tools: tuple[Mapping[str, Any], ...] = ()
    start_speaking_plan: Mapping[str, Any] = field(default_factory=dict, hash=False)
    stop_speaking_plan: StopSpeakingPlan = field(default_factory=StopSpeakingPlan)
    idle: IdlePlan = field(default_factory=IdlePlan)
    variables: Mapping[str, Any] = field(default_factory=dict, hash=False)
    temperature: float | None = None
    max_tokens: int | None = None

    @property
    def wait_seconds(self) -> float:
        """``startSpeakingPlan.waitSeconds`` (default 0.4): silence that ends a caller's turn."""
        value = self.start_speaking_plan.get("waitSeconds")
        return 0.4 if value is None else float(value)

    @property
    def system_prompt(self) -> str:
        return "\n".join(
            str(m.get("content") or "") for m in self.messages if m.get("role") == "system"
        )

    @classmethod
    def from_dict(
        cls, assistant: Mapping[str, Any], overrides: Mapping[str, Any] | None = None
    ) -> AssistantConfig:
        data = merge_overrides(assistant or {}, overrides)
        variables = dict((overrides or {}).get("variableValues") or {})
        mode = data.get("firstMessageMode") or "assistant-speaks-first"
        if mode not in FIRST_MESSAGE_MODES:
            raise AssistantConfigError(
                f"firstMessageMode must be one of {', '.join(FIRST_MESSAGE_MODES)}"
            )
        model = dict(data.get("model") or {})
        max_duration = data.get("maxDurationSeconds", DEFAULT_MAX_DURATION)
        if max_duration is not None and float(max_duration) <= 0:
            raise AssistantConfigError("maxDurationSeconds must be positive")
        phrases = tuple(str(p) for p in (data.get("endCallPhrases") or ()) if str(p).strip())
        return cls(
            name=str(data.get("name") or ""),
            first_message=str(data.get("firstMessage") or ""),
            first_message_mode=mode,
            first_message_interruptions_enabled=bool(data.get("firstMessageInterruptionsEnabled")),
            end_call_message=str(data.get("endCallMessage") or ""),
            end_call_phrases=phrases,
            max_duration_seconds=None if max_duration is None else float(max_duration),
            model=model,
            voice=dict(data.get("voice") or {}),
            transcriber=dict(data.get("transcriber") or {}),
            messages=tuple(
                dict(m) for m in (model.get("messages") or ()) if isinstance(m, Mapping)
            ),
            tools=tuple(dict(t) for t in (model.get("tools") or ()) if isinstance(t, Mapping)),
            start_speaking_plan=dict(data.get("startSpeakingPlan") or {}),
            stop_speaking_plan=StopSpeakingPlan.from_dict(data.get("stopSpeakingPlan")),
            idle=_idle_plan(data),
            variables=variables,
            temperature=_opt_float(model.get("temperature")),
            max_tokens=None if model.get("maxTokens") is None else int(model["maxTokens"]),
        )


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _say_texts(action: Mapping[str, Any]) -> list[str]:
    exact = action.get("exact")
    if isinstance(exact, str):
        return [exact]
    if isinstance(exact, list):
        return [str(x) for x in exact if str(x).strip()]
    prompt = action.get("prompt")  # we speak a prompt as written (no model call for idle messages)
    return [str(prompt)] if isinstance(prompt, str) and prompt.strip() else []


def _idle_plan(data: Mapping[str, Any]) -> IdlePlan:
    silence = data.get("silenceTimeoutSeconds")
    silence_timeout = DEFAULT_SILENCE_TIMEOUT if silence is None else float(silence)
    timeout: float | None = None
    messages: list[str] = []
    max_count = DEFAULT_IDLE_MAX_COUNT
    end_on_timeout = False
    for hook in data.get("hooks") or ():
        if not isinstance(hook, Mapping) or hook.get("on") != SILENCE_HOOK:
            continue
        options = hook.get("options") or {}
        if options.get("timeoutSeconds") is not None:
            timeout = float(options["timeoutSeconds"])
        if options.get("triggerMaxCount") is not None:
            max_count = int(options["triggerMaxCount"])
        for action in hook.get("do") or ():
            if not isinstance(action, Mapping):
                continue
            kind = action.get("type")
            tool = action.get("tool") or {}
            if kind == "say":
                messages.extend(_say_texts(action))
            elif kind in ("endCall", "end-call") or tool.get("type") == "endCall":
                end_on_timeout = True
    plan = data.get("messagePlan") or {}  # the older idle-message fields
    if not messages and plan.get("idleMessages"):
        messages = [str(m) for m in plan["idleMessages"]]
        if plan.get("idleTimeoutSeconds") is not None:
            timeout = float(plan["idleTimeoutSeconds"])
        if plan.get("idleMessageMaxSpokenCount") is not None:
            max_count = int(plan["idleMessageMaxSpokenCount"])
    if messages and timeout is None:
        timeout = 7.5
    return IdlePlan(
        timeout_seconds=timeout,
        messages=tuple(messages),
        max_count=max(0, max_count),
        end_on_timeout=end_on_timeout,
        silence_timeout_seconds=silence_timeout if silence_timeout > 0 else None,
    )
