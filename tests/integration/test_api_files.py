"""/file: multipart upload into the content-addressed store, listing, rename, delete, download with Range."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import random
import uuid
import wave

import pytest

LIMIT = 1000  # max_file_bytes for the small-limit client


def wav_bytes(seconds: float = 0.25, rate: int = 8000, seed: int = 7) -> bytes:
    """A real RIFF/WAVE file (16-bit mono, pseudo-random samples): any bytes would do, these are varied."""
    rng = random.Random(seed)
    frames = b"".join(
        rng.randrange(-8000, 8000).to_bytes(2, "little", signed=True)
        for _ in range(int(seconds * rate))
    )
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(frames)
    return buf.getvalue()


def multipart(parts, boundary: bytes = b"esl-test-boundary-42"):
    """Build a multipart/form-data body by hand: parts are (name, filename or None, content type or None, bytes)."""
    out = bytearray()
    for name, filename, ctype, body in parts:
        out += b"--" + boundary + b"\r\n"
        out += b'Content-Disposition: form-data; name="' + name + b'"'
        if filename is not None:
            out += b'; filename="' + filename + b'"'
        out += b"\r\n"
        if ctype:
            out += b"Content-Type: " + ctype + b"\r\n"
        out += b"\r\n" + body + b"\r\n"
    out += b"--" + boundary + b"--\r\n"
    return bytes(out), "multipart/form-data; boundary=" + boundary.decode()


def upload(client, content: bytes, filename: str = "hello.wav", ctype: str | None = None, **fields):
    data = {
        "file": (io.BytesIO(content), filename, ctype) if ctype else (io.BytesIO(content), filename)
    }
    data.update(fields)
    return client.post("/file", data=data, content_type="multipart/form-data")


def blobs_dir(settings):
    return settings.data_path / "files"


def stored_blobs(settings) -> list[str]:
    root = blobs_dir(settings)
    if not root.exists():
        return []
    return sorted(p.name for p in root.glob("??/*"))


def temp_leftovers(settings) -> list[str]:
    root = blobs_dir(settings)
    return [p.name for p in root.glob(".upload-*")] if root.exists() else []


@pytest.fixture
def small(settings, database, api_key):
    """A client for an app whose upload limit is LIMIT bytes."""
    from api import create_app

    small_settings = dataclasses.replace(
        settings, http=dataclasses.replace(settings.http, max_file_bytes=LIMIT)
    )
    app = create_app(small_settings)
    app.config["TESTING"] = True
    c = app.test_client()
    c.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {api_key}"
    return c


class ExplodingStream(io.RawIOBase):
    """A request body of ``size`` bytes (as far as seek/tell tell) that must never be read."""

    reads = 0

    def __init__(self, size: int):
        super().__init__()
        self._size = size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        self._pos = {0: offset, 1: self._pos + offset, 2: self._size + offset}[whence]
        return self._pos

    def tell(self) -> int:
        return self._pos

    def read(self, n: int = -1) -> bytes:
        type(self).reads += 1
        raise AssertionError("the body was read")

    def readinto(self, b) -> int:
        type(self).reads += 1
        raise AssertionError("the body was read")


# -- upload and download ----------------------------------------------------------------------------


def test_upload_round_trip(client, settings):
    content = wav_bytes()
    sha = hashlib.sha256(content).hexdigest()
    r = upload(
        client, content, "greeting.wav", "audio/wav", purpose="assistant", metadata='{"lang": "en"}'
    )
    assert r.status_code == 201, r.json
    body = r.json
    uuid.UUID(body["id"])
    assert body["object"] == "file"
    assert body["status"] == "done"
    assert body["name"] == "greeting.wav"
    assert body["originalName"] == "greeting.wav"
    assert body["bytes"] == len(content)
    assert body["mimetype"] == "audio/wav"
    assert body["purpose"] == "assistant"
    assert body["metadata"] == {"lang": "en"}
    assert body["url"] == f"{settings.public_url}/file/{body['id']}/content"
    assert body["key"] == f"{sha[:2]}/{sha}"
    assert body["path"] == f"files/{sha[:2]}/{sha}"
    for k in ("orgId", "createdAt", "updatedAt"):
        assert body[k]
    # no machine path leaks anywhere in the object
    assert str(settings.data_path) not in r.get_data(as_text=True)
    assert str(settings.data_path.resolve()) not in r.get_data(as_text=True)
    # the blob sits under its hash, holding exactly the uploaded bytes
    assert (blobs_dir(settings) / sha[:2] / sha).read_bytes() == content
    assert temp_leftovers(settings) == []

    assert client.get(f"/file/{body['id']}").json == body

    d = client.get(f"/file/{body['id']}/content")
    assert d.status_code == 200
    assert d.data == content
    assert d.headers["Content-Type"] == "audio/wav"
    assert d.headers["Content-Length"] == str(len(content))
    assert d.headers["ETag"] == f'"{sha}"'
    assert d.headers["Accept-Ranges"] == "bytes"
    assert d.headers["Content-Disposition"] == "attachment; filename=greeting.wav"
    assert d.headers["X-Content-Type-Options"] == "nosniff"


def test_sdk_shaped_upload_only_file_part(client):
    """SDK 3.0.0 sends just the file part with its filename and content type."""
    body, ctype = multipart([(b"file", b"notes.txt", b"text/plain", b"call me back at seven\n")])
    r = client.post("/file", data=body, content_type=ctype)
    assert r.status_code == 201, r.json
    assert r.json["purpose"] is None
    assert r.json["metadata"] is None
    assert r.json["mimetype"] == "text/plain"


@pytest.mark.parametrize(
    ("filename", "declared", "content", "expected"),
    [
        ("clip.wav", None, wav_bytes(0.05), "audio/x-wav"),  # guessed from the name
        ("clip", None, wav_bytes(0.05), "audio/wav"),  # sniffed from the bytes
        ("doc", "application/octet-stream", b"%PDF-1.4\n%...", "application/pdf"),
        ("blob", "not a type<script>", bytes(range(256)), "application/octet-stream"),
    ],
)
def test_mimetype_is_declared_guessed_or_sniffed(client, filename, declared, content, expected):
    parts = [(b"file", filename.encode(), declared.encode() if declared else None, content)]
    body, ctype = multipart(parts)
    r = client.post("/file", data=body, content_type=ctype)
    assert r.status_code == 201, r.json
    assert r.json["mimetype"] == expected


def test_range_and_conditional_requests(client):
    content = wav_bytes(0.5)
    n = len(content)
    fid = upload(client, content).json["id"]
    url = f"/file/{fid}/content"

    r = client.get(url, headers={"Range": "bytes=10-99"})
    assert r.status_code == 206
    assert r.data == content[10:100]
    assert r.headers["Content-Range"] == f"bytes 10-99/{n}"
    assert r.headers["Content-Length"] == "90"

    r = client.get(url, headers={"Range": "bytes=-16"})
    assert r.status_code == 206
    assert r.data == content[-16:]

    r = client.get(url, headers={"Range": f"bytes={n - 5}-"})
    assert r.status_code == 206
    assert r.data == content[-5:]

    r = client.get(url, headers={"Range": f"bytes={n + 10}-"})
    assert r.status_code == 416

    etag = client.get(url).headers["ETag"]
    r = client.get(url, headers={"If-None-Match": etag})
    assert r.status_code == 304
    assert r.data == b""

    r = client.head(url)
    assert r.status_code == 200
    assert r.headers["Content-Length"] == str(n)


# -- list, update, delete ---------------------------------------------------------------------------


def test_list_newest_first_with_purpose_filter(client):
    a = upload(client, b"first file", "a.txt", purpose="assistant").json
    b = upload(client, b"second file", "b.txt", purpose="knowledge-base-v2").json
    c = upload(client, b"third file", "c.txt").json
    listed = client.get("/file")
    assert listed.status_code == 200
    assert [f["id"] for f in listed.json] == [c["id"], b["id"], a["id"]]
    assert [f["id"] for f in client.get("/file?purpose=assistant").json] == [a["id"]]
    assert [f["id"] for f in client.get("/file?purpose=knowledge-base-v2").json] == [b["id"]]
    assert client.get("/file?purpose=composer-attachment").json == []
    assert [f["id"] for f in client.get("/file?limit=1").json] == [c["id"]]
    assert client.get("/file?limit=-1").status_code == 400


def test_patch_name_only(client):
    f = upload(client, b"patch me", "before.txt", purpose="assistant").json
    r = client.patch(f"/file/{f['id']}", json={"name": "after.txt"})
    assert r.status_code == 200, r.json
    assert r.json["name"] == "after.txt"
    assert r.json["originalName"] == "before.txt"
    assert r.json["purpose"] == "assistant"
    assert client.get(f"/file/{f['id']}").json["name"] == "after.txt"
    assert (
        client.get(f"/file/{f['id']}/content").headers["Content-Disposition"]
        == "attachment; filename=after.txt"
    )

    r = client.patch(f"/file/{f['id']}", json={"name": "x.txt", "purpose": "assistant"})
    assert r.status_code == 400
    assert r.json["message"] == ["property purpose should not exist"]
    r = client.patch(f"/file/{f['id']}", json={})
    assert r.status_code == 400
    r = client.patch(f"/file/{f['id']}", json={"name": "../../etc/shadow"})
    assert r.json["name"] == "shadow"
    assert client.get(f"/file/{f['id']}").json["name"] == "shadow"


def test_duplicate_content_shares_one_blob(client, settings):
    content = wav_bytes(0.1, seed=99)
    sha = hashlib.sha256(content).hexdigest()
    one = upload(client, content, "one.wav").json
    two = upload(client, content, "two.wav").json
    assert one["id"] != two["id"]
    assert one["key"] == two["key"]
    assert stored_blobs(settings) == [sha]

    r = client.delete(f"/file/{one['id']}")
    assert r.status_code == 200
    assert r.json["id"] == one["id"]
    assert r.json["name"] == "one.wav"
    assert client.get(f"/file/{one['id']}").status_code == 404
    assert client.get(f"/file/{one['id']}/content").status_code == 404
    # the other row still serves the shared content
    assert stored_blobs(settings) == [sha]
    assert client.get(f"/file/{two['id']}/content").data == content

    assert client.delete(f"/file/{two['id']}").status_code == 200
    assert stored_blobs(settings) == []


def test_missing_and_bad_ids(client):
    missing = str(uuid.uuid4())
    for method, path in (
        ("get", f"/file/{missing}"),
        ("get", f"/file/{missing}/content"),
        ("delete", f"/file/{missing}"),
    ):
        r = getattr(client, method)(path)
        assert r.status_code == 404
        assert r.json["statusCode"] == 404
    assert client.get("/file/not-a-uuid").status_code == 400
    assert client.get("/file/..%2F..%2Fetc/content").status_code in (400, 404)


def test_blob_missing_on_disk_is_a_404(client, settings):
    content = b"about to vanish"
    f = upload(client, content).json
    (blobs_dir(settings) / f["key"]).unlink()
    r = client.get(f"/file/{f['id']}/content")
    assert r.status_code == 404
    assert r.json["message"] == "File content not found"


def test_requires_auth(anon):
    assert anon.get("/file").status_code == 401
    assert anon.get(f"/file/{uuid.uuid4()}/content").status_code == 401
    body, ctype = multipart([(b"file", b"a.txt", None, b"x")])
    assert anon.post("/file", data=body, content_type=ctype).status_code == 401


# -- hostile names ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "name", "original"),
    [
        (b"../../etc/passwd", "passwd", "../../etc/passwd"),
        # backslashes arrive escaped inside the quoted-string
        (b"..\\\\..\\\\windows\\\\win.ini", "win.ini", "..\\..\\windows\\win.ini"),
        (b"evil\x00.txt", "evil.txt", "evil.txt"),
        (b"tab\there\x1b[31m.txt", "tabhere[31m.txt", "tabhere[31m.txt"),
        (b"..", "file", ".."),
        (b"", "file", None),
        ("na\u00efve \u201cq\u201d.txt".encode(), "na\u00efve \u201cq\u201d.txt", None),
    ],
)
def test_hostile_filenames_are_stored_safely(client, settings, tmp_path, raw, name, original):
    content = b"payload for " + raw
    body, ctype = multipart([(b"file", raw, b"text/plain", content)])
    r = client.post("/file", data=body, content_type=ctype)
    assert r.status_code == 201, r.json
    assert r.json["name"] == name
    if original is not None:
        assert r.json["originalName"] == original
    assert "\x00" not in (r.json["originalName"] or "")
    sha = hashlib.sha256(content).hexdigest()
    # stored only by hash, inside the data directory
    assert (blobs_dir(settings) / sha[:2] / sha).read_bytes() == content
    assert not (tmp_path / "etc").exists()
    assert not list(tmp_path.rglob("passwd"))
    d = client.get(f"/file/{r.json['id']}/content")
    assert d.data == content
    disposition = d.headers["Content-Disposition"]
    assert disposition.startswith("attachment; filename=")
    assert "\r" not in disposition and "\n" not in disposition and "/" not in disposition


def test_very_long_filename_is_truncated_keeping_the_extension(client):
    raw = ("a" * 5000 + ".wav").encode()
    body, ctype = multipart([(b"file", raw, None, wav_bytes(0.02))])
    r = client.post("/file", data=body, content_type=ctype)
    assert r.status_code == 201, r.json
    assert len(r.json["name"]) <= 200
    assert r.json["name"].endswith(".wav")
    assert len(r.json["originalName"]) == 255
    assert client.get(f"/file/{r.json['id']}").json["name"] == r.json["name"]


def test_non_ascii_name_downloads_with_rfc5987_filename(client):
    body, ctype = multipart([(b"file", "r\u00e9sum\u00e9.txt".encode(), None, b"cv")])
    fid = client.post("/file", data=body, content_type=ctype).json["id"]
    disposition = client.get(f"/file/{fid}/content").headers["Content-Disposition"]
    assert "filename*=UTF-8''r%C3%A9sum%C3%A9.txt" in disposition


# -- limits and bad requests ------------------------------------------------------------------------


def test_limit_is_counted_while_streaming(small, settings):
    r = upload(small, b"x" * (LIMIT + 1), "big.bin")
    assert r.status_code == 413
    assert r.json["statusCode"] == 413
    assert r.json["error"] in ("Request Entity Too Large", "Content Too Large")
    assert r.json["message"] == f"file larger than {LIMIT} bytes"
    assert stored_blobs(settings) == []
    assert temp_leftovers(settings) == []
    assert small.get("/file").json == []

    ok = upload(small, b"y" * LIMIT, "exact.bin")
    assert ok.status_code == 201
    assert ok.json["bytes"] == LIMIT


def test_oversized_content_length_is_refused_unread(small):
    ExplodingStream.reads = 0
    r = small.post(
        "/file",
        input_stream=ExplodingStream(500_000),
        content_type="multipart/form-data; boundary=abc",
    )
    assert r.status_code == 413
    assert r.json["statusCode"] == 413
    assert ExplodingStream.reads == 0


def test_chunked_upload_is_counted_too(small, settings):
    body, ctype = multipart([(b"file", b"big.bin", None, b"z" * (LIMIT * 5))])
    r = small.post(
        "/file",
        input_stream=io.BytesIO(body),
        content_type=ctype,
        environ_overrides={"HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input_terminated": True},
    )
    assert r.status_code == 413
    assert stored_blobs(settings) == []
    body, ctype = multipart([(b"file", b"fine.bin", None, b"z" * 10)])
    r = small.post(
        "/file",
        input_stream=io.BytesIO(body),
        content_type=ctype,
        environ_overrides={"HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input_terminated": True},
    )
    assert r.status_code == 201, r.json
    assert r.json["bytes"] == 10


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [
        ({"json": {"file": "aGVsbG8="}}, 415),
        ({"data": b"plain text", "content_type": "text/plain"}, 415),
        ({"data": b"", "content_type": "application/octet-stream"}, 415),
        ({"data": b"--x--\r\n", "content_type": "multipart/form-data"}, 400),  # no boundary
    ],
)
def test_wrong_content_types(client, kwargs, status):
    r = client.post("/file", **kwargs)
    assert r.status_code == status
    assert r.json["statusCode"] == status


def test_missing_file_part(client):
    body, ctype = multipart([(b"purpose", None, None, b"assistant")])
    r = client.post("/file", data=body, content_type=ctype)
    assert r.status_code == 400
    assert r.json["message"] == "file is required"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([(b"purpose", None, None, b"bogus")], "purpose must be one of"),
        ([(b"metadata", None, None, b"not json")], "metadata must be a JSON object"),
        ([(b"metadata", None, None, b"[1, 2]")], "metadata must be a JSON object"),
        ([(b"colour", None, None, b"blue")], "property colour should not exist"),
        ([(b"purpose", None, None, b"assistant")] * 2, "purpose was sent more than once"),
        ([(b"file", b"second.txt", None, b"again")], "only one file part"),
    ],
)
def test_bad_form_fields_store_nothing(client, settings, extra, message):
    parts = [(b"file", b"ok.txt", b"text/plain", b"content that must not be kept")] + extra
    body, ctype = multipart(parts)
    r = client.post("/file", data=body, content_type=ctype)
    assert r.status_code == 400
    assert message in str(r.json["message"])
    assert stored_blobs(settings) == []
    assert temp_leftovers(settings) == []
    assert client.get("/file").json == []


def test_truncated_body(client, settings):
    body, ctype = multipart([(b"file", b"cut.txt", None, b"0123456789" * 50)])
    r = client.post("/file", data=body[: len(body) // 2], content_type=ctype)
    assert r.status_code == 400
    assert "malformed multipart" in r.json["message"]
    assert stored_blobs(settings) == []
    assert temp_leftovers(settings) == []


def test_openapi_documents_the_upload(client):
    doc = client.get("/openapi.json")
    if doc.status_code != 200:
        pytest.skip("no /openapi.json route in this build")
    post = doc.json["paths"]["/file"]["post"]
    assert "multipart/form-data" in post["requestBody"]["content"]
    assert "/file/{id}/content" in doc.json["paths"]


# -- the official SDK over a real socket ------------------------------------------------------------


@pytest.fixture
def sdk(app, api_key):
    """``vapi.Vapi`` talking to the app served by gevent's WSGI server on an ephemeral loopback port."""
    vapi = pytest.importorskip("vapi")
    from gevent.pywsgi import WSGIServer

    server = WSGIServer(("127.0.0.1", 0), app, log=None, error_log=None)
    server.start()
    try:
        yield vapi.Vapi(
            token=api_key, base_url=f"http://127.0.0.1:{server.server_port}", timeout=10
        )
    finally:
        server.stop(timeout=5)


def test_sdk_round_trip(sdk):
    content = wav_bytes(0.2, seed=3)
    created = sdk.files.create(
        file=("greeting.wav", content, "audio/wav"), purpose="assistant", metadata='{"k": "v"}'
    )
    assert created.id
    assert created.object == "file"
    assert created.name == "greeting.wav"
    assert created.bytes == len(content)
    assert created.mimetype == "audio/wav"
    assert created.purpose == "assistant"
    assert created.metadata == {"k": "v"}
    plain = sdk.files.create(file=("notes.txt", b"call back at seven"))
    assert plain.purpose is None

    assert [f.id for f in sdk.files.list()] == [plain.id, created.id]
    assert [f.id for f in sdk.files.list(purpose="assistant")] == [created.id]
    assert sdk.files.get(created.id).original_name == "greeting.wav"
    assert sdk.files.update(created.id, name="hello.wav").name == "hello.wav"
    assert sdk.files.delete(created.id).id == created.id
    assert [f.id for f in sdk.files.list()] == [plain.id]
