"""The pure ESL parser and serializers, driven by the recorded fixture streams (byte-exact, from
the protocol notes, section 9) cut at every byte offset and fed byte by byte."""

from __future__ import annotations

from pathlib import Path

import pytest

from esl_controller.esl.protocol import (
    DISCONNECT_BODY,
    ApiResult,
    Event,
    FrameParser,
    ProtocolError,
    channel_data_from_reply,
    disconnect_notice,
    encode_event_plain,
    parse_event,
    parse_plain_event,
    serialize_api_response,
    serialize_channel_data_reply,
    serialize_command,
    serialize_disconnect_notice,
    serialize_event_json,
    serialize_event_plain,
    serialize_linger_notice,
    serialize_reply,
    serialize_sendmsg,
    url_encode,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "esl"
FS_STREAMS = sorted(p.name for p in FIXTURES.glob("fixture*.fs*.bin"))
CLIENT_STREAMS = sorted(p.name for p in FIXTURES.glob("fixture*.c.bin"))
UUID = "a7c1e3f0-5b2d-4c8e-9f01-23456789abcd"


def _parse_all(data: bytes, client: bool = False, chunks: list[bytes] | None = None):
    parser = FrameParser(client_frames=client)
    frames = []
    for chunk in chunks if chunks is not None else [data]:
        parser.feed(chunk)
        frames.extend(parser)
    parser.feed_eof()
    return frames


def _summary(frames):
    return [(f.command, f.items, f.body) for f in frames]


def test_fixture_files_are_present():
    assert len(FS_STREAMS) >= 6 and len(CLIENT_STREAMS) >= 5


@pytest.mark.parametrize("name", FS_STREAMS + CLIENT_STREAMS)
def test_stream_cut_at_every_offset_gives_the_same_frames(name):
    data = (FIXTURES / name).read_bytes()
    client = ".c." in name
    whole = _summary(_parse_all(data, client))
    assert whole
    for cut in range(1, len(data)):
        assert _summary(_parse_all(data, client, [data[:cut], data[cut:]])) == whole, cut


@pytest.mark.parametrize("name", FS_STREAMS + CLIENT_STREAMS)
def test_stream_fed_byte_by_byte(name):
    data = (FIXTURES / name).read_bytes()
    client = ".c." in name
    chunks = [data[i : i + 1] for i in range(len(data))]
    assert _summary(_parse_all(data, client, chunks)) == _summary(_parse_all(data, client))


def test_fixture1_inbound_session():
    frames = _parse_all((FIXTURES / "fixture1.fs.bin").read_bytes())
    types = [f.content_type for f in frames]
    assert types == [
        "auth/request",
        "command/reply",
        "command/reply",
        "api/response",
        "api/response",
        "command/reply",
        "text/event-plain",
        "command/reply",
        "text/disconnect-notice",
    ]
    assert frames[1].reply_text == "+OK accepted" and frames[1].ok
    # uuid_getvar has no trailing newline; the body is exactly Content-Length bytes
    assert frames[3].body == b"8d9f2c1e7b@203.0.113.10"
    assert ApiResult(frames[4].body_text).text == "-ERR No such channel!"
    assert frames[5].get("Job-UUID") == "d2f4a6b8-1c3e-4f5a-8b7c-9d0e1f2a3b4c"
    job = parse_event(frames[6])
    assert job.name == "BACKGROUND_JOB"
    assert job.get("Job-Owner-UUID") == "_undef_"
    assert job.get("Job-Command-Arg") == (
        "{origination_uuid=f0e1d2c3-b4a5-4968-8776-655443322110,ignore_early_media=true}"
        "sofia/gateway/byo_trunk/15557654321 &park()"
    )
    assert job.body == b"+OK f0e1d2c3-b4a5-4968-8776-655443322110\n"
    assert ApiResult(job.body_text).value == "f0e1d2c3-b4a5-4968-8776-655443322110"
    assert "Content-Length" not in job.headers  # the inner length is consumed, not a header
    assert frames[8].body == DISCONNECT_BODY


def test_fixture3_connect_reply_is_channel_data():
    frames = _parse_all((FIXTURES / "fixture3.fs.bin").read_bytes())
    reply = frames[0]
    assert reply.content_type == "command/reply"
    assert reply.reply_text == "+OK\n"
    data = channel_data_from_reply(reply)
    assert data.name == "CHANNEL_DATA"
    assert data.unique_id == UUID
    assert data.get("Channel-Caller-ID-Number") == "+15551230001"
    assert data.get("Channel-Name") == "sofia/external/+15551230001@203.0.113.10"
    assert data.variable("current_application_data") == "10.0.0.9:8084 async full"
    assert reply.get("Socket-Mode") == "async" and reply.get("Control") == "full"
    events = [parse_event(f) for f in frames if f.content_type == "text/event-plain"]
    assert [e.name for e in events] == [
        "CHANNEL_EXECUTE",
        "CHANNEL_ANSWER",
        "CHANNEL_EXECUTE_COMPLETE",
    ]
    assert events[2].get("Application-UUID") == "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
    assert events[2].get("Application-Response") == "_none_"


def test_fixture4_linger_notice_then_hangup_complete():
    frames = _parse_all((FIXTURES / "fixture4.fs.bin").read_bytes())
    linger = disconnect_notice(frames[1])
    assert linger.disposition == "linger" and linger.linger_time == "-1"
    assert linger.session_uuid == UUID
    complete = parse_event(frames[2])
    assert complete.get_all("Hangup-Cause") == ["NORMAL_CLEARING", "NORMAL_CLEARING"]
    assert complete.variable("billsec") == "154"
    final = disconnect_notice(frames[4])
    assert final.disposition == "disconnect" and final.body == DISCONNECT_BODY


def test_fixture5_custom_event_body_is_raw_json():
    frames = _parse_all((FIXTURES / "fixture5.fs.bin").read_bytes())
    play = parse_event(frames[2])
    assert play.subclass == "mod_audio_fork::play_audio"
    assert play.body.startswith(b'{"audioContentType":"raw"')
    assert play.body.endswith(b'_0.tmp.r16"}')
    assert b"%" not in play.body  # bodies are never decoded/encoded


def test_client_frames_from_fixture1():
    frames = _parse_all((FIXTURES / "fixture1.c.bin").read_bytes(), client=True)
    assert frames[0].command == "auth ClueCon"
    assert frames[4].command.startswith("bgapi originate {origination_uuid=")
    assert frames[4].get("job-uuid") == "d2f4a6b8-1c3e-4f5a-8b7c-9d0e1f2a3b4c"


def test_content_length_counts_bytes_not_characters():
    body = "caf\u00e9 \u2603\n".encode()
    stream = serialize_api_response(body) + serialize_reply("+OK")
    frames = _parse_all(stream)
    assert frames[0].body == body and frames[1].reply_text == "+OK"


def test_header_values_decoded_one_by_one_and_plus_kept():
    inner = b"Event-Name: CUSTOM\nA: %2B1%20555\nB: a+b\nC: 100%25%0Anext: x\n\n"
    ev = parse_plain_event(inner)
    assert ev.get("A") == "+1 555"
    assert ev.get("B") == "a+b"
    assert ev.get("C") == "100%\nnext: x"  # %0A inside a value does not create a header
    assert ev.get("next") is None


def test_utf8_values_and_round_trip():
    items = [("Event-Name", "CUSTOM"), ("Caller-Caller-ID-Name", "Ren\u00e9e O'Brien"), ("X", "")]
    frame = _parse_all(serialize_event_plain(items, b"body: not a header\n\n"))[0]
    ev = parse_event(frame)
    assert ev.get("Caller-Caller-ID-Name") == "Ren\u00e9e O'Brien"
    assert ev.get("X") == "_undef_"
    assert ev.body == b"body: not a header\n\n"


def test_url_encode_matches_freeswitch():
    assert url_encode("::1") == "%3A%3A1"
    assert url_encode("mod_audio_fork::connect") == "mod_audio_fork%3A%3Aconnect"
    assert (
        url_encode("sofia/external/+1555@203.0.113.10") == "sofia/external/%2B1555%40203.0.113.10"
    )
    assert url_encode("\u00e9") == "%C3%A9"
    assert url_encode("a b,(c)!$'*-._~") == "a%20b,(c)!$'*-._~"
    assert url_encode("50%25 off") == "50%25%20off"  # existing %XX is not double-encoded
    assert url_encode("50% off") == "50%25%20off"
    assert url_encode("+OK\n") == "%2BOK%0A"


def test_fixture_event_reencodes_byte_exact():
    frames = _parse_all((FIXTURES / "fixture1.fs.bin").read_bytes())
    job = parse_event(frames[6])
    assert encode_event_plain(job.items, job.body) == frames[6].body


def test_json_event_round_trip():
    items = [
        ("Event-Name", "CHANNEL_HANGUP_COMPLETE"),
        ("Hangup-Cause", "X"),
        ("Hangup-Cause", "X"),
    ]
    ev = parse_event(_parse_all(serialize_event_json(items, b"+OK\n"))[0])
    assert ev.get_all("Hangup-Cause") == ["X", "X"]
    assert ev.body == b"+OK\n"


@pytest.mark.parametrize(
    "stream, message",
    [
        (b"Content-Type: api/response\nContent-Length: abc\n\n", "bad Content-Length"),
        (b"Content-Type: api/response\nContent-Length: -4\n\n", "bad Content-Length"),
        (b"Content-Type: api/response\nContent-Length: 99999999999\n\n", "exceeds"),
        (b"this is not a header\n\n", "malformed header line"),
        (b"\x00\x01garbage\x02\n\n", "malformed header line"),
        (b": no name\n\n", "malformed header line"),
    ],
)
def test_malformed_frames_raise_clear_errors(stream, message):
    parser = FrameParser()
    parser.feed(stream)
    with pytest.raises(ProtocolError, match=message):
        parser.next_frame()
    with pytest.raises(ProtocolError):  # the parser stays broken
        parser.feed(b"Content-Type: command/reply\n\n")


def test_peer_closing_mid_frame_is_reported():
    parser = FrameParser()
    parser.feed(b"Content-Type: api/response\nContent-Length: 10\n\n+OK")
    assert parser.next_frame() is None
    with pytest.raises(ProtocolError, match="mid-frame"):
        parser.feed_eof()
    parser = FrameParser()
    parser.feed(b"Content-Type: comm")
    with pytest.raises(ProtocolError, match="mid-frame"):
        parser.feed_eof()


def test_truncated_inner_event_body():
    with pytest.raises(ProtocolError, match="truncated"):
        parse_plain_event(b"Event-Name: X\nContent-Length: 10\n\nabc")


def test_client_frames_crlf_and_leading_blank_lines():
    parser = FrameParser(client_frames=True)
    parser.feed(b"\n\r\napi status\r\n\r\nsendmsg\ncall-command: execute\nContent-Length: 3\n\nabc")
    frames = list(parser)
    assert [f.command for f in frames] == ["api status", "sendmsg"]
    assert frames[1].body == b"abc"


@pytest.mark.parametrize("bad", ["api status\nexit", "api x\r", ""])
def test_serialize_command_refuses_injection(bad):
    with pytest.raises(ProtocolError):
        serialize_command(bad)


def test_serialize_command_refuses_header_injection():
    with pytest.raises(ProtocolError):
        serialize_command("sendmsg", [("execute-app-arg", "a\n\napi shutdown")])
    with pytest.raises(ProtocolError):
        serialize_command("sendmsg", [("bad: name", "x")])


def test_sendmsg_layout_and_long_args():
    data = serialize_sendmsg(
        None, app="playback", arg="/tmp/prompt.wav", event_lock=True, event_uuid="e1"
    )
    assert data == (
        b"sendmsg\ncall-command: execute\nexecute-app-name: playback\n"
        b"execute-app-arg: /tmp/prompt.wav\nevent-lock: true\nEvent-UUID: e1\n\n"
    )
    long_arg = "x" * 5000
    frame = _parse_all(serialize_sendmsg(UUID, app="speak", arg=long_arg), client=True)[0]
    assert frame.command == f"sendmsg {UUID}"
    assert frame.get("execute-app-arg") is None
    assert frame.get("content-type") == "text/plain"
    assert frame.body == long_arg.encode()
    multi = _parse_all(serialize_sendmsg(None, app="speak", arg="line1\nline2"), client=True)[0]
    assert multi.body == b"line1\nline2"


def test_peer_side_serializers_parse_back():
    stream = (
        serialize_channel_data_reply([("Event-Name", "CHANNEL_DATA"), ("Unique-ID", UUID)])
        + serialize_linger_notice(UUID, "sofia/external/+1@h")
        + serialize_disconnect_notice(UUID)
    )
    frames = _parse_all(stream)
    assert frames[0].reply_text == "+OK\n" and channel_data_from_reply(frames[0]).unique_id == UUID
    assert disconnect_notice(frames[1]).disposition == "linger"
    assert frames[1].get("Channel-Name") == "sofia/external/+1@h"
    assert disconnect_notice(frames[2]).body == DISCONNECT_BODY


def test_event_accessors():
    ev = Event(
        items=(("Event-Name", "CUSTOM"), ("Event-Subclass", "a::b"), ("variable_uuid", UUID))
    )
    assert ev.subclass == "a::b" and ev.unique_id == UUID and ev.variable("uuid") == UUID
    assert ApiResult("-USAGE: x\n").ok is False and ApiResult("+OK\n").ok is True
