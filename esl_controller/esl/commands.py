"""Pure builders for the FreeSWITCH API commands the controller sends.

Each builder returns the command text WITHOUT the ``api ``/``bgapi `` prefix, e.g.
``uuid_kill <uuid> USER_BUSY``; pass it to ``InboundConnection.api``/``bgapi`` or ``OutboundCall.api``.

User-supplied values (numbers, SIP URIs, variable values, metadata) can never break out of their
argument: each is validated against a strict grammar and rejected with ``CommandError``, or escaped
where FreeSWITCH has an escape (a comma inside a ``{var=value}`` block becomes ``\\,``). FreeSWITCH
splits API arguments on spaces, treats ``'`` as a quote and ``\\`` as an escape, and expands ``${..}``
in dial strings, so none of those characters is accepted in a user value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "CommandError",
    "SocketTarget",
    "audio_fork_send_text",
    "audio_fork_start",
    "audio_fork_stop",
    "channel_vars",
    "deflect_app",
    "gateway_dialstring",
    "originate",
    "show_channels_json",
    "sip_uri_dialstring",
    "uuid_answer",
    "uuid_break",
    "uuid_broadcast",
    "uuid_deflect",
    "uuid_exists",
    "uuid_kill",
    "uuid_record_start",
    "uuid_record_stop",
    "uuid_send_dtmf",
    "uuid_setvar",
    "uuid_transfer",
    "validate_dtmf",
    "validate_number",
    "validate_sip_uri",
    "validate_uuid",
]


class CommandError(ValueError):
    """A value cannot be placed safely in a FreeSWITCH command."""


_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_NUMBER = re.compile(r"^\+?[0-9]{1,20}$")
_DTMF = re.compile(r"^[0-9A-Da-d*#wW]{1,99}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_CAUSE = re.compile(r"^(?:[A-Z][A-Z0-9_]{1,63}|[0-9]{1,3})$")
# SIP URI (RFC 3261 subset): sip(s):[user[:password]@]host[:port][;params] with no spaces/quotes.
_SIP_USER = r"[A-Za-z0-9\-_.!~*()&=+$,;?/%]+"
_SIP_HOST = r"(?:[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])"
_SIP_URI = re.compile(
    rf"^(?P<scheme>sips?):(?:(?P<user>{_SIP_USER})@)?(?P<host>{_SIP_HOST})(?::(?P<port>[0-9]{{1,5}}))?"
    r"(?P<params>(?:;[A-Za-z0-9\-_.!~*]+(?:=[A-Za-z0-9\-_.!~*]+)?)*)$"
)
# Characters FreeSWITCH gives meaning to in an API line or a dial string; never allowed in user values.
_FORBIDDEN = set(" \t\r\n'\\\"{}[]<>|^$`%")
_VAR_VALUE_OK = re.compile(r"^[A-Za-z0-9_.+@:/=;~!*()#,\-]*$")
_PATH = re.compile(r"^[A-Za-z0-9_.+@:/=~,\-]+$")
_WS_URL = re.compile(
    r"^(?:wss?|https?)://[A-Za-z0-9.\-\[\]:]+(?::[0-9]{1,5})?(?:/[A-Za-z0-9_.~/\-=&?%]*)?$"
)


def validate_uuid(value: str) -> str:
    if not isinstance(value, str) or not _UUID.fullmatch(value):
        raise CommandError(f"not a UUID: {value!r}")
    return value.lower()


def validate_number(value: str) -> str:
    """An E.164 number or plain digits (``+`` optional), 1 to 20 digits."""
    if not isinstance(value, str) or not _NUMBER.fullmatch(value):
        raise CommandError(f"not a phone number (digits, optional leading +): {value!r}")
    return value


def validate_sip_uri(value: str) -> str:
    if not isinstance(value, str) or len(value) > 512 or not _SIP_URI.fullmatch(value):
        raise CommandError(f"not a SIP URI: {value!r}")
    if _FORBIDDEN & set(value):
        raise CommandError(f"SIP URI contains a forbidden character: {value!r}")
    return value


def validate_dtmf(value: str) -> str:
    if not isinstance(value, str) or not _DTMF.fullmatch(value):
        raise CommandError(f"not DTMF digits (0-9 * # A-D w W, at most 99): {value!r}")
    return value


def _name(value: str, what: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise CommandError(f"bad {what}: {value!r}")
    return value


def _cause(value: str) -> str:
    if not isinstance(value, str) or not _CAUSE.fullmatch(value):
        raise CommandError(f"bad hangup cause: {value!r}")
    return value


def _path(value: str) -> str:
    if not isinstance(value, str) or not value or len(value) > 1024 or not _PATH.fullmatch(value):
        raise CommandError(f"bad file path or URL: {value!r}")
    return value


def escape_var_value(value: object) -> str:
    """A channel-variable value for a ``{..}`` block: commas escaped, anything risky rejected."""
    text = "true" if value is True else "false" if value is False else str(value)
    if len(text) > 1024 or _FORBIDDEN & set(text) or not _VAR_VALUE_OK.fullmatch(text):
        raise CommandError(f"channel variable value not allowed: {text!r}")
    return text.replace(",", "\\,")


def channel_vars(variables: Mapping[str, object]) -> str:
    """``{a=1,b=x\\,y}`` (empty string for no variables)."""
    if not variables:
        return ""
    parts = []
    for name, value in variables.items():
        if not isinstance(name, str) or not _VAR_NAME.fullmatch(name):
            raise CommandError(f"bad channel variable name: {name!r}")
        parts.append(f"{name}={escape_var_value(value)}")
    return "{" + ",".join(parts) + "}"


def gateway_dialstring(gateway: str, number: str) -> str:
    """``sofia/gateway/<gw>/<number>`` for a BYO SIP trunk."""
    return f"sofia/gateway/{_name(gateway, 'gateway name')}/{validate_number(number)}"


def sip_uri_dialstring(uri: str, profile: str = "external") -> str:
    """``sofia/<profile>/<user@host>`` for a SIP URI (the ``sip:`` scheme is dropped; ``sips:``
    becomes ``;transport=tls``)."""
    m = _SIP_URI.fullmatch(validate_sip_uri(uri))
    assert m is not None
    rest = uri.split(":", 1)[1]
    if m.group("scheme") == "sips" and "transport=" not in rest:
        rest += ";transport=tls"
    return f"sofia/{_name(profile, 'sofia profile')}/{rest}"


@dataclass(frozen=True)
class SocketTarget:
    """Where an originated leg goes: the controller's outbound-socket server."""

    host: str
    port: int

    def app(self) -> str:
        host = self.host
        if not re.fullmatch(r"^[A-Za-z0-9.\-:\[\]]+$", host):
            raise CommandError(f"bad socket host: {host!r}")
        if not 0 < int(self.port) < 65536:
            raise CommandError(f"bad socket port: {self.port!r}")
        # Quoted because of the spaces; FS tokenising removes the quotes.
        return f"'&socket({host}:{int(self.port)} async full)'"


