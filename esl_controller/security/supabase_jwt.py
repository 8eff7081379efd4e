"""Optional Supabase Auth: accept a Supabase access token (HS256 shared secret, or RS256/ES256 via JWKS)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import jwt

from esl_controller.config import SupabaseSettings

log = logging.getLogger("esl_controller.security")


@dataclass(frozen=True)
class Principal:
    subject: str
    kind: str  # "api-key" | "supabase"
    key_id: str | None = None
    claims: dict[str, Any] | None = None


class SupabaseVerifier:
    def __init__(self, settings: SupabaseSettings) -> None:
        self.settings = settings
        self._jwks: jwt.PyJWKSet | None = None
        self._jwks_client: jwt.PyJWKClient | None = None
        if settings.jwks_file:
            with open(settings.jwks_file, encoding="utf-8") as fh:
                self._jwks = jwt.PyJWKSet.from_dict(json.load(fh))
        elif settings.jwks_url:
            self._jwks_client = jwt.PyJWKClient(settings.jwks_url, cache_keys=True, timeout=5)

    def _key_for(self, token: str) -> tuple[Any, list[str]]:
        header = jwt.get_unverified_header(token)
        alg = header.get("alg")
        if alg == "HS256":
            if not self.settings.jwt_secret:
                raise jwt.InvalidTokenError("HS256 tokens are not accepted")
            return self.settings.jwt_secret, ["HS256"]
        if alg not in ("RS256", "ES256"):
            raise jwt.InvalidTokenError(f"algorithm {alg!r} not accepted")
        kid = header.get("kid")
        if self._jwks is not None:
            for k in self._jwks.keys:
                if kid is None or k.key_id == kid:
                    return k.key, [alg]
            raise jwt.InvalidTokenError("no JWKS key matches the token's kid")
        if self._jwks_client is not None:
            return self._jwks_client.get_signing_key_from_jwt(token).key, [alg]
        raise jwt.InvalidTokenError("asymmetric tokens are not accepted (no JWKS configured)")

    def verify(self, token: str) -> Principal | None:
        """The principal for a valid token, or None (reason logged at debug, never the token)."""
        try:
            key, algs = self._key_for(token)
            options = {"require": ["exp", "sub"]}
            claims = jwt.decode(
                token,
                key,
                algorithms=algs,
                audience=self.settings.audience or None,
                issuer=self.settings.issuer or None,
                leeway=self.settings.leeway,
                options=options,
            )
        except (jwt.PyJWTError, ValueError) as exc:
            log.debug("supabase token rejected: %s", type(exc).__name__)
            return None
        return Principal(subject=str(claims["sub"]), kind="supabase", claims=claims)
