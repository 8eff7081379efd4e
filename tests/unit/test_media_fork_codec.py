"""The mod_audio_fork session codec against the message shapes in the protocol notes."""

import base64
import json

import pytest
from audio_fixtures import speech

from esl_controller.media import codecs, fork_codec
from esl_controller.media.fork_codec import (
    AudioFrame,
    ClientText,
    EndOfAudio,
    ForkStreamDecoder,
    Metadata,
)


def test_subprotocol_is_echoed():
    assert fork_codec.choose_subprotocol(["audio.drachtio.org"]) == "audio.drachtio.org"
    assert fork_codec.choose_subprotocol(["x", "audio.drachtio.org"]) == "audio.drachtio.org"
    assert fork_codec.choose_subprotocol(["custom.proto"]) == "custom.proto"
    assert fork_codec.choose_subprotocol([]) is None


def test_parse_target():
    t = fork_codec.parse_target("/fork/abc-123?rate=8k&mix=stereo")
    assert t == fork_codec.ForkTarget("abc-123", 8000, "stereo")
    assert fork_codec.parse_target("/fork") == fork_codec.ForkTarget(None, None, None)
    assert fork_codec.parse_target("/other/abc") is None
    assert fork_codec.parse_target("/forkx/abc") is None
    with pytest.raises(ValueError):
        fork_codec.parse_target("/fork/a?rate=11025")
    with pytest.raises(ValueError):
        fork_codec.parse_target("/fork/a?mix=quad")


def test_first_text_is_metadata_later_texts_are_client_text():
    dec = ForkStreamDecoder(8000)
    meta = '{"callId":"c1","sampleRate":8000}'
    assert dec.receive_text(meta) == [Metadata({"callId": "c1", "sampleRate": 8000}, meta)]
    assert dec.receive_text('{"a":1}{"b":2}') == [ClientText('{"a":1}{"b":2}')]
    assert fork_codec.metadata_call_id({"callId": "c1"}) == "c1"
    assert fork_codec.metadata_call_id("not json") is None
    assert fork_codec.parse_metadata("plain words") == "plain words"


def test_text_after_audio_is_not_metadata():
    dec = ForkStreamDecoder(8000)
    dec.receive_binary(bytes(320))
    assert dec.receive_text("{}") == [ClientText("{}")]


@pytest.mark.parametrize("rate", [8000, 16000])
def test_binary_frames_of_any_size_become_20ms_frames(rate):
    pcm = speech("Continuous audio in odd sized pieces.", rate)
    dec = ForkStreamDecoder(rate, "mono")
    out = []
    sizes = [rate // 25, 7 * 2, 3 * rate // 25, 1000, 2]  # merged packets and odd sizes
    pos = i = 0
    while pos < len(pcm):
        size = sizes[i % len(sizes)]
        out += dec.receive_binary(pcm[pos : pos + size])
        pos += size
        i += 1
    out += dec.flush()
    frames = [e for e in out if isinstance(e, AudioFrame)]
    size = codecs.frame_bytes(rate)
    assert all(len(f.caller) == size and f.assistant is None for f in frames)
    assert [f.index for f in frames] == list(range(len(frames)))
    assert frames[10].timestamp == pytest.approx(0.2)
    assert b"".join(f.caller for f in frames)[: len(pcm)] == pcm


def test_stereo_frames_are_split_caller_left_assistant_right():
    caller = speech("Caller on the left.", 16000)
    assistant = bytes(len(caller))
    dec = ForkStreamDecoder(16000, "stereo")
    frames = dec.receive_binary(codecs.stereo_interleave(caller, assistant))
    assert len(frames[0].caller) == 640 and len(frames[0].assistant) == 640
    assert b"".join(f.caller for f in frames) == caller[: len(frames) * 640]
    assert not any(any(f.assistant) for f in frames)


def test_zero_length_binary_is_end_of_audio():
    dec = ForkStreamDecoder(8000)
    assert dec.receive_binary(b"") == [EndOfAudio()]
    assert dec.ended


def test_play_audio_shape():
    pcm = speech("Hi.", 8000)
    msg = json.loads(fork_codec.play_audio(pcm, 8000, text="Hi."))
    assert msg["type"] == "playAudio"
    assert msg["data"]["audioContentType"] == "raw"
    assert msg["data"]["sampleRate"] == 8000
    assert msg["data"]["textContent"] == "Hi."
    assert base64.b64decode(msg["data"]["audioContent"]) == pcm
    wav = json.loads(fork_codec.play_audio(codecs.wav_bytes(pcm, 16000), 16000, "wav"))
    assert wav["data"]["audioContentType"] == "wav"
    with pytest.raises(ValueError):
        fork_codec.play_audio(pcm, 24000)  # .r24 is read as 24-bit samples: refuse
    with pytest.raises(ValueError):
        fork_codec.play_audio(pcm, 8000, "mp3")


def test_play_audio_size_limit():
    seconds = fork_codec.max_play_seconds(16000)
    assert 10 < seconds < 20
    fork_codec.play_audio(bytes(int(seconds * 16000) * 2), 16000)
    with pytest.raises(ValueError):
        fork_codec.play_audio(bytes(int(seconds * 16000 + 16000) * 2), 16000)


def test_control_message_shapes_are_compact_json():
    assert fork_codec.kill_audio() == '{"type":"killAudio"}'
    assert fork_codec.disconnect() == '{"type":"disconnect"}'
    assert fork_codec.disconnect({"r": 1}) == '{"type":"disconnect","data":{"r":1}}'
    assert fork_codec.transcription({"text": "hi"}) == (
        '{"type":"transcription","data":{"text":"hi"}}'
    )
    assert fork_codec.transfer({"to": "x"}) == '{"type":"transfer","data":{"to":"x"}}'
    assert fork_codec.error({"e": 1}) == '{"type":"error","data":{"e":1}}'
    assert fork_codec.json_message({"hello": 1}) == '{"hello":1}'


def test_whole_frame_is_receive_binary_of_one_frame():
    pcm = speech("Thank you very much.", 16000)[: 640 * 3]
    fast, slow = ForkStreamDecoder(16000), ForkStreamDecoder(16000)
    for i in range(3):
        chunk = pcm[i * 640 : (i + 1) * 640]
        assert fast.whole_frame(chunk) == slow.receive_binary(chunk)[0]
    assert fast.bytes_in == slow.bytes_in == 3 * 640
    # anything but exactly one mono frame with nothing held back goes the general way
    assert fast.whole_frame(pcm[:320]) is None
    assert ForkStreamDecoder(16000, mix="stereo").whole_frame(pcm[:640]) is None
    fast.receive_binary(pcm[:100])
    assert fast.whole_frame(pcm[:640]) is None