def originate(
    dialstring: str,
    *,
    uuid: str,
    variables: Mapping[str, object] | None = None,
    target: SocketTarget | None = None,
    app: str = "&park()",
    timeout_sec: int | None = None,
) -> str:
    """``originate {origination_uuid=..,vars}<dialstring> <target>``.

    ``dialstring`` must come from ``gateway_dialstring``/``sip_uri_dialstring``. ``target`` sends the
    answered leg to the outbound socket; otherwise ``app`` (default ``&park()``).
    """
    if not dialstring.startswith(("sofia/", "loopback/", "user/")) or _FORBIDDEN & set(dialstring):
        raise CommandError(f"bad dial string: {dialstring!r}")
    merged: dict[str, object] = {"origination_uuid": validate_uuid(uuid)}
    for name, value in (variables or {}).items():
        if name == "origination_uuid":
            raise CommandError("origination_uuid is set from uuid=")
        merged[name] = value
    if timeout_sec is not None:
        merged["originate_timeout"] = int(timeout_sec)
    dest = target.app() if target is not None else app
    if target is None and not re.fullmatch(r"^&[a-z_]+\([A-Za-z0-9_.:/@ \-]*\)$|^[0-9]+$", app):
        raise CommandError(f"bad originate application: {app!r}")
    return f"originate {channel_vars(merged)}{dialstring} {dest}"


def uuid_answer(uuid: str) -> str:
    return f"uuid_answer {validate_uuid(uuid)}"


def uuid_kill(uuid: str, cause: str | None = None) -> str:
    cmd = f"uuid_kill {validate_uuid(uuid)}"
    return f"{cmd} {_cause(cause)}" if cause else cmd


def uuid_break(uuid: str, all_: bool = True) -> str:
    return f"uuid_break {validate_uuid(uuid)}" + (" all" if all_ else "")


def uuid_broadcast(uuid: str, path: str, leg: str = "aleg") -> str:
    """Play a file on the channel (``uuid_broadcast <uuid> <path> aleg``)."""
    if leg not in ("aleg", "bleg", "both", "holdb"):
        raise CommandError(f"bad leg: {leg!r}")
    return f"uuid_broadcast {validate_uuid(uuid)} {_path(path)} {leg}"


def uuid_transfer(
    uuid: str, destination: str, dialplan: str = "XML", context: str = "default"
) -> str:
    """Transfer to a dialplan extension (a number or a plain extension name)."""
    if not (_NUMBER.fullmatch(destination) or _NAME.fullmatch(destination)):
        raise CommandError(f"bad transfer destination: {destination!r}")
    return (
        f"uuid_transfer {validate_uuid(uuid)} {destination} "
        f"{_name(dialplan, 'dialplan')} {_name(context, 'context')}"
    )


