"""Codec round-trips, resampling across chunks, stereo split and the frame chunker."""

import math
import struct

import pytest
from audio_fixtures import speech

from esl_controller.media import codecs


def tone(freq: float, seconds: float, rate: int, amp: int = 8000) -> bytes:
    n = int(seconds * rate)
    return struct.pack(
        f"<{n}h", *(int(amp * math.sin(2 * math.pi * freq * i / rate)) for i in range(n))
    )


def samples(pcm: bytes) -> tuple[int, ...]:
    return struct.unpack(f"<{len(pcm) // 2}h", pcm)


def max_abs_error(a: bytes, b: bytes) -> int:
    return max(abs(x - y) for x, y in zip(samples(a), samples(b), strict=True))


def test_l16_is_little_endian_and_swap_round_trips():
    pcm = struct.pack("<3h", 1, -2, 0x1234)
    assert pcm[:2] == b"\x01\x00"
    swapped = codecs.l16_swap(pcm)
    assert swapped == struct.pack(">3h", 1, -2, 0x1234)
    assert codecs.l16_swap(swapped) == pcm
    with pytest.raises(ValueError):
        codecs.l16_swap(b"\x00\x01\x02")


@pytest.mark.parametrize(
    "encode,decode",
    [(codecs.ulaw_encode, codecs.ulaw_decode), (codecs.alaw_encode, codecs.alaw_decode)],
)
def test_g711_round_trip_on_speech(encode, decode):
    pcm = speech("Testing the telephone codecs.", 8000)
    coded = encode(pcm)
    assert len(coded) == len(pcm) // 2
    back = decode(coded)
    assert len(back) == len(pcm)
    # G.711 is logarithmic: error grows with amplitude but stays within ~1/16 of full scale.
    assert max_abs_error(pcm, back) < 2048
    assert codecs.rms(back) == pytest.approx(codecs.rms(pcm), rel=0.05)
    # Known code points: silence encodes to 0xFF (µ-law) / 0xD5 (A-law).
    assert encode(b"\x00\x00") in (b"\xff", b"\xd5")


def test_resampler_chunked_equals_whole_and_keeps_the_tone():
    pcm = tone(440, 1.0, 8000)
    whole = codecs.resample(pcm, 8000, 16000)
    r = codecs.Resampler(8000, 16000)
    # Odd chunk sizes, including ones that split a sample in half.
    out = b""
    pos = 0
    for size in [1, 3, 160, 7, 321, 999, 5]:
        out += r.process(pcm[pos : pos + size])
        pos += size
    out += r.process(pcm[pos:])
    assert out == whole
    assert abs(len(out) - 2 * len(pcm)) <= 4
    back = codecs.resample(out, 16000, 8000)
    assert codecs.rms(back) == pytest.approx(codecs.rms(pcm), rel=0.05)


def test_resampler_same_rate_is_identity():
    pcm = tone(300, 0.1, 16000)
    assert codecs.Resampler(16000, 16000).process(pcm) == pcm


def test_stereo_split_and_interleave():
    left = tone(300, 0.2, 8000)
    right = tone(700, 0.1, 8000, amp=3000)
    inter = codecs.stereo_interleave(left, right)
    assert len(inter) == 2 * len(left)
    l2, r2 = codecs.stereo_split(inter)
    assert l2 == left
    assert r2 == right + bytes(len(left) - len(right))  # the shorter side padded with silence
    with pytest.raises(ValueError):
        codecs.stereo_split(b"\x00\x00")


def test_mix_saturates_and_pads():
    loud = struct.pack("<2h", 30000, -30000)
    mixed = codecs.mix(loud, loud + loud)
    assert samples(mixed) == (32767, -32768, 30000, -30000)


def test_frame_chunker_any_chunks_in_fixed_frames_out():
    pcm = tone(200, 0.5, 16000)  # 16000 bytes = 25 frames of 640
    chunker = codecs.FrameChunker(16000)
    assert chunker.frame_size == 640
    frames = []
    for i in range(0, len(pcm), 333):
        frames += chunker.push(pcm[i : i + 333])
    assert all(len(f) == 640 for f in frames)
    assert len(frames) == 25
    assert b"".join(frames) == pcm
    assert chunker.pending == 0 and chunker.flush() is None
    chunker.push(b"\x01\x00" * 10)
    assert chunker.pending == 20
    last = chunker.flush()
    assert last is not None and len(last) == 640 and last[:20] == b"\x01\x00" * 10


def test_frame_sizes_and_wav_round_trip():
    assert codecs.frame_bytes(8000) == 320
    assert codecs.frame_bytes(16000, channels=2) == 1280
    with pytest.raises(ValueError):
        codecs.frame_bytes(22050, 10)  # 220.5 samples
    pcm = speech("Wave file.", 8000)
    wav = codecs.wav_read(codecs.wav_bytes(pcm, 8000))
    assert (wav.pcm, wav.sample_rate, wav.channels) == (pcm, 8000, 1)
    assert codecs.duration_seconds(len(pcm), 8000) == pytest.approx(len(pcm) / 16000)
