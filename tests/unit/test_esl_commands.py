"""Pure command builders: exact command text, and injection attempts through user values."""

from __future__ import annotations

import pytest

from esl_controller.esl import commands as c
from esl_controller.esl.commands import CommandError, SocketTarget
from esl_controller.testing.model import fs_split, parse_originate

U = "f0e1d2c3-b4a5-4968-8776-655443322110"


def test_originate_gateway_to_socket():
    cmd = c.originate(
        c.gateway_dialstring("byo_trunk", "+15551230001"),
        uuid=U,
        variables={"ignore_early_media": True, "origination_caller_id_number": "15557654321"},
        target=SocketTarget("10.0.0.9", 8084),
        timeout_sec=30,
    )
    assert cmd == (
        "originate {origination_uuid=" + U + ",ignore_early_media=true,"
        "origination_caller_id_number=15557654321,originate_timeout=30}"
        "sofia/gateway/byo_trunk/+15551230001 '&socket(10.0.0.9:8084 async full)'"
    )
    # FreeSWITCH's tokenising gives exactly two arguments, and the variables come back intact
    req = parse_originate(cmd.split(" ", 1)[1])
    assert req.destination == "&socket(10.0.0.9:8084 async full)"
    assert req.number == "+15551230001" and req.gateway == "byo_trunk"
    assert req.variables["origination_uuid"] == U


def test_originate_sip_uri_and_park():
    cmd = c.originate(c.sip_uri_dialstring("sip:alice@example.com:5080;transport=tcp"), uuid=U)
    assert cmd == (
        f"originate {{origination_uuid={U}}}sofia/external/alice@example.com:5080;transport=tcp &park()"
    )
    assert c.sip_uri_dialstring("sips:bob@example.com").endswith("bob@example.com;transport=tls")


def test_comma_in_variable_is_escaped_and_survives_parsing():
    cmd = c.originate(
        c.gateway_dialstring("gw", "15551230001"), uuid=U, variables={"x_meta": "a,b,c"}
    )
    assert "x_meta=a\\,b\\,c" in cmd
    assert parse_originate(cmd.split(" ", 1)[1]).variables["x_meta"] == "a,b,c"


@pytest.mark.parametrize(
    "number",
    [
        "1555\n\napi shutdown",
        "1555 &park()",
        "1555}",
        "1555,origination_uuid=x",
        "1555'",
        "1555&",
        "1555|2",
        "${system(rm)}",
        "",
        "+",
        "1" * 21,
        "sip:a@b",
    ],
)
def test_numbers_reject_injection(number):
    with pytest.raises(CommandError):
        c.gateway_dialstring("gw", number)


@pytest.mark.parametrize(
    "uri",
    [
        "sip:a@b.com\napi shutdown",
        "sip:a@b.com &park()",
        "sip:a@b.com'",
        "sip:a@b.com}",
        "sip:a@b.com|sip:c@d",
        "sip:a@b.com;x=${system(id)}",
        "sip:a b@c.com",
        "tel:+15551230001",
        "sip:@",
        "sip:a@-bad-.com",
        "sip:a@b.com:99999999",
    ],
)
def test_sip_uris_reject_injection(uri):
    with pytest.raises(CommandError):
        c.validate_sip_uri(uri)
    with pytest.raises(CommandError):
        c.sip_uri_dialstring(uri)


@pytest.mark.parametrize(
    "value",
    [
        "a}b",
        "a{b",
        "x\ny",
        "a b",
        "it's",
        "a|b",
        "${x}",
        "a\\,b",
        "a^b",
        "a<b>",
        'q"q',
        "a%b",
        "a\tb",
    ],
)
def test_variable_values_reject_injection(value):
    with pytest.raises(CommandError):
        c.originate(c.gateway_dialstring("gw", "1555"), uuid=U, variables={"v": value})


@pytest.mark.parametrize("name", ["a b", "a=b", "a,b", "1abc", "a}", "", "a\n"])
def test_variable_names_validated(name):
    with pytest.raises(CommandError):
        c.channel_vars({name: "x"})


def test_origination_uuid_cannot_be_overridden():
    with pytest.raises(CommandError):
        c.originate(c.gateway_dialstring("gw", "1555"), uuid=U, variables={"origination_uuid": U})


@pytest.mark.parametrize("gw", ["gw/other", "gw x", "gw\n", "gw}", "../x", ""])
def test_gateway_names_validated(gw):
    with pytest.raises(CommandError):
        c.gateway_dialstring(gw, "1555")


@pytest.mark.parametrize("bad", ["not-a-uuid", U + " all", U + "\n", U[:-1] + "g", ""])
def test_uuid_validated_everywhere(bad):
    for build in (c.uuid_answer, c.uuid_kill, c.uuid_break, c.uuid_exists):
        with pytest.raises(CommandError):
            build(bad)


def test_simple_uuid_commands():
    assert c.uuid_answer(U) == f"uuid_answer {U}"
    assert c.uuid_kill(U) == f"uuid_kill {U}"
    assert c.uuid_kill(U, "USER_BUSY") == f"uuid_kill {U} USER_BUSY"
    assert c.uuid_break(U) == f"uuid_break {U} all"
    assert c.uuid_break(U, all_=False) == f"uuid_break {U}"
    assert c.uuid_exists(U) == f"uuid_exists {U}"
    assert c.show_channels_json() == "show channels as json"
    assert c.uuid_broadcast(U, "/tmp/a_0.tmp.r16") == f"uuid_broadcast {U} /tmp/a_0.tmp.r16 aleg"
    assert c.uuid_transfer(U, "+15550001111") == f"uuid_transfer {U} +15550001111 XML default"
    assert (
        c.uuid_deflect(U, "sip:agent@pbx.example.com")
        == f"uuid_deflect {U} sip:agent@pbx.example.com"
    )
    assert c.deflect_app("sip:agent@pbx.example.com") == ("deflect", "sip:agent@pbx.example.com")
    assert c.uuid_send_dtmf(U, "12#*") == f"uuid_send_dtmf {U} 12#*"
    assert c.uuid_send_dtmf(U, "1", duration_ms=200) == f"uuid_send_dtmf {U} 1@200"
    assert c.uuid_setvar(U, "my_var", "a,b") == f"uuid_setvar {U} my_var a,b"
    assert c.uuid_setvar(U, "my_var") == f"uuid_setvar {U} my_var"


