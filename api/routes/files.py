"""/file: multipart uploads streamed into the content-addressed blob store (api-compat.md §7).

``POST /file`` never holds an upload in memory: the body is decoded with werkzeug's sans-I/O multipart decoder
chunk by chunk and the ``file`` part is written straight to a temporary blob, hashed and counted; the blob is
renamed into place only once the whole form has been read and checked. ``GET /file/{id}/content`` serves the
bytes with ETag and Range support.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, current_app, jsonify, request, send_file
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import parse_options_header
from werkzeug.sansio.multipart import Data, Epilogue, Field, File, MultipartDecoder, NeedData

from api.crud import ResourceSpec, get_row, register_crud, services, stamps
from api.errors import ApiError
from api.filters import MAX_LIMIT, apply_list_query, parse_list_query
from api.openapi import OperationDoc, document
from api.schemas.file import (
    METADATA_MAX_BYTES,
    FileResponse,
    FileUpdateBody,
    FileUploadForm,
    choose_mimetype,
    clean_original_name,
    parse_metadata,
    parse_purpose,
    sanitize_filename,
)
from esl_controller.db.models import File as FileRow
from esl_controller.storage import BlobStore, BlobWriter, TooLarge, files_root

log = logging.getLogger("esl_controller.api.files")

bp = Blueprint("files", __name__)

CHUNK = 64 * 1024
#: room in a request body for boundaries, part headers, ``purpose`` and ``metadata`` beyond the file itself
FORM_OVERHEAD = METADATA_MAX_BYTES + 16 * 1024
MAX_PARTS = 8
SNIFF_BYTES = 512
TEXT_FIELDS = ("purpose", "metadata")


def blob_store() -> BlobStore:
    """The app's blob store under ``<data_dir>/files`` (created once per app)."""
    store = current_app.extensions.get("esl_controller.blobs")
    if store is None:
        store = BlobStore(files_root(services().settings.data_dir))
        current_app.extensions["esl_controller.blobs"] = store
    return store


@dataclass
class _Form:
    """What the multipart decoder has delivered so far."""

    store: BlobStore
    max_bytes: int
    writer: BlobWriter | None = None
    filename: str | None = None
    declared_type: str | None = None
    head: bytearray = field(default_factory=bytearray)
    fields: dict[str, bytearray] = field(default_factory=dict)
    current: str | None = None

    def start_part(self, event: Field | File) -> None:
        name = event.name
        if name == "file":
            if self.writer is not None:
                raise ApiError(400, "only one file part is allowed")
            self.writer = self.store.writer(self.max_bytes)
            self.filename = event.filename if isinstance(event, File) else None
            self.declared_type = event.headers.get("Content-Type")
        elif name in TEXT_FIELDS:
            if name in self.fields:
                raise ApiError(400, f"{name} was sent more than once")
            self.fields[name] = bytearray()
        else:
            raise ApiError(400, f"property {name} should not exist")
        self.current = name

    def data(self, chunk: bytes) -> None:
        if self.current == "file":
            assert self.writer is not None
            self.writer.write(chunk)  # raises TooLarge past the limit
            if len(self.head) < SNIFF_BYTES:
                self.head.extend(chunk[: SNIFF_BYTES - len(self.head)])
        elif self.current is not None:
            buf = self.fields[self.current]
            buf.extend(chunk)
            if len(buf) > METADATA_MAX_BYTES:
                raise ApiError(413, f"{self.current} larger than {METADATA_MAX_BYTES} bytes")

    def drain(self, decoder: MultipartDecoder) -> bool:
        """Handle every event the decoder has ready; True once the closing boundary was seen."""
        while True:
            event = decoder.next_event()
            if isinstance(event, NeedData):
                return False
            if isinstance(event, Epilogue):
                return True
            if isinstance(event, (Field, File)):
                self.start_part(event)
            elif isinstance(event, Data):
                self.data(event.data)

    def text(self, name: str) -> str | None:
        raw = self.fields.get(name)
        if raw is None:
            return None
        try:
            return bytes(raw).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ApiError(400, f"{name} must be UTF-8 text") from exc


def _receive(form: _Form, boundary: bytes) -> None:
    decoder = MultipartDecoder(
        boundary, max_form_memory_size=CHUNK + FORM_OVERHEAD, max_parts=MAX_PARTS
    )
    stream = request.stream  # bounded by Content-Length, or by MAX_CONTENT_LENGTH when chunked
    finished = False
    while not finished:
        chunk = stream.read(CHUNK)
        try:
            decoder.receive_data(chunk or None)
            finished = form.drain(decoder)
        except RequestEntityTooLarge as exc:
            raise ApiError(
                400, "malformed multipart body: too many parts or oversized part headers"
            ) from exc
        except (ValueError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"malformed multipart body: {exc}") from exc
        if not chunk and not finished:
            raise ApiError(400, "malformed multipart body: it ends before the closing boundary")


