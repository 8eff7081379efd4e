"""Pure parts of the FreeSWITCH peer: fake channel state, event header building in FreeSWITCH's
order, event subscriptions, and FreeSWITCH-style argument splitting. No sockets, no gevent."""

from __future__ import annotations

import time
import uuid as _uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.utils import formatdate

# Events ``myevents`` subscribes to (section 3.3 of the protocol notes).
MYEVENTS = frozenset(
    "CHANNEL_ANSWER CHANNEL_APPLICATION CHANNEL_BRIDGE CHANNEL_CREATE CHANNEL_DATA CHANNEL_DESTROY "
    "CHANNEL_EXECUTE CHANNEL_EXECUTE_COMPLETE CHANNEL_HANGUP CHANNEL_HANGUP_COMPLETE CHANNEL_ORIGINATE "
    "CHANNEL_UUID CHANNEL_OUTGOING CHANNEL_PARK CHANNEL_PROGRESS CHANNEL_PROGRESS_MEDIA CHANNEL_STATE "
    "CHANNEL_UNBRIDGE CHANNEL_UNPARK DETECTED_SPEECH DTMF NOTALK TALK".split()
)
# Events that carry ``variable_*`` headers (section 4).
WITH_VARIABLES = frozenset(
    "CHANNEL_CREATE CHANNEL_ORIGINATE CHANNEL_UUID CHANNEL_ANSWER CHANNEL_PARK CHANNEL_UNPARK "
    "CHANNEL_BRIDGE CHANNEL_UNBRIDGE CHANNEL_PROGRESS CHANNEL_PROGRESS_MEDIA CHANNEL_HANGUP "
    "CHANNEL_HANGUP_COMPLETE CHANNEL_DATA CHANNEL_EXECUTE CHANNEL_EXECUTE_COMPLETE CHANNEL_DESTROY "
    "RECORD_START RECORD_STOP PLAYBACK_START PLAYBACK_STOP CUSTOM".split()
)
CALLING = {
    "CHANNEL_CREATE": ("switch_core_state_machine.c", "switch_core_session_run", 626),
    "CHANNEL_PROGRESS": ("switch_channel.c", "switch_channel_perform_mark_ring_ready_value", 3517),
    "CHANNEL_PROGRESS_MEDIA": (
        "switch_channel.c",
        "switch_channel_perform_mark_pre_answered",
        3655,
    ),
    "CHANNEL_ANSWER": ("switch_channel.c", "switch_channel_perform_mark_answered", 3848),
    "CHANNEL_EXECUTE": ("switch_core_session.c", "switch_core_session_exec", 2943),
    "CHANNEL_EXECUTE_COMPLETE": ("switch_core_session.c", "switch_core_session_exec", 2972),
    "CHANNEL_HANGUP": ("switch_channel.c", "switch_channel_perform_hangup", 3447),
    "CHANNEL_HANGUP_COMPLETE": (
        "switch_core_state_machine.c",
        "switch_core_session_reporting_state",
        943,
    ),
    "CHANNEL_DATA": ("mod_event_socket.c", "parse_command", 2029),
    "BACKGROUND_JOB": ("mod_event_socket.c", "api_exec", 1580),
    "DTMF": ("switch_channel.c", "switch_channel_queue_dtmf", 498),
    "CUSTOM": ("mod_audio_fork.c", "responseHandler", 22),
}
Q850 = {
    "NORMAL_CLEARING": 16,
    "USER_BUSY": 17,
    "NO_USER_RESPONSE": 18,
    "NO_ANSWER": 19,
    "CALL_REJECTED": 21,
    "NORMAL_TEMPORARY_FAILURE": 41,
    "UNALLOCATED_NUMBER": 1,
    "NO_ROUTE_DESTINATION": 3,
}


def new_uuid() -> str:
    return str(_uuid.uuid4())


