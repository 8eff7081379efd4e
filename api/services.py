"""What the API needs from the rest of the process, built once and kept in ``app.extensions``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from esl_controller.config import Settings
from esl_controller.security.secrets_box import SecretBox, load_or_create_key
from esl_controller.security.supabase_jwt import SupabaseVerifier


@dataclass
class ApiServices:
    settings: Settings
    secret_box: SecretBox
    supabase: SupabaseVerifier | None = None
    #: the controller's narrow call service (esl_controller.services), when the controller runs here
    calls: Any = None
    #: webhook delivery settings (``DeliverySettings``) and the call-message emitter, when built by ``serve``
    webhook_delivery: Any = None
    emitter: Any = None
    #: named readiness checks added by other parts: name -> callable returning (ok, detail)
    readiness: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiServices:
        key = load_or_create_key(settings.secrets.key, settings.secret_key_path)
        supabase = (
            SupabaseVerifier(settings.auth.supabase) if settings.auth.supabase.enabled else None
        )
        return cls(settings=settings, secret_box=SecretBox(key), supabase=supabase)
