"""Assistant bodies (CreateAssistantDTO / UpdateAssistantDTO, api-compat.md §3)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from api.schemas.common import Metadata, Name, Open, Response, ServerConfig, Strict, UUIDStr

MODEL_PROVIDERS = (
    "openai", "anthropic", "anthropic-bedrock", "google", "groq", "custom-llm", "together-ai",
    "openrouter", "deepinfra", "deep-seek", "perplexity-ai", "anyscale", "xai", "cerebras",
    "inflection-ai", "minimax", "vapi",
)  # fmt: skip
TRANSCRIBER_PROVIDERS = (
    "deepgram", "assembly-ai", "azure", "custom-transcriber", "11labs", "gladia", "google",
    "speechmatics", "talkscriber", "openai", "cartesia", "soniox", "xai", "vapi",
)  # fmt: skip
VOICE_PROVIDERS = (
    "11labs", "azure", "cartesia", "custom-voice", "deepgram", "hume", "lmnt", "neuphonic", "openai",
    "playht", "wellsaid", "rime-ai", "smallest-ai", "tavus", "vapi", "sesame", "inworld", "minimax",
    "xai", "microsoft",
)  # fmt: skip


class Message(Open):
    role: Literal["system", "user", "assistant", "tool", "function"]
    content: str


class ModelConfig(Open):
    provider: str
    model: Annotated[str, Field(min_length=1, max_length=200)]
    messages: list[Message] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_ids: list[UUIDStr] | None = None
    temperature: Annotated[float, Field(ge=0, le=2)] | None = None
    max_tokens: Annotated[int, Field(ge=1, le=100_000)] | None = None
    url: str | None = None

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if self.provider not in MODEL_PROVIDERS:
            raise ValueError(f"provider must be one of {', '.join(MODEL_PROVIDERS)}")
        if self.provider == "custom-llm" and not self.url:
            raise ValueError("custom-llm needs url")
        return self


class TranscriberConfig(Open):
    provider: str

    @model_validator(mode="after")
    def _check(self) -> TranscriberConfig:
        if self.provider not in TRANSCRIBER_PROVIDERS:
            raise ValueError(f"provider must be one of {', '.join(TRANSCRIBER_PROVIDERS)}")
        return self


class VoiceConfig(Open):
    provider: str
    voice_id: str | None = None

    @model_validator(mode="after")
    def _check(self) -> VoiceConfig:
        if self.provider not in VOICE_PROVIDERS:
            raise ValueError(f"provider must be one of {', '.join(VOICE_PROVIDERS)}")
        if self.provider != "custom-voice" and not self.voice_id:
            raise ValueError("voiceId is required")
        return self


class StartSpeakingPlan(Open):
    wait_seconds: Annotated[float, Field(ge=0, le=5)] | None = None


class StopSpeakingPlan(Open):
    num_words: Annotated[int, Field(ge=0, le=10)] | None = None
    voice_seconds: Annotated[float, Field(ge=0, le=0.5)] | None = None
    backoff_seconds: Annotated[float, Field(ge=0, le=10)] | None = None


class AssistantBody(Strict):
    name: Name | None = None
    first_message: Annotated[str, Field(max_length=10_000)] | None = None
    first_message_mode: (
        Literal[
            "assistant-speaks-first",
            "assistant-speaks-first-with-model-generated-message",
            "assistant-waits-for-user",
        ]
        | None
    ) = None
    first_message_interruptions_enabled: bool | None = None
    model: ModelConfig | None = None
    transcriber: TranscriberConfig | None = None
    voice: VoiceConfig | None = None
    end_call_message: str | None = None
    end_call_phrases: list[Annotated[str, Field(max_length=140)]] | None = None
    voicemail_message: str | None = None
    voicemail_detection: Any = None
    max_duration_seconds: Annotated[float, Field(ge=10, le=43_200)] | None = None
    background_sound: str | None = None
    model_output_in_messages_enabled: bool | None = None
    server_messages: list[str] | None = None
    client_messages: list[str] | None = None
    server: ServerConfig | None = None
    credential_ids: list[UUIDStr] | None = None
    metadata: Metadata | None = None
    artifact_plan: dict[str, Any] | None = None
    analysis_plan: dict[str, Any] | None = None
    monitor_plan: dict[str, Any] | None = None
    start_speaking_plan: StartSpeakingPlan | None = None
    stop_speaking_plan: StopSpeakingPlan | None = None
    compliance_plan: dict[str, Any] | None = None
    hooks: list[dict[str, Any]] | None = None
    observability_plan: dict[str, Any] | None = None
    keypad_input_plan: dict[str, Any] | None = None
    background_speech_denoising_plan: dict[str, Any] | None = None
    transport_configurations: list[dict[str, Any]] | None = None
    credentials: list[dict[str, Any]] | None = None
    variable_values: dict[str, Any] | None = None
    #: legacy fields, mapped on write (see to_current)
    silence_timeout_seconds: Annotated[float, Field(ge=1, le=3600)] | None = None
    recording_enabled: bool | None = None
    hipaa_enabled: bool | None = None


def to_current(body: dict[str, Any]) -> dict[str, Any]:
    """Map legacy fields older SDKs send to their current places (api-compat §3, "Fields that moved")."""
    out = dict(body)
    if "recordingEnabled" in out:
        plan = dict(out.get("artifactPlan") or {})
        plan.setdefault("recordingEnabled", out.pop("recordingEnabled"))
        out["artifactPlan"] = plan
    if "hipaaEnabled" in out:
        plan = dict(out.get("compliancePlan") or {})
        plan.setdefault("hipaaEnabled", out.pop("hipaaEnabled"))
        out["compliancePlan"] = plan
    if "silenceTimeoutSeconds" in out:
        seconds = out.pop("silenceTimeoutSeconds")
        hooks = [h for h in (out.get("hooks") or []) if h.get("on") != "customer.speech.timeout"]
        hooks.append(
            {"on": "customer.speech.timeout", "options": {"timeoutSeconds": seconds}, "do": []}
        )
        out["hooks"] = hooks
    return out


class AssistantResponse(Response):
    name: str | None = None
    first_message_mode: str | None = None