@dataclass
class FakeChannel:
    """State of one fake channel; header lists are built in FreeSWITCH's order."""

    uuid: str
    direction: str  # "inbound" (carrier -> FS) or "outbound" (originated)
    caller_number: str
    destination_number: str
    remote_ip: str = "203.0.113.10"
    profile: str = "external"
    context: str = "public"
    gateway: str = ""
    variables: dict[str, str] = field(default_factory=dict)
    state: str = "CS_EXECUTE"
    state_number: int = 4
    call_state: str = "RINGING"
    answer_state: str = "ringing"
    hangup_cause: str = ""
    created_us: int = field(default_factory=lambda: int(time.time() * 1_000_000))
    answered_us: int = 0
    progress_us: int = 0
    hangup_us: int = 0
    current_app: str = ""
    current_app_data: str = ""

    @property
    def name(self) -> str:
        if self.gateway:
            return f"sofia/{self.profile}/{self.destination_number}"
        far = self.caller_number if self.direction == "inbound" else self.destination_number
        return f"sofia/{self.profile}/{far}@{self.remote_ip}"

    @property
    def answered(self) -> bool:
        return self.answered_us > 0

    @property
    def hung_up(self) -> bool:
        return bool(self.hangup_cause)

    def base_variables(self) -> list[tuple[str, str]]:
        v = [
            ("direction", self.direction),
            ("uuid", self.uuid),
            ("session_id", "1"),
            ("sip_from_user", self.caller_number),
            ("sip_from_host", self.remote_ip),
            ("channel_name", self.name),
            ("sip_call_id", f"{self.uuid[:10]}@{self.remote_ip}"),
            ("sip_network_ip", self.remote_ip),
            ("sip_network_port", "5060"),
            ("sofia_profile_name", self.profile),
            ("sip_req_user", self.destination_number),
            ("sip_to_user", self.destination_number),
            ("sip_user_agent", "CarrierSBC/1.0"),
            ("remote_media_ip", "203.0.113.20"),
            ("remote_media_port", "31744"),
            ("rtp_use_codec_name", "PCMU"),
            ("local_media_ip", "10.0.0.5"),
            ("local_media_port", "16502"),
        ]
        if self.gateway:
            v.append(("sip_gateway", self.gateway))
        return v

    def variable_headers(self) -> list[tuple[str, str]]:
        merged = dict(self.base_variables())
        merged.update(self.variables)
        if self.current_app:
            merged["current_application"] = self.current_app
            if self.current_app_data:
                merged["current_application_data"] = self.current_app_data
        return [(f"variable_{k}", v) for k, v in merged.items()]

    def profile_headers(self, prefix: str) -> list[tuple[str, str]]:
        return [
            (f"{prefix}-Direction", self.direction),
            (f"{prefix}-Logical-Direction", self.direction),
            (f"{prefix}-Username", self.caller_number),
            (f"{prefix}-Dialplan", "XML"),
            (f"{prefix}-Caller-ID-Name", self.caller_number),
            (f"{prefix}-Caller-ID-Number", self.caller_number),
            (f"{prefix}-Network-Addr", self.remote_ip),
            (f"{prefix}-ANI", self.caller_number),
            (f"{prefix}-Destination-Number", self.destination_number),
            (f"{prefix}-Unique-ID", self.uuid),
            (f"{prefix}-Source", "mod_sofia"),
            (f"{prefix}-Context", self.context),
            (f"{prefix}-Channel-Name", self.name),
            (f"{prefix}-Profile-Index", "1"),
            (f"{prefix}-Channel-Created-Time", str(self.created_us)),
            (f"{prefix}-Channel-Answered-Time", str(self.answered_us)),
            (f"{prefix}-Channel-Progress-Time", str(self.progress_us)),
            (f"{prefix}-Channel-Hangup-Time", str(self.hangup_us)),
        ]

    def basic_headers(self) -> list[tuple[str, str]]:
        h = [
            ("Channel-State", self.state),
            ("Channel-Call-State", self.call_state),
            ("Channel-State-Number", str(self.state_number)),
            ("Channel-Name", self.name),
            ("Unique-ID", self.uuid),
            ("Call-Direction", self.direction),
            ("Presence-Call-Direction", self.direction),
            ("Channel-HIT-Dialplan", "true"),
            ("Channel-Call-UUID", self.uuid),
            ("Answer-State", self.answer_state),
        ]
        if self.hangup_cause:
            h.append(("Hangup-Cause", self.hangup_cause))
        h += [
            ("Channel-Read-Codec-Name", "PCMU"),
            ("Channel-Read-Codec-Rate", "8000"),
            ("Channel-Write-Codec-Name", "PCMU"),
            ("Channel-Write-Codec-Rate", "8000"),
        ]
        return h + self.profile_headers("Caller")

    def hangup_variables(self, now_us: int) -> list[tuple[str, str]]:
        start = self.created_us // 1_000_000
        end = now_us // 1_000_000
        answer = self.answered_us // 1_000_000
        return [
            ("variable_sip_hangup_disposition", "send_bye" if self.answered else "send_refuse"),
            ("variable_hangup_cause", self.hangup_cause),
            ("variable_hangup_cause_q850", str(Q850.get(self.hangup_cause, 16))),
            ("variable_start_epoch", str(start)),
            ("variable_answer_epoch", str(answer)),
            ("variable_end_epoch", str(end)),
            ("variable_duration", str(end - start)),
            ("variable_billsec", str(end - answer if answer else 0)),
        ]