def uuid_deflect(uuid: str, sip_uri: str) -> str:
    """Blind transfer by SIP REFER (``uuid_deflect``); FS then hangs up with BLIND_TRANSFER."""
    return f"uuid_deflect {validate_uuid(uuid)} {validate_sip_uri(sip_uri)}"


def deflect_app(sip_uri: str) -> tuple[str, str]:
    """``(app, arg)`` for ``sendmsg execute`` of the ``deflect`` app (REFER)."""
    return "deflect", validate_sip_uri(sip_uri)


def uuid_send_dtmf(uuid: str, digits: str, duration_ms: int | None = None) -> str:
    arg = validate_dtmf(digits)
    if duration_ms is not None:
        if not 40 <= int(duration_ms) <= 5000:
            raise CommandError(f"bad DTMF duration: {duration_ms!r}")
        arg += f"@{int(duration_ms)}"
    return f"uuid_send_dtmf {validate_uuid(uuid)} {arg}"


def uuid_record_start(
    uuid: str,
    path: str,
    limit_sec: int | None = None,
    variables: Mapping[str, object] | None = None,
) -> str:
    cmd = f"uuid_record {validate_uuid(uuid)} start {_path(path)}"
    if limit_sec is not None or variables:
        cmd += f" {int(limit_sec or 0)}"
    if variables:
        cmd += " " + channel_vars(variables)
    return cmd


def uuid_record_stop(uuid: str, path: str = "all") -> str:
    return f"uuid_record {validate_uuid(uuid)} stop {path if path == 'all' else _path(path)}"


def uuid_setvar(uuid: str, name: str, value: object | None = None) -> str:
    if not isinstance(name, str) or not _VAR_NAME.fullmatch(name):
        raise CommandError(f"bad channel variable name: {name!r}")
    cmd = f"uuid_setvar {validate_uuid(uuid)} {name}"
    if value is None:
        return cmd
    text = escape_var_value(value).replace("\\,", ",")  # no {} block here: commas are literal
    return f"{cmd} {text}" if text else cmd


def uuid_exists(uuid: str) -> str:
    return f"uuid_exists {validate_uuid(uuid)}"


def show_channels_json() -> str:
    return "show channels as json"


def _compact_json(value: object, what: str) -> str:
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    bad = set(text) & set("'\\\r\n\t`")
    if bad or len(text) > 8192:
        raise CommandError(f"{what} contains characters FreeSWITCH would mangle: {sorted(bad)}")
    return text


def audio_fork_start(
    uuid: str,
    url: str,
    *,
    mix: str = "mono",
    rate: str = "16k",
    bugname: str = "audio_fork",
    metadata: Mapping[str, object] | None = None,
) -> str:
    """``uuid_audio_fork <uuid> start <url> <mix> <rate> <bugname> [<metadata>]``.

    The bugname is always explicit, so metadata JSON with spaces stays one argument (the remainder
    of the line). Metadata must not contain ``'``, ``\\`` or control characters (a string value with
    ``"`` would need a backslash escape, so it is rejected too).
    """
    if mix not in ("mono", "mixed", "stereo"):
        raise CommandError(f"bad mix type: {mix!r}")
    if not re.fullmatch(r"^(?:8k|16k|[1-9][0-9]{3,5})$", rate):
        raise CommandError(f"bad sample rate: {rate!r}")
    if not _WS_URL.fullmatch(url) or _FORBIDDEN & (set(url) - {"%"}):
        raise CommandError(f"bad WebSocket URL: {url!r}")
    cmd = f"uuid_audio_fork {validate_uuid(uuid)} start {url} {mix} {rate} {_name(bugname, 'bugname')}"
    if metadata:
        cmd += " " + _compact_json(metadata, "metadata")
    return cmd


def audio_fork_stop(uuid: str, bugname: str = "audio_fork", text: object | None = None) -> str:
    cmd = f"uuid_audio_fork {validate_uuid(uuid)} stop {_name(bugname, 'bugname')}"
    if text is not None:
        cmd += " " + _one_token_json(text)
    return cmd


def audio_fork_send_text(uuid: str, text: object, bugname: str = "audio_fork") -> str:
    """``send_text`` takes one token: compact JSON without spaces."""
    return (
        f"uuid_audio_fork {validate_uuid(uuid)} send_text {_name(bugname, 'bugname')} "
        f"{_one_token_json(text)}"
    )


def _one_token_json(value: object) -> str:
    text = _compact_json(value, "text")
    if " " in text:
        raise CommandError("text for send_text/stop must be one token (no spaces)")
    return text
