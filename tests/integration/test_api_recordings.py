"""Recording downloads: mono and stereo WAVs with Range support; 404 without a recording."""

import io
import wave

from esl_controller.db.models import Artifact, Call


def wav_bytes(channels: int, frames: int = 1600) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(bytes(range(256)) * (frames * 2 * channels // 256))
    return buf.getvalue()


def test_recordings(client, database, settings, tmp_path):
    from api.routes.recordings import recording_path

    with database.connection_context():
        call = Call.create(
            org_id="o", type="webCall", status="ended", ended_reason="customer-ended-call"
        )
        bare = Call.create(
            org_id="o", type="webCall", status="ended", ended_reason="customer-ended-call"
        )
        stereo = tmp_path / "elsewhere.wav"
        stereo.write_bytes(wav_bytes(2))
        Artifact.create(
            org_id="o",
            call=call.id,
            kind="recording-stereo",
            path=str(stereo),
            mimetype="audio/wav",
        )
    mono = recording_path(settings.data_path, call.id, "mono")
    mono.parent.mkdir(parents=True, exist_ok=True)
    mono.write_bytes(wav_bytes(1))

    r = client.get(f"/call/{call.id}/recording")
    assert r.status_code == 200 and r.mimetype == "audio/wav"
    with wave.open(io.BytesIO(r.data)) as w:
        assert w.getnchannels() == 1
    r = client.get(f"/call/{call.id}/stereo-recording")
    with wave.open(io.BytesIO(r.data)) as w:
        assert w.getnchannels() == 2
    part = client.get(f"/call/{call.id}/recording/stereo", headers={"Range": "bytes=0-43"})
    assert part.status_code == 206 and part.data == stereo.read_bytes()[:44]
    assert client.get(f"/call/{call.id}/mono-recording").data == mono.read_bytes()

    for path in (f"/call/{bare.id}/recording", f"/call/{bare.id}/recording/stereo"):
        r = client.get(path)
        assert r.status_code == 404 and r.get_json()["statusCode"] == 404
    assert client.get("/call/00000000-0000-4000-8000-000000000009/recording").status_code == 404
    assert client.get("/call/nope/recording").status_code == 400
