"""ElevenLabs streaming text-to-speech (Vapi voice provider ``11labs``).

``POST {base}/v1/text-to-speech/{voiceId}/stream?output_format=pcm_<rate>`` with header ``xi-api-key`` and
body ``{text, model_id, voice_settings: {stability, similarity_boost[, style, speed]}}``; the answer is raw
s16le mono PCM, streamed. The output format matching the call's rate is asked for (8, 16, 22.05, 24 kHz),
anything else is resampled from the next rate up. Voice config::

    {"provider": "11labs", "voiceId": "21m00Tcm4TlvDq8ikWAM", "model": "eleven_flash_v2_5",
     "stability": 0.5, "similarityBoost": 0.75, "cachingEnabled": true}

The credential's ``apiKey`` is the ``xi-api-key``; its ``apiUrl`` (or the block's ``url``) overrides the host.
Caching, retries and error mapping come from :class:`~.openai_compat.HttpSynthesizer`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from esl_controller.pipeline.providers import http
from esl_controller.pipeline.providers.tts.openai_compat import HttpSynthesizer

DEFAULT_BASE_URL = "https://api.elevenlabs.io"
DEFAULT_MODEL = "eleven_flash_v2_5"
PCM_RATES = (8000, 16000, 22050, 24000)


def output_rate(sample_rate: int) -> int:
    """The ElevenLabs PCM rate to ask for: the same rate when offered, else the next one up (or 24 kHz)."""
    if sample_rate in PCM_RATES:
        return sample_rate
    return next((r for r in PCM_RATES if r >= sample_rate), PCM_RATES[-1])


class ElevenLabsSpeech(HttpSynthesizer):
    name = "11labs"

    def __init__(
        self,
        voice_id: str,
        model: str = DEFAULT_MODEL,
        *,
        api_key: str = "",
        base_url: str = DEFAULT_BASE_URL,
        stability: float | None = None,
        similarity_boost: float | None = None,
        style: float | None = None,
        speed: float | None = None,
        **kw: Any,
    ) -> None:
        if not voice_id:
            raise ValueError("11labs needs a voiceId")
        headers = {"xi-api-key": api_key} if api_key else {}
        self.settings: dict[str, float] = {}
        for key, value in (
            ("stability", stability),
            ("similarity_boost", similarity_boost),
            ("style", style),
            ("speed", speed),
        ):
            if value is not None:
                self.settings[key] = float(value)
        super().__init__(voice_id, model, base_url=base_url, headers=headers, **kw)

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], credential: Mapping[str, Any] | None = None
    ) -> ElevenLabsSpeech:
        cred = credential or config.get("credential") or {}
        return cls(
            str(config.get("voiceId") or ""),
            str(config.get("model") or DEFAULT_MODEL),
            api_key=str(cred.get("apiKey") or ""),
            base_url=str(config.get("url") or cred.get("apiUrl") or DEFAULT_BASE_URL),
            stability=config.get("stability"),
            similarity_boost=config.get("similarityBoost"),
            style=config.get("style"),
            speed=config.get("speed"),
            policy=http.HttpPolicy.from_config(config),
            caching=config.get("cachingEnabled", True) is not False,
        )

    def source_rate(self, sample_rate: int) -> int:
        return output_rate(sample_rate)

    def build_request(self, text: str, source_rate: int, timeout: Any) -> Any:
        body: dict[str, Any] = {"text": text, "model_id": self.model}
        if self.settings:
            body["voice_settings"] = dict(self.settings)
        url = f"{self.base_url}/v1/text-to-speech/{quote(self.voice_id, safe='')}/stream"
        return self._client.build_request(
            "POST",
            url,
            params={"output_format": f"pcm_{source_rate}"},
            json=body,
            headers={"Accept": "audio/pcm"},
            timeout=timeout,
        )


# registers the hosted factories when the registry discovers this module
from esl_controller.pipeline.providers import hosted as _hosted  # noqa: E402, F401