def _multipart_boundary() -> bytes:
    mimetype, options = parse_options_header(request.headers.get("Content-Type", ""))
    if mimetype.lower() != "multipart/form-data":
        raise ApiError(415, "Content-Type must be multipart/form-data")
    boundary = options.get("boundary", "")
    if not boundary or len(boundary) > 200 or not boundary.isascii():
        raise ApiError(400, "multipart/form-data needs a boundary parameter")
    return boundary.encode("ascii")


@bp.post("/file")
def upload():
    limit = services().settings.http.max_file_bytes
    boundary = _multipart_boundary()
    length = request.content_length
    if length is not None and length > limit + FORM_OVERHEAD:
        # refused before a single byte of the body is read
        raise ApiError(413, f"file larger than {limit} bytes")
    store = blob_store()
    form = _Form(store, limit)
    try:
        _receive(form, boundary)
        if form.writer is None:
            raise ApiError(400, "file is required")
        try:
            purpose = parse_purpose(form.text("purpose"))
            metadata = parse_metadata(form.text("metadata"))
        except ValueError as exc:
            raise ApiError(400, str(exc)) from exc
        sha, size = form.writer.commit()
    except TooLarge as exc:
        raise ApiError(413, f"file larger than {limit} bytes") from exc
    finally:
        if form.writer is not None:
            form.writer.abort()  # no-op after a commit
    row = FileRow.create(
        org_id=services().settings.org_id,
        name=sanitize_filename(form.filename),
        original_name=clean_original_name(form.filename),
        bytes=size,
        mimetype=choose_mimetype(form.declared_type, form.filename, bytes(form.head)),
        purpose=purpose,
        status="done",
        sha256=sha,
        data={"metadata": metadata} if metadata is not None else {},
    )
    log.info("stored file %s (%d bytes, sha256 %s)", row.id, size, sha[:12])
    return jsonify(to_wire(row)), 201


def to_wire(row: FileRow) -> dict[str, Any]:
    key = blob_store().key(row.sha256)
    out: dict[str, Any] = {
        "id": row.id,
        "orgId": row.org_id,
        "object": "file",
        "status": row.status,
        "name": row.name,
        "originalName": row.original_name,
        "bytes": row.bytes,
        "mimetype": row.mimetype,
        "purpose": row.purpose,
        "url": f"{services().settings.public_url}/file/{row.id}/content",
        "key": key,
        "path": f"files/{key}",
        "metadata": (row.data or {}).get("metadata"),
    }
    out.update(stamps(row))
    return out


@bp.get("/file")
def list_files():
    """List files, newest first; ``purpose`` filters (``limit`` and date bounds are accepted too)."""
    lq = parse_list_query(request.args, default_limit=MAX_LIMIT)
    query = FileRow.select()
    purpose = request.args.get("purpose")
    if purpose:
        query = query.where(FileRow.purpose == purpose)
    return jsonify([to_wire(r) for r in apply_list_query(query, FileRow, lq)])


def on_update(row: FileRow, body: dict[str, Any]) -> dict[str, Any]:
    return {"name": sanitize_filename(body["name"])}


def after_delete(row: FileRow) -> None:
    """Remove the blob when no other file row holds the same content."""
    others = FileRow.select().where(FileRow.sha256 == row.sha256).count()
    if others == 0:
        blob_store().delete(row.sha256)


SPEC = ResourceSpec(
    name="File",
    path="/file",
    model=FileRow,
    create_schema=FileUpdateBody,
    update_schema=FileUpdateBody,
    response_schema=FileResponse,
    on_update=on_update,
    to_wire=to_wire,
    after_delete=after_delete,
    methods=("get", "update", "delete"),
)
register_crud(bp, SPEC)


@bp.get("/file/<id>/content")
def content(id: str):
    """The file's bytes (ETag = SHA-256; conditional and Range requests supported)."""
    row = get_row(SPEC, id)
    path = blob_store().path(row.sha256)
    if not path.is_file():
        log.warning("file %s: blob %s is missing", row.id, row.sha256[:12])
        raise ApiError(404, "File content not found")
    resp = send_file(
        path,
        mimetype=row.mimetype or "application/octet-stream",
        as_attachment=True,
        download_name=row.name or "file",
        conditional=True,
        etag=row.sha256,
        max_age=None,
    )
    # the stored type came from the client: never let a browser render it in our origin
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return resp


document(
    "/file",
    "POST",
    OperationDoc(
        "Upload File", "File", FileUploadForm, FileResponse, 201, content_type="multipart/form-data"
    ),
)
document(
    "/file",
    "GET",
    OperationDoc(
        "List Files", "File", None, FileResponse, list_response=True, query=("purpose", "limit")
    ),
)
