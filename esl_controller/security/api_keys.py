"""API keys: random, prefixed ``esk_``, stored only as a SHA-256 hash and compared in constant time."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime

from esl_controller.db.fields import utcnow
from esl_controller.db.models import ApiKey

KEY_PREFIX = "esk_"


@dataclass(frozen=True)
class NewKey:
    id: str
    name: str
    prefix: str
    key: str  # shown once
    created_at: datetime


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def generate_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def create_key(name: str, org_id: str) -> NewKey:
    key = generate_key()
    row = ApiKey.create(name=name, org_id=org_id, prefix=key[:12], key_hash=hash_key(key))
    return NewKey(row.id, row.name, row.prefix, key, row.created_at)


def revoke_key(key_id_or_prefix: str) -> int:
    """Revoke by id or by the shown prefix; returns how many keys were revoked."""
    now = utcnow()
    return (
        ApiKey.update(revoked_at=now, updated_at=now)
        .where(
            ((ApiKey.id == key_id_or_prefix) | (ApiKey.prefix == key_id_or_prefix))
            & ApiKey.revoked_at.is_null()
        )
        .execute()
    )


def list_keys() -> list[ApiKey]:
    return list(ApiKey.select().order_by(ApiKey.created_at.desc()))


def verify_key(presented: str) -> ApiKey | None:
    """The active key matching ``presented``, or None. The lookup is by hash (an index probe); the final
    comparison is constant time so the response time does not reveal how much of a hash matched."""
    if not presented or len(presented) > 256:
        return None
    digest = hash_key(presented)
    row = ApiKey.get_or_none(ApiKey.key_hash == digest)
    if row is None or row.revoked_at is not None:
        return None
    if not hmac.compare_digest(row.key_hash, digest):
        return None
    return row
