"""Encryption at rest for credential secrets (Fernet from ``cryptography``), and redaction for responses."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken

log = logging.getLogger("esl_controller.security")


class SecretBoxError(RuntimeError):
    pass


def load_or_create_key(key: str, key_file: Path) -> bytes:
    """The configured key, or the key in ``key_file``, created with mode 0600 on first use."""
    if key:
        raw = key.encode("ascii")
    elif key_file.exists():
        raw = key_file.read_bytes().strip()
    else:
        key_file.parent.mkdir(parents=True, exist_ok=True)
        raw = Fernet.generate_key()
        fd = os.open(str(key_file), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(raw + b"\n")
        log.info("generated a new secret key file (mode 0600)")
    try:
        Fernet(raw)
    except ValueError as exc:
        raise SecretBoxError("secrets.key is not a valid 32-byte urlsafe-base64 key") from exc
    return raw


class SecretBox:
    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def seal(self, secrets: dict[str, Any]) -> str:
        return self._fernet.encrypt(json.dumps(secrets).encode("utf-8")).decode("ascii")

    def open(self, token: str) -> dict[str, Any]:
        try:
            return json.loads(self._fernet.decrypt(token.encode("ascii")))
        except InvalidToken as exc:
            raise SecretBoxError(
                "credential secret cannot be decrypted with the configured key"
            ) from exc


def hint(value: str) -> str:
    """A safe hint of a secret: its last 4 characters when it is long enough, else nothing."""
    if not isinstance(value, str) or len(value) < 12:
        return "****"
    return "****" + value[-4:]