class EventFactory:
    """Builds event header lists: the 13 standard headers, then Event-Subclass, then the rest."""

    def __init__(self, core_uuid: str | None = None, hostname: str = "fs1") -> None:
        self.core_uuid = core_uuid or new_uuid()
        self.hostname = hostname
        self.sequence = 4700

    def standard(
        self, name: str, function: tuple[str, str, int] | None = None
    ) -> list[tuple[str, str]]:
        self.sequence += 1
        now = time.time()
        file, func, line = function or CALLING.get(name, ("switch_event.c", "switch_event_fire", 1))
        return [
            ("Event-Name", name),
            ("Core-UUID", self.core_uuid),
            ("FreeSWITCH-Hostname", self.hostname),
            ("FreeSWITCH-Switchname", self.hostname),
            ("FreeSWITCH-IPv4", "10.0.0.5"),
            ("FreeSWITCH-IPv6", "::1"),
            ("Event-Date-Local", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(now))),
            ("Event-Date-GMT", formatdate(now, usegmt=True)),
            ("Event-Date-Timestamp", str(int(now * 1_000_000))),
            ("Event-Calling-File", file),
            ("Event-Calling-Function", func),
            ("Event-Calling-Line-Number", str(line)),
            ("Event-Sequence", str(self.sequence)),
        ]

    def channel_event(
        self,
        name: str,
        channel: FakeChannel,
        extra: Iterable[tuple[str, str]] = (),
        subclass: str = "",
    ) -> list[tuple[str, str]]:
        items = self.standard(name)
        if subclass:
            items.append(("Event-Subclass", subclass))
        if name == "CHANNEL_HANGUP_COMPLETE":
            items.append(("Hangup-Cause", channel.hangup_cause))
        items += channel.basic_headers()
        if name in WITH_VARIABLES:
            items += channel.variable_headers()
            if name == "CHANNEL_HANGUP_COMPLETE":
                items += channel.hangup_variables(int(time.time() * 1_000_000))
        items += list(extra)
        return items

    def channel_data(self, channel: FakeChannel) -> list[tuple[str, str]]:
        """Headers of the outbound ``connect`` reply (before the reply headers)."""
        items = self.standard("CHANNEL_DATA")
        items += channel.profile_headers("Channel")
        items += channel.basic_headers()
        items += channel.variable_headers()
        return items