@pytest.mark.parametrize("cause", ["USER_BUSY all", "x", "NORMAL;CLEARING", "busy\n", "1234"])
def test_kill_cause_validated(cause):
    with pytest.raises(CommandError):
        c.uuid_kill(U, cause)


@pytest.mark.parametrize("digits", ["12 3", "1\n", "1;2", "E", "1" * 100, "", "1@100"])
def test_dtmf_validated(digits):
    with pytest.raises(CommandError):
        c.uuid_send_dtmf(U, digits)


@pytest.mark.parametrize("path", ["/tmp/a b.wav", "/tmp/a.wav aleg", "x'y", "/tmp/a\n", "", "a|b"])
def test_paths_validated(path):
    with pytest.raises(CommandError):
        c.uuid_broadcast(U, path)
    with pytest.raises(CommandError):
        c.uuid_record_start(U, path)


def test_record_start_stop():
    assert c.uuid_record_start(U, "/var/rec/x.wav") == f"uuid_record {U} start /var/rec/x.wav"
    assert (
        c.uuid_record_start(U, "/var/rec/x.wav", 600, {"RECORD_STEREO": True})
        == f"uuid_record {U} start /var/rec/x.wav 600 {{RECORD_STEREO=true}}"
    )
    assert c.uuid_record_stop(U) == f"uuid_record {U} stop all"
    assert c.uuid_record_stop(U, "/var/rec/x.wav") == f"uuid_record {U} stop /var/rec/x.wav"


def test_transfer_destination_validated():
    for bad in ["1555 XML", "bridge:sofia/gateway/x/1", "a'b", "1555\n"]:
        with pytest.raises(CommandError):
            c.uuid_transfer(U, bad)


def test_audio_fork_start_with_metadata_always_names_the_bug():
    cmd = c.audio_fork_start(
        U,
        "ws://10.0.0.9:8090/media",
        metadata={"callId": "8d9f2c1e7b@203.0.113.10", "from": "+15551230001", "note": "hi there"},
    )
    assert cmd == (
        f"uuid_audio_fork {U} start ws://10.0.0.9:8090/media mono 16k audio_fork "
        '{"callId":"8d9f2c1e7b@203.0.113.10","from":"+15551230001","note":"hi there"}'
    )
    # with an explicit bugname the 7th token onwards is the metadata, spaces included
    tokens = cmd.split(" ", 7)
    assert tokens[6] == "audio_fork" and tokens[7].startswith("{")


@pytest.mark.parametrize(
    "meta",
    [{"a": "it's"}, {"a": 'say "hi"'}, {"a": "back\\slash"}, {"a": "line\nbreak"}],
)
def test_audio_fork_metadata_rejects_what_freeswitch_would_mangle(meta):
    with pytest.raises(CommandError):
        c.audio_fork_start(U, "ws://h/x", metadata=meta)


@pytest.mark.parametrize(
    "url", ["ws://h/x y", "ftp://h/x", "ws://h/x'", "ws://h/x\n", "ws://h/{x}"]
)
def test_audio_fork_url_validated(url):
    with pytest.raises(CommandError):
        c.audio_fork_start(U, url)


def test_audio_fork_stop_and_send_text():
    assert c.audio_fork_stop(U) == f"uuid_audio_fork {U} stop audio_fork"
    assert (
        c.audio_fork_stop(U, text={"reason": "hangup"})
        == f'uuid_audio_fork {U} stop audio_fork {{"reason":"hangup"}}'
    )
    assert (
        c.audio_fork_send_text(U, {"type": "mark"})
        == f'uuid_audio_fork {U} send_text audio_fork {{"type":"mark"}}'
    )
    with pytest.raises(CommandError):
        c.audio_fork_send_text(U, {"text": "two words"})
    with pytest.raises(CommandError):
        c.audio_fork_start(U, "ws://h/x", mix="both")
    with pytest.raises(CommandError):
        c.audio_fork_start(U, "ws://h/x", rate="16k all")


def test_socket_target_validated():
    with pytest.raises(CommandError):
        SocketTarget("10.0.0.9 async", 8084).app()
    with pytest.raises(CommandError):
        SocketTarget("10.0.0.9", 70000).app()


def test_fs_split_quotes_and_escapes():
    assert fs_split("a 'b c' d\\ e") == ["a", "b c", "d e"]
    assert fs_split("  x   y ") == ["x", "y"]


def test_fs_split_keeps_unknown_escapes_like_freeswitch():
    # switch_separate_string keeps "\," when splitting on spaces; the {} parser unescapes it
    assert fs_split("{a=x\\,y}sofia/gateway/g/1 &park()") == [
        "{a=x\\,y}sofia/gateway/g/1",
        "&park()",
    ]
    assert fs_split("a=x\\,y,b=2", ",") == ["a=x,y", "b=2"]
    assert fs_split("it's") == ["it's"]  # an unpaired quote is literal
