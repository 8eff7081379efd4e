"""File bodies (api-compat.md §7) and the pure helpers that turn untrusted upload metadata into safe values.

Nothing here trusts the client: the file name is reduced to a display name that is safe in a
``Content-Disposition`` header and on any filesystem (it is never used as a path; blobs are stored by hash), and
the declared content type is kept only if it is well formed, otherwise guessed from the name or sniffed.
"""

from __future__ import annotations

import json
import mimetypes
import re
import unicodedata
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from api.schemas.common import Response, Strict

PURPOSES = ("assistant", "composer-attachment", "knowledge-base-v2")
NAME_MAX = 200  # the ``name`` column
ORIGINAL_NAME_MAX = 255  # the ``original_name`` column
FALLBACK_NAME = "file"
METADATA_MAX_BYTES = 64 * 1024

_MIME_RE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,63}$")
_UNSAFE_CHARS = re.compile(r'[<>:"|?*;\\/]')
_GENERIC_TYPES = ("application/octet-stream", "binary/octet-stream", "application/unknown")

# (prefix at offset, mimetype); checked in order
_MAGIC: tuple[tuple[int, bytes, str], ...] = (
    (0, b"%PDF-", "application/pdf"),
    (0, b"\x89PNG\r\n\x1a\n", "image/png"),
    (0, b"\xff\xd8\xff", "image/jpeg"),
    (0, b"GIF87a", "image/gif"),
    (0, b"GIF89a", "image/gif"),
    (0, b"ID3", "audio/mpeg"),
    (0, b"OggS", "audio/ogg"),
    (0, b"fLaC", "audio/flac"),
    (0, b"PK\x03\x04", "application/zip"),
    (0, b"\x1f\x8b", "application/gzip"),
)


def _strip_controls(text: str) -> str:
    return "".join(ch for ch in text if unicodedata.category(ch)[0] != "C")


def clean_original_name(raw: str | None) -> str | None:
    """The client's file name as data: control characters (NUL included) removed, length capped."""
    if raw is None:
        return None
    cleaned = _strip_controls(raw).strip()
    return cleaned[:ORIGINAL_NAME_MAX] or None


def sanitize_filename(raw: str | None) -> str:
    """A display/download name: last path component only, no control or shell/Windows-special characters,
    no leading dots, at most ``NAME_MAX`` characters with the extension kept. Never empty."""
    if not raw:
        return FALLBACK_NAME
    text = unicodedata.normalize("NFC", _strip_controls(raw))
    text = re.split(r"[/\\]", text)[-1]
    text = _UNSAFE_CHARS.sub("_", text)
    text = " ".join(text.split())  # collapse runs of whitespace
    text = text.lstrip(". ").rstrip(". ")
    if not text:
        return FALLBACK_NAME
    if len(text) > NAME_MAX:
        stem, dot, ext = text.rpartition(".")
        if dot and stem and 0 < len(ext) <= 16:
            text = stem[: NAME_MAX - len(ext) - 1].rstrip(". ") + "." + ext
        else:
            text = text[:NAME_MAX]
    return text


def sniff_mimetype(head: bytes) -> str | None:
    """A type from the first bytes of the content, for the common formats; None when unknown."""
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if head[4:8] == b"ftyp":
        return "video/mp4"
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return "audio/mpeg"
    for offset, magic, mime in _MAGIC:
        if head[offset : offset + len(magic)] == magic:
            return mime
    if head and b"\x00" not in head:
        try:
            head.decode("utf-8")
        except UnicodeDecodeError as exc:
            # a multi-byte character cut at the end of the sniffed window is still text
            if exc.start < len(head) - 3:
                return None
        stripped = head.lstrip()
        if stripped[:1] in (b"{", b"["):
            return "application/json"
        return "text/plain"
    return None


def choose_mimetype(declared: str | None, filename: str | None, head: bytes) -> str:
    """The declared type if well formed and specific, else a guess from the name, else a sniff."""
    if declared:
        base = declared.split(";", 1)[0].strip().lower()
        if _MIME_RE.match(base) and base not in _GENERIC_TYPES:
            return base
    if filename:
        guessed, _ = mimetypes.guess_type(filename, strict=False)
        if guessed and _MIME_RE.match(guessed.lower()):
            return guessed.lower()
    return sniff_mimetype(head) or "application/octet-stream"


def parse_purpose(raw: str | None) -> str | None:
    if raw is None or raw == "":
        return None
    if raw not in PURPOSES:
        raise ValueError(f"purpose must be one of {', '.join(PURPOSES)}")
    return raw


def parse_metadata(raw: str | None) -> dict[str, Any] | None:
    """``metadata`` arrives as a JSON-encoded string (api-compat.md §7); it must hold an object."""
    if raw is None or raw.strip() == "":
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f"metadata must be a JSON object string: {exc.msg}") from exc
    except RecursionError as exc:
        raise ValueError("metadata is nested too deeply") from exc
    if not isinstance(value, dict):
        raise ValueError("metadata must be a JSON object string")
    return value


class FileUpdateBody(Strict):
    """``PATCH /file/{id}`` takes ``{name}`` only."""

    name: Annotated[str, Field(min_length=1, max_length=ORIGINAL_NAME_MAX)]


class FileUploadForm(BaseModel):
    """Documentation of the ``multipart/form-data`` upload (parsed by hand, streamed to the blob store)."""

    model_config = ConfigDict(extra="forbid")
    file: bytes = Field(json_schema_extra={"format": "binary"})
    purpose: str | None = Field(default=None, json_schema_extra={"enum": list(PURPOSES)})
    metadata: str | None = Field(default=None, description="a JSON-encoded object")


class FileResponse(Response):
    object: str = "file"
    status: str = "done"
    name: str | None = None
    original_name: str | None = None
    bytes: int | None = None
    mimetype: str | None = None
    purpose: str | None = None
    url: str | None = None
    key: str | None = None
    path: str | None = None
    metadata: dict[str, Any] | None = None
