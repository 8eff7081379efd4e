"""The lean client-frame parser against frames wsproto's client produces, cut at every offset."""

import pytest
from audio_fixtures import speech
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    Request,
    TextMessage,
)

from esl_controller.media import ws_lean
from esl_controller.media.ws_lean import BinaryData, ClientFrameParser, ControlFrame, TextData

SPEECH = speech("The caller says hello and asks about the weather tomorrow.", 16000)


def client_connection() -> WSConnection:
    cli, srv = WSConnection(ConnectionType.CLIENT), WSConnection(ConnectionType.SERVER)
    srv.receive_data(cli.send(Request(host="x", target="/fork/x")))
    next(srv.events())
    cli.receive_data(srv.send(AcceptConnection()))
    list(cli.events())
    return cli


def collect(events):
    """Messages out of lean events: ('binary', bytes) / ('text', str) / ('control', opcode)."""
    out, parts = [], []
    for ev in events:
        if isinstance(ev, ControlFrame):
            out.append(("control", ev.opcode, ev.raw))
            continue
        parts.append(ev.data)
        if ev.message_finished:
            kind = "binary" if isinstance(ev, BinaryData) else "text"
            joiner = b"" if kind == "binary" else ""
            out.append((kind, joiner.join(parts)))
            parts = []
    return out


def wire_and_expected():
    cli = client_connection()
    pcm = SPEECH[: 16000 * 2]  # 1 s of real speech
    wire = bytearray()
    expected = []
    for size in (640, 0, 1, 125, 126, 127, 65535, 65536, 70001, 641):
        chunk = (pcm * 3)[:size]
        wire += cli.send(BytesMessage(data=chunk))
        expected.append(("binary", chunk))
    wire += cli.send(TextMessage(data='{"callId":"c1","ünïcode":"€"}'))
    expected.append(("text", '{"callId":"c1","ünïcode":"€"}'))
    # fragmented binary with a ping in the middle, then fragmented text split inside a code point
    wire += cli.send(BytesMessage(data=pcm[:300], message_finished=False))
    wire += cli.send(Ping(payload=b"hi"))
    wire += cli.send(BytesMessage(data=pcm[300:1000], message_finished=True))
    wire += cli.send(TextMessage(data="a€", message_finished=False))
    wire += cli.send(TextMessage(data="b", message_finished=True))
    wire += cli.send(Pong(payload=b""))
    expected_tail = [("control", ws_lean.OP_PING), ("binary", pcm[:1000]), ("text", "a€b")]
    expected_tail.append(("control", ws_lean.OP_PONG))
    wire += cli.send(CloseConnection(code=1000, reason="bye"))
    expected_tail.append(("control", ws_lean.OP_CLOSE))
    return bytes(wire), expected, expected_tail


def normalise(messages):
    return [m[:2] for m in messages]


def test_whole_stream_in_one_feed():
    wire, expected, tail = wire_and_expected()
    got = collect(ClientFrameParser().feed(wire))
    assert normalise(got) == expected + tail


@pytest.mark.parametrize("step", [1, 2, 3, 5, 7, 640, 641, 4096])
def test_stream_fed_in_pieces(step):
    wire, expected, tail = wire_and_expected()
    parser = ClientFrameParser()
    events = []
    for i in range(0, len(wire), step):
        events += parser.feed(wire[i : i + step])
    assert normalise(collect(events)) == expected + tail


def test_cut_at_every_byte_offset():
    cli = client_connection()
    pcm = SPEECH[:2000]
    wire = (
        cli.send(BytesMessage(data=pcm[:640]))
        + cli.send(Ping(payload=b"p"))
        + cli.send(BytesMessage(data=pcm[:200]))
        + cli.send(TextMessage(data="€x"))
        + cli.send(BytesMessage(data=b""))
    )
    want = [("binary", pcm[:640]), ("control", 9), ("binary", pcm[:200]), ("text", "€x")]
    want.append(("binary", b""))
    for cut in range(len(wire) + 1):
        parser = ClientFrameParser()
        got = collect(parser.feed(wire[:cut]) + parser.feed(wire[cut:]))
        assert normalise(got) == want, cut


def test_control_frames_are_returned_whole_for_wsproto():
    cli = client_connection()
    raw = cli.send(Ping(payload=b"abc"))
    (event,) = ClientFrameParser().feed(raw)
    assert event == ControlFrame(ws_lean.OP_PING, raw)
    # the raw bytes mean the same to a wsproto server connection
    srv = WSConnection(ConnectionType.SERVER)
    c2 = WSConnection(ConnectionType.CLIENT)
    srv.receive_data(c2.send(Request(host="x", target="/")))
    next(srv.events())
    c2.receive_data(srv.send(AcceptConnection()))
    srv.receive_data(raw)
    assert [type(e) for e in srv.events()] == [Ping]


def test_frame_aligned_reads_match_byte_at_a_time():
    """Reads that start on frame boundaries take the whole-frame path; the events must not differ."""
    cli = client_connection()
    pcm = SPEECH[: 16000 * 2]
    frames = [cli.send(BytesMessage(data=pcm[i : i + 640])) for i in range(0, 16000, 640)]
    frames.append(cli.send(BytesMessage(data=b"")))
    frames.append(cli.send(TextMessage(data="after")))
    frames.append(cli.send(BytesMessage(data=pcm[:125])))
    frames.append(cli.send(BytesMessage(data=pcm[:126])))
    fast, slow = ClientFrameParser(), ClientFrameParser()
    got_fast, got_slow = [], []
    for i in range(0, len(frames), 3):  # 1-3 whole frames per read
        got_fast += fast.feed(b"".join(frames[i : i + 3]))
    wire = b"".join(frames)
    for i in range(len(wire)):
        got_slow += slow.feed(wire[i : i + 1])
    assert collect(got_fast) == collect(got_slow)
    assert collect(got_fast)[:3] == [("binary", pcm[:640]), ("binary", pcm[640:1280])] + [
        ("binary", pcm[1280:1920])
    ]
    assert fast.frames == slow.frames == len(frames)


