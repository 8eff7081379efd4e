"""One logger tree (``esl_controller.*``), a JSON formatter, per-request/per-call context and secret masking.

Every module gets its logger with ``logging.getLogger("esl_controller.<area>")``. The context (request id,
call id) lives in context variables, which gevent keeps per greenlet.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
from collections.abc import Iterable
from datetime import datetime, timezone

ROOT = "esl_controller"
TRACE = 5
logging.addLevelName(TRACE, "TRACE")

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)
call_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("call_id", default=None)

_MASK = "***"
# Patterns for secrets that can appear in free text: ESL auth, bearer tokens, our API keys, key=value pairs.
_PATTERNS = [
    (re.compile(r"(?im)^(auth\s+)\S+"), r"\1" + _MASK),
    (re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]+"), r"\1" + _MASK),
    (re.compile(r"\besk_[A-Za-z0-9_-]{8,}"), "esk_" + _MASK),
    (
        re.compile(
            r"(?i)((?:api[_-]?key|password|passwd|secret|token|authorization|x-api-key|x-vapi-secret)"
            r"[\"']?\s*[:=]\s*[\"']?)([^\s\"',;}]+)"
        ),
        r"\1" + _MASK,
    ),
]


def get_logger(area: str) -> logging.Logger:
    """The logger for one area of the package, e.g. ``get_logger("api")``."""
    return logging.getLogger(f"{ROOT}.{area}" if area else ROOT)


def mask_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Mask known secret patterns and any literal secret values in ``text``."""
    for value in secrets:
        if value and len(value) >= 4:
            text = text.replace(value, _MASK)
    for pattern, repl in _PATTERNS:
        text = pattern.sub(repl, text)
    return text


class SecretMaskingFilter(logging.Filter):
    """Rewrites each record's message with secrets masked; also adds request/call context attributes."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = tuple(s for s in secrets if s)

    def add_secret(self, value: str) -> None:
        if value:
            self._secrets = (*self._secrets, value)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            message = str(record.msg)
        masked = mask_text(message, self._secrets)
        record.msg = masked
        record.args = None
        if record.exc_info and not record.exc_text:
            record.exc_text = mask_text(
                logging.Formatter().formatException(record.exc_info), self._secrets
            )
        record.request_id = getattr(record, "request_id", None) or request_id_var.get()
        record.call_id = getattr(record, "call_id", None) or call_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request/call ids, exception."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for attr in ("request_id", "call_id"):
            value = getattr(record, attr, None)
            if value:
                doc[attr.replace("_id", "Id")] = value
        if record.exc_info:
            doc["exception"] = record.exc_text or self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        ctx = []
        if getattr(record, "request_id", None):
            ctx.append(f"req={record.request_id}")
        if getattr(record, "call_id", None):
            ctx.append(f"call={record.call_id}")
        return f"{base} [{' '.join(ctx)}]" if ctx else base


_installed: logging.Handler | None = None
masking_filter = SecretMaskingFilter()


def setup_logging(level: str = "INFO", json_lines: bool = False, stream=None) -> logging.Handler:
    """Configure the package's logger tree once (idempotent: replaces the handler it installed)."""
    global _installed
    root = logging.getLogger(ROOT)
    if _installed is not None:
        root.removeHandler(_installed)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(masking_filter)
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(TRACE if level.upper() == "TRACE" else getattr(logging, level.upper()))
    root.propagate = False
    _installed = handler
    return handler
