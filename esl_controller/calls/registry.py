"""Live call sessions by call id and channel uuid, and FreeSWITCH events -> reducer inputs.

``event_to_input(event)`` is pure: it maps one ESL event (from an outbound socket, the inbound
connection, or the ``/freeswitch/events`` hook) to the reducer input it means, or None. The
``event_id`` is ``Core-UUID:Event-Sequence`` so the same event seen on two paths (the call's own
socket and the inbound connection both carry CHANNEL_* events) is applied once.

``Registry`` routes inbound-connection events to the session owning the channel; events for
channels nobody owns are counted and dropped (not an error). ``shutdown()`` feeds
``RuntimeShutdown`` to every live session and waits (bounded) for them to finish.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import gevent
import gevent.event

from esl_controller.calls.state import (
    CallInput,
    ChannelAnswer,
    ChannelBridge,
    ChannelCreate,
    ChannelExecuteComplete,
    ChannelHangup,
    ChannelHangupComplete,
    ChannelProgress,
    ChannelProgressMedia,
    Dtmf,
    ForkClosed,
    ForkConnected,
    ForkError,
    RuntimeShutdown,
)
from esl_controller.esl.protocol import Event

if TYPE_CHECKING:
    from esl_controller.calls.session import CallSession

log = logging.getLogger("esl_controller.calls.registry")

FORK_SUBCLASSES = (
    "mod_audio_fork::connect",
    "mod_audio_fork::connect_failed",
    "mod_audio_fork::disconnect",
    "mod_audio_fork::error",
)
CHANNEL_EVENTS = (
    "CHANNEL_CREATE",
    "CHANNEL_PROGRESS",
    "CHANNEL_PROGRESS_MEDIA",
    "CHANNEL_ANSWER",
    "CHANNEL_BRIDGE",
    "CHANNEL_HANGUP",
    "CHANNEL_HANGUP_COMPLETE",
    "CHANNEL_EXECUTE_COMPLETE",
    "DTMF",
)


def _int(value: str | None) -> int | None:
    if value is None:
        return None
    value = value.strip()
    return int(value) if value.isdigit() and len(value) < 10 else None


def event_time(event: Event) -> datetime:
    stamp = _int(event.get("Event-Date-Timestamp"))
    if stamp is None:
        raw = event.get("Event-Date-Timestamp") or ""
        stamp = int(raw) if raw.isdigit() and len(raw) <= 19 else None
    if stamp is None:
        return datetime.now(timezone.utc)
    return datetime.fromtimestamp(stamp / 1_000_000, timezone.utc)


def event_id(event: Event) -> str | None:
    core, seq = event.get("Core-UUID"), event.get("Event-Sequence")
    return f"{core}:{seq}" if core and seq else None


def _hangup_fields(event: Event) -> dict[str, Any]:
    return {
        "cause": event.get("Hangup-Cause") or event.variable("hangup_cause"),
        "sip_code": _int(event.variable("sip_term_status")),
        "disposition": event.variable("sip_hangup_disposition"),
    }


def event_to_input(event: Event, at: datetime | None = None) -> CallInput | None:
    """The reducer input an ESL event stands for (None: nothing the call state cares about)."""
    name = event.name
    common: dict[str, Any] = {"at": at or event_time(event), "event_id": event_id(event)}
    if name == "CHANNEL_CREATE":
        return ChannelCreate(
            channel_uuid=event.unique_id or None,
            already_answered=(event.get("Answer-State") == "answered"),
            **common,
        )
    if name == "CHANNEL_PROGRESS":
        return ChannelProgress(**common)
    if name == "CHANNEL_PROGRESS_MEDIA":
        return ChannelProgressMedia(**common)
    if name == "CHANNEL_ANSWER":
        return ChannelAnswer(**common)
    if name == "CHANNEL_BRIDGE":
        other = event.get("Other-Leg-Unique-ID") or event.get("Bridge-B-Unique-ID")
        return ChannelBridge(other_uuid=other, **common)
    if name == "CHANNEL_HANGUP":
        return ChannelHangup(**_hangup_fields(event), **common)
    if name == "CHANNEL_HANGUP_COMPLETE":
        return ChannelHangupComplete(
            **_hangup_fields(event),
            billsec=_int(event.variable("billsec")),
            duration=_int(event.variable("duration")),
            **common,
        )
    if name == "CHANNEL_EXECUTE_COMPLETE":
        return ChannelExecuteComplete(
            application=event.get("Application") or "",
            response=event.get("Application-Response"),
            **common,
        )
    if name == "DTMF":
        digit = (event.get("DTMF-Digit") or "")[:1]
        return Dtmf(digit=digit, **common) if digit else None
    if name == "CUSTOM":
        sub = event.subclass
        if sub == "mod_audio_fork::connect":
            return ForkConnected(**common)
        if sub == "mod_audio_fork::disconnect":
            return ForkClosed(reason="disconnect", **common)
        if sub in ("mod_audio_fork::connect_failed", "mod_audio_fork::error"):
            return ForkError(message=event.body_text[:500] or sub, **common)
    return None


class Registry:
    """Live sessions, looked up by call id or by FreeSWITCH channel uuid."""

    def __init__(self) -> None:
        self._by_call: dict[str, CallSession] = {}
        self._by_uuid: dict[str, CallSession] = {}
        self.counters: dict[str, int] = {
            "events_unknown_channel": 0,
            "events_routed": 0,
            "inbound_rejected_unknown_number": 0,
            "calls_started": 0,
        }
        self._changed = gevent.event.Event()

    # -- membership
    def add(self, session: CallSession) -> None:
        self._by_call[session.call_id] = session
        self.counters["calls_started"] += 1
        if session.channel_uuid:
            self._by_uuid[session.channel_uuid] = session
        self._signal()

    def bind_uuid(self, session: CallSession, uuid: str) -> None:
        self._by_uuid[uuid] = session
        self._signal()

    def _signal(self) -> None:
        changed, self._changed = self._changed, gevent.event.Event()
        changed.set()

    def wait_for(
        self, find: Callable[[], CallSession | None], timeout: float
    ) -> CallSession | None:
        """Wait (bounded) until ``find()`` returns a session (tests, tools)."""
        with gevent.Timeout(timeout, False):
            while True:
                changed = self._changed
                found = find()
                if found is not None:
                    return found
                changed.wait()
        return find()

    def remove(self, session: CallSession) -> None:
        if self._by_call.get(session.call_id) is session:
            del self._by_call[session.call_id]
        for uuid in [u for u, s in self._by_uuid.items() if s is session]:
            del self._by_uuid[uuid]

    def get(self, call_id: str) -> CallSession | None:
        return self._by_call.get(call_id)

    def by_channel(self, uuid: str) -> CallSession | None:
        return self._by_uuid.get(uuid)

    def sessions(self) -> list[CallSession]:
        return list(self._by_call.values())

    def __len__(self) -> int:
        return len(self._by_call)

    def count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    # -- routing
    def route_event(self, event: Event) -> bool:
        """An inbound-connection (or hook) event: feed it to the owning session. False if unknown."""
        session = self._by_uuid.get(event.unique_id)
        if session is None:
            self.counters["events_unknown_channel"] += 1
            return False
        item = event_to_input(event)
        if item is not None:
            session.feed(item)
            self.counters["events_routed"] += 1
        return True

    # -- shutdown
    def shutdown(self, timeout: float = 5.0) -> None:
        """End every live call with worker-shutdown and wait (bounded) for the sessions."""
        live = self.sessions()
        now = datetime.now(timezone.utc)
        for session in live:
            session.feed(RuntimeShutdown(at=now))
        with gevent.Timeout(timeout, False):
            for session in live:
                session.done.wait()
        for session in live:
            if not session.done.is_set():
                log.warning("call %s: session did not finish at shutdown", session.call_id)
                session.kill()
