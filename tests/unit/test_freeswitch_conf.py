"""The shipped FreeSWITCH configuration (freeswitch_conf/) parses and is wired together."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

CONF = Path(__file__).resolve().parents[2] / "freeswitch_conf"
PRE_VAR = re.compile(r"\$\$\{([A-Za-z0-9_]+)\}")
#: the form documented for the outbound socket: host:port async full
SOCKET_ARG = re.compile(
    r"^(?P<host>[A-Za-z0-9.\-]+|\[[0-9A-Fa-f:]+\]):(?P<port>\d{1,5}) async full$"
)
#: variables FreeSWITCH's stock vars.xml defines (used by the stock-compatible parts)
STOCK_VARS = {"domain"}

XML_FILES = sorted(
    p
    for p in CONF.rglob("*")
    if p.is_file() and (p.suffix == ".xml" or p.name.endswith(".xml.example"))
)


def _vars() -> dict[str, str]:
    root = ET.parse(CONF / "vars_esl_controller.xml").getroot()
    out: dict[str, str] = {}
    for el in root.iter("X-PRE-PROCESS"):
        assert el.get("cmd") == "set"
        name, _, value = el.get("data", "").partition("=")
        out[name] = value
    return out


def _expand(text: str, variables: dict[str, str]) -> str:
    return PRE_VAR.sub(lambda m: variables[m.group(1)], text)


def _socket_actions() -> list[tuple[str, str]]:
    root = ET.parse(CONF / "dialplan/public/00_esl_controller.xml").getroot()
    found = []
    for ext in root.iter("extension"):
        actions = [a for c in ext.iter("condition") for a in c.iter("action")]
        apps = [a.get("application") for a in actions]
        for i, act in enumerate(actions):
            if act.get("application") == "socket":
                # the next action after socket must be hangup
                assert apps[i + 1 : i + 2] == ["hangup"], ext.get("name")
                found.append((ext.get("name", ""), act.get("data", "")))
    return found


def test_expected_files_exist() -> None:
    names = {p.relative_to(CONF).as_posix() for p in CONF.rglob("*") if p.is_file()}
    for required in (
        "README.md",
        "vars_esl_controller.xml",
        "autoload_configs/event_socket.conf.xml",
        "autoload_configs/acl.conf.xml",
        "autoload_configs/modules.conf.xml",
        "dialplan/public/00_esl_controller.xml",
        "sip_profiles/external/byo_gateway.xml.example",
    ):
        assert required in names


@pytest.mark.parametrize("path", XML_FILES, ids=lambda p: p.relative_to(CONF).as_posix())
def test_every_xml_file_parses(path: Path) -> None:
    ET.parse(path)


@pytest.mark.parametrize("path", XML_FILES, ids=lambda p: p.relative_to(CONF).as_posix())
def test_every_placeholder_is_defined(path: Path) -> None:
    defined = set(_vars()) | STOCK_VARS
    # attributes only: comments may mention the syntax
    attrs = " ".join(v for el in ET.parse(path).getroot().iter() for v in el.attrib.values())
    used = set(PRE_VAR.findall(attrs))
    assert used <= defined, sorted(used - defined)


def test_malformed_xml_is_caught() -> None:
    # the parse check above can fail: a broken file raises
    with pytest.raises(ET.ParseError):
        ET.fromstring('<include><extension name="x"></include>')


def test_dialplan_socket_argument_has_documented_form() -> None:
    variables = _vars()
    actions = _socket_actions()
    assert {name for name, _ in actions} == {"esl_controller_dids", "esl_controller_sip_uris"}
    for _, data in actions:
        assert data == "$${esl_controller_host}:$${esl_controller_port} async full"
        expanded = _expand(data, variables)
        m = SOCKET_ARG.match(expanded)
        assert m, expanded
        assert 0 < int(m.group("port")) < 65536


@pytest.mark.parametrize(
    "data,ok",
    [
        ("127.0.0.1:8084 async full", True),
        ("10.0.0.9:8084 async full", True),
        ("10.0.0.9:8084 async", False),
        ("10.0.0.9:8084 full", False),
        ("10.0.0.9 async full", False),
    ],
)
def test_socket_form_pattern(data: str, ok: bool) -> None:
    assert bool(SOCKET_ARG.match(data)) is ok


def test_did_regex_matches_example_numbers() -> None:
    rx = re.compile(_vars()["esl_controller_did_regex"])
    assert rx.match("15557654321") and rx.match("+15557654322") and rx.match("5557654321")
    assert not rx.match("15550000000")
    uri = re.compile(_vars()["esl_controller_sip_uri_regex"])
    assert uri.match("assistant@voice.example") and not uri.match("alice@voice.example")


def test_event_socket_uses_the_acl_list() -> None:
    es = ET.parse(CONF / "autoload_configs/event_socket.conf.xml").getroot()
    assert es.get("name") == "event_socket.conf"
    params = {p.get("name"): p.get("value") for p in es.iter("param")}
    for key in ("listen-ip", "listen-port", "password", "apply-inbound-acl"):
        assert params.get(key), key
    assert params["password"] == "$${esl_controller_esl_password}"
    acl = ET.parse(CONF / "autoload_configs/acl.conf.xml").getroot()
    lists = {lst.get("name"): lst for lst in acl.iter("list")}
    assert params["apply-inbound-acl"] in lists
    ours = lists[params["apply-inbound-acl"]]
    assert ours.get("default") == "deny"
    assert [n.get("type") for n in ours.iter("node")] == ["allow"]


def test_modules_loaded() -> None:
    root = ET.parse(CONF / "autoload_configs/modules.conf.xml").getroot()
    mods = [m.get("module") for m in root.iter("load")]
    assert len(mods) == len(set(mods))
    for needed in (
        "mod_event_socket",
        "mod_sofia",
        "mod_audio_fork",
        "mod_dptools",
        "mod_commands",
        "mod_dialplan_xml",
        "mod_sndfile",
    ):
        assert needed in mods


def test_gateway_template() -> None:
    root = ET.parse(CONF / "sip_profiles/external/byo_gateway.xml.example").getroot()
    gw = root.find("gateway")
    assert gw is not None and gw.get("name")
    params = {p.get("name"): p.get("value") for p in gw.iter("param")}
    assert params["context"] == "public"
    assert params["extension"] == "auto_to_user"
    assert {"username", "password", "realm", "register"} <= set(params)


def test_softphone_lands_in_public_context() -> None:
    root = ET.parse(CONF / "directory/default/esl_controller_softphone.xml").getroot()
    variables = {v.get("name"): v.get("value") for v in root.iter("variable")}
    assert variables["user_context"] == "public"
