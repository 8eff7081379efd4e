"""Hosted providers registered by Vapi provider name, credentials attached, fallbacks wrapped.

Importing this module registers every hosted factory with :mod:`~esl_controller.pipeline.providers.registry`
(idempotent). The hosted vendor modules import it too, so the registry's own discovery of
``providers/{stt,llm,tts}/`` registers them without anyone importing this module by hand.

=====  =========================================================================  ===========================
kind   provider names                                                             class
=====  =========================================================================  ===========================
llm    openai, groq, together-ai, openrouter, deepinfra, deep-seek, perplexity-ai,  ``OpenAICompatModel``
       xai, cerebras, anyscale, ollama, vllm, llama.cpp
llm    custom-llm (any ``model`` but ``scripted``, which stays the embedded model)  ``CustomLLM``
stt    openai, groq                                                                ``OpenAITranscriber``
stt    deepgram                                                                    ``DeepgramTranscriber``
tts    openai                                                                      ``OpenAISpeech``
tts    11labs, elevenlabs                                                          ``ElevenLabsSpeech``
=====  =========================================================================  ===========================

**Credentials.** A factory takes the assistant's block (``model``/``transcriber``/``voice``) as given, with
the decrypted credential under the key ``"credential"`` (``{"provider", "apiKey", "apiUrl"?}``: the
``/credential`` resource's fields). :func:`attach_credential` picks it from the org's credentials by
provider name (``credentialId`` first when the block has one). No credential means no auth header
(local servers); nothing falls back to environment variables.

**Fallbacks.** :func:`build_with_fallbacks` builds the primary through the registry and wraps it with the
block's fallbacks (``model.fallbackModels[]``, ``voice.fallbackPlan.voices[]``,
``transcriber.fallbackPlan.transcribers[]``), each built the same way (each with its own credential).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from esl_controller.pipeline.providers import registry

log = logging.getLogger("esl_controller.pipeline.providers.hosted")

Factory = Callable[[Mapping[str, Any]], Any]

LLM_OPENAI_COMPAT = (
    "openai", "groq", "together-ai", "openrouter", "deepinfra", "deep-seek", "perplexity-ai", "xai",
    "cerebras", "anyscale", "ollama", "vllm", "llama.cpp",
)  # fmt: skip
CREDENTIAL_KEY = "credential"


def _credential(config: Mapping[str, Any]) -> Mapping[str, Any] | None:
    cred = config.get(CREDENTIAL_KEY)
    return cred if isinstance(cred, Mapping) else None


def openai_model(config: Mapping[str, Any]) -> Any:
    from esl_controller.pipeline.providers.llm.openai_compat import OpenAICompatModel

    return OpenAICompatModel.from_config(config, _credential(config))


def custom_llm(config: Mapping[str, Any]) -> Any:
    from esl_controller.pipeline.providers.llm.custom_llm import CustomLLM

    return CustomLLM.from_config(config, _credential(config))


def openai_transcriber(config: Mapping[str, Any]) -> Any:
    from esl_controller.pipeline.providers.stt.openai_compat import OpenAITranscriber

    return OpenAITranscriber.from_config(config, _credential(config))


def deepgram_transcriber(config: Mapping[str, Any]) -> Any:
    from esl_controller.pipeline.providers.stt.deepgram import DeepgramTranscriber

    return DeepgramTranscriber.from_config(config, _credential(config))


def openai_voice(config: Mapping[str, Any]) -> Any:
    from esl_controller.pipeline.providers.tts.openai_compat import OpenAISpeech

    return OpenAISpeech.from_config(config, _credential(config))


def elevenlabs_voice(config: Mapping[str, Any]) -> Any:
    from esl_controller.pipeline.providers.tts.elevenlabs import ElevenLabsSpeech

    return ElevenLabsSpeech.from_config(config, _credential(config))


HOSTED_FACTORIES: dict[tuple[str, str], Factory] = {
    **{("llm", name): openai_model for name in LLM_OPENAI_COMPAT},
    ("llm", "custom-llm"): custom_llm,
    ("stt", "openai"): openai_transcriber,
    ("stt", "groq"): openai_transcriber,
    ("stt", "deepgram"): deepgram_transcriber,
    ("tts", "openai"): openai_voice,
    ("tts", "11labs"): elevenlabs_voice,
    ("tts", "elevenlabs"): elevenlabs_voice,
}

#: Vapi credential provider names that serve a block's provider (when they differ)
CREDENTIAL_PROVIDER = {"elevenlabs": "11labs"}


def register_hosted() -> None:
    """Register every hosted factory (called on import; safe to call again)."""
    for (kind, provider), factory in HOSTED_FACTORIES.items():
        registry.register(kind, provider)(factory)


def attach_credential(
    block: Mapping[str, Any] | None, credentials: Sequence[Mapping[str, Any]]
) -> dict[str, Any] | None:
    """``block`` with its credential under ``"credential"``: the one named by ``credentialId``, else the
    first whose ``provider`` matches the block's. Fallback blocks inside get theirs too."""
    if not block:
        return None
    out = dict(block)
    if not isinstance(out.get(CREDENTIAL_KEY), Mapping):
        wanted_id = out.get("credentialId")
        provider = str(out.get("provider") or "")
        provider = CREDENTIAL_PROVIDER.get(provider, provider)
        match = next((c for c in credentials if wanted_id and c.get("id") == wanted_id), None)
        if match is None:
            match = next((c for c in credentials if c.get("provider") == provider), None)
        if match is not None:
            out[CREDENTIAL_KEY] = dict(match)
    for key, inner in _fallback_lists(out):
        inner[key] = [attach_credential(b, credentials) for b in inner.get(key) or []]
    return out


def _fallback_lists(block: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(block.get("fallbackModels"), list):
        found.append(("fallbackModels", block))
    plan = block.get("fallbackPlan")
    if isinstance(plan, Mapping):
        plan = dict(plan)
        block["fallbackPlan"] = plan
        for key in ("voices", "transcribers"):
            if isinstance(plan.get(key), list):
                found.append((key, plan))
    return found


def fallback_blocks(kind: str, block: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The fallback blocks of a model/voice/transcriber block, in order."""
    if kind == "llm":
        items = block.get("fallbackModels") or []
    else:
        plan = block.get("fallbackPlan")
        items = []
        if isinstance(plan, Mapping):
            items = plan.get("voices" if kind == "tts" else "transcribers") or []
    return [b for b in items if isinstance(b, Mapping) and b.get("provider")]


def build_with_fallbacks(kind: str, block: Mapping[str, Any] | None) -> Any:
    """The provider for ``block`` (via the registry), wrapped with its fallbacks when it has any."""
    from esl_controller.pipeline.providers import fallback

    primary = registry.build(kind, block)
    extra = [registry.build(kind, b) for b in fallback_blocks(kind, block or {})]
    if not extra:
        return primary
    chain = [primary, *extra]
    if kind == "llm":
        return fallback.FallbackChatModel(chain)
    if kind == "tts":
        return fallback.FallbackSynthesizer(chain)
    if all(hasattr(p, "open_stream") for p in chain):
        return fallback.FallbackStreamingTranscriber(chain)
    if all(hasattr(p, "transcribe") for p in chain):
        return fallback.FallbackTranscriber(chain)
    log.warning("transcriber fallbacks mix streaming and utterance engines; using the primary only")
    return primary


register_hosted()