@dataclass
class Subscription:
    """What one ESL connection listens to (``event``, ``nixevent``, ``myevents``, ``filter``)."""

    events: set[str] = field(default_factory=set)
    subclasses: set[str] = field(default_factory=set)
    all_events: bool = False
    fmt: str = "plain"
    uuid_filter: str = ""

    def add(self, tokens: list[str]) -> str:
        """Tokens after ``event``; returns the reply text."""
        if tokens and tokens[0] in ("plain", "json", "xml"):
            self.fmt = tokens.pop(0)
        if not tokens:
            return "-ERR no keywords supplied"
        custom = False
        for tok in tokens:
            if custom:
                self.subclasses.add(tok)
            elif tok == "CUSTOM":
                custom = True
            elif tok == "ALL":
                self.all_events = True
            else:
                self.events.add(tok)
        return f"+OK event listener enabled {self.fmt}"

    def remove(self, tokens: list[str]) -> None:
        custom = False
        for tok in tokens:
            if custom:
                self.subclasses.discard(tok)
            elif tok == "CUSTOM":
                custom = True
            elif tok == "ALL":
                self.all_events = False
                self.events.clear()
            else:
                self.events.discard(tok)

    def clear(self) -> None:
        self.events.clear()
        self.subclasses.clear()
        self.all_events = False

    def myevents(self, uuid: str) -> None:
        self.events |= MYEVENTS
        self.uuid_filter = uuid

    def wants(self, items: list[tuple[str, str]]) -> bool:
        headers = dict(items)
        name = headers.get("Event-Name", "")
        if self.uuid_filter:
            if name == "BACKGROUND_JOB":
                if headers.get("Job-Owner-UUID") != self.uuid_filter:
                    return False
            elif headers.get("Unique-ID") != self.uuid_filter:
                return False
        if self.all_events:
            return True
        if name == "CUSTOM":
            return headers.get("Event-Subclass", "") in self.subclasses
        return name in self.events


_UNESCAPE = {"n": "\n", "r": "\r", "t": "\t", "s": " "}


def fs_split(text: str, delim: str = " ") -> list[str]:
    """Split like FreeSWITCH's ``switch_separate_string``: on ``delim`` outside ``'...'`` (quotes
    removed when paired); ``\\`` unescapes only a quote, the delimiter, a backslash or n/r/t/s,
    and is kept literally before anything else (so ``\\,`` survives a split on spaces)."""
    out: list[str] = []
    cur: list[str] = []
    quote = False
    i = 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt in ("'", '"', delim, "\\") or nxt in _UNESCAPE:
                cur.append(_UNESCAPE.get(nxt, nxt))
                i += 2
                continue
        if c == "'" and (quote or "'" in text[i + 1 :]):
            quote = not quote
        elif c == delim and not quote:
            if cur or delim != " ":
                out.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    if cur or (delim != " " and out):
        out.append("".join(cur))
    return out


@dataclass(frozen=True)
class OriginateRequest:
    variables: dict[str, str]
    dialstring: str
    number: str
    gateway: str
    destination: str  # "&socket(host:port async full)", "&park()", or an extension


def parse_originate(args: str) -> OriginateRequest:
    """Parse ``{vars}<dialstring> <dest> ...`` (raises ``ValueError`` on bad syntax)."""
    tokens = fs_split(args)
    if len(tokens) < 2:
        raise ValueError("-USAGE: <call url> <exten>|&<application_name>(<app_args>)")
    dial, dest = tokens[0], tokens[1]
    variables: dict[str, str] = {}
    if dial.startswith("{"):
        end = dial.find("}")
        if end == -1:
            raise ValueError("-ERR bad variable block")
        block, dial = dial[1:end], dial[end + 1 :]
        parts = fs_split(block, ",")
        for p in parts:
            if "=" in p:
                k, v = p.split("=", 1)
                variables[k] = v
    segs = dial.split("/")
    gateway = ""
    if len(segs) >= 4 and segs[0] == "sofia" and segs[1] == "gateway":
        gateway, number = segs[2], "/".join(segs[3:])
    elif len(segs) >= 3 and segs[0] == "sofia":
        number = "/".join(segs[2:]).split("@", 1)[0]
    else:
        raise ValueError("-ERR INVALID_GATEWAY")
    return OriginateRequest(variables, dial, number, gateway, dest)