@pytest.mark.parametrize("size", list(range(0, 21)) + [639, 640, 641, 642, 643])
@pytest.mark.parametrize("fn", [ws_lean.unmask, ws_lean.unmask_pure])
def test_unmask_every_tail_length(size, fn):
    data = bytes((i * 7 + 3) & 0xFF for i in range(size))
    key = b"\x9a\x01\xff\x42"
    for offset in range(8):
        want = bytes(b ^ key[(i + offset) % 4] for i, b in enumerate(data))
        for payload in (data, bytearray(data), memoryview(data)):
            assert fn(payload, key, offset) == want


def test_the_c_masking_is_used_when_installed():
    pytest.importorskip("websockets.speedups")
    assert ws_lean._unmask_whole is not ws_lean.unmask_pure


def test_unmask_offsets():
    data = bytes(range(13))
    key = b"\x01\x02\x04\x08"
    want = bytes(b ^ key[i % 4] for i, b in enumerate(data))
    assert ws_lean.unmask(data, key) == want
    assert ws_lean.unmask(data[:5], key) + ws_lean.unmask(data[5:], key, 5) == want
    assert ws_lean.unmask(b"", key) == b""


def frame(b0: int, payload: bytes, masked: bool = True, length_bytes: bytes | None = None):
    key = b"\x11\x22\x33\x44"
    n = len(payload)
    if length_bytes is None:
        length_bytes = bytes([n]) if n < 126 else bytes([126]) + n.to_bytes(2, "big")
    first = length_bytes[0] | (0x80 if masked else 0)
    head = bytes([b0, first]) + length_bytes[1:]
    return head + (key + ws_lean.unmask(payload, key) if masked else payload)


@pytest.mark.parametrize(
    "wire,code",
    [
        (frame(0x82, b"abc", masked=False), 1002),  # unmasked client frame
        (frame(0xC2, b"abc"), 1002),  # RSV1 without an extension
        (frame(0x83, b"abc"), 1002),  # reserved opcode
        (frame(0x80, b"abc"), 1002),  # continuation outside a message
        (frame(0x02, b"a") + frame(0x82, b"b"), 1002),  # new message inside a fragmented one
        (frame(0x09, b"p"), 1002),  # fragmented ping
        (frame(0x89, b"p" * 126), 1002),  # control payload over 125
        (frame(0x82, b"abc", length_bytes=bytes([126, 0, 3])), 1002),  # non-minimal length
        (frame(0x81, b"\xff\xfe"), 1007),  # invalid UTF-8
        # the same checks when the frame is long enough for the whole-frame fast path
        (frame(0x82, b"a" * 640, masked=False), 1002),
        (frame(0x82, b"a" * 100, length_bytes=bytes([126, 0, 100])), 1002),
        (frame(0x82, b"ok" * 320) + frame(0xC2, b"x" * 20), 1002),
        (frame(0x82, b"ok" * 320) + frame(0x80, b"x" * 20), 1002),
    ],
)
def test_protocol_violations(wire, code):
    with pytest.raises(ws_lean.ParseError) as info:
        ClientFrameParser().feed(wire)
    assert info.value.code == code


def test_text_message_size_cap():
    parser = ClientFrameParser(max_text_bytes=10)
    with pytest.raises(ws_lean.ParseError) as info:
        parser.feed(frame(0x81, b"x" * 11))
    assert info.value.code == 1009


def test_large_binary_frame_streams_without_buffering_everything():
    cli = client_connection()
    pcm = SPEECH[:100000]
    wire = cli.send(BytesMessage(data=pcm))
    parser = ClientFrameParser()
    events = parser.feed(wire[:50000])
    assert events and not events[-1].message_finished
    assert len(parser._buf) == 0  # payload handed out as it came
    events += parser.feed(wire[50000:])
    assert collect(events) == [("binary", pcm)]
    assert isinstance(events[0], BinaryData) and not isinstance(events[0], TextData)


def test_single_binary_takes_only_one_whole_audio_frame():
    pcm = speech("Seven thirty works for me.", 16000)[:640]
    whole = frame(0x82, pcm)
    parser = ClientFrameParser()
    assert parser.single_binary(whole) == pcm == ClientFrameParser().feed(whole)[0].data
    assert parser.frames == 1
    refused = [
        frame(0x81, b"x" * 200),  # text
        frame(0x02, pcm),  # a first fragment (no FIN)
        frame(0x82, pcm[:100]),  # short: a 7-bit length
        frame(0x82, pcm, masked=False),  # unmasked: feed refuses it
        frame(0x82, pcm, length_bytes=bytes([127]) + (640).to_bytes(8, "big")),  # 64-bit length
        whole[:-1],  # cut short
        whole + whole[:3],  # more than one frame
    ]
    for data in refused:
        assert parser.single_binary(data) is None, data[:4]
    # nothing is taken while something is pending: a cut frame, or a fragmented message
    parser.feed(whole[:100])
    assert parser.single_binary(whole) is None
    parser = ClientFrameParser()
    parser.feed(frame(0x02, pcm))
    assert parser.in_message and parser.single_binary(whole) is None
