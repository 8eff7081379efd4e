"""Restart reconciliation: calls this node owned that a previous run left live.

At start, every Call row that is not ended and is owned by this node is checked against
FreeSWITCH with ``uuid_exists`` over the inbound connection:

* the channel is gone -> ``ReconcileNotFound`` (ended, ``...-worker-died``, "the channel was gone");
* the channel is there -> a session is re-attached (registered by channel uuid, fed by the inbound
  connection's events, controllable again) and gets ``ReconcileFound``;
* FreeSWITCH is not configured, not reachable, web calls, calls with no channel ->
  ``RuntimeRestarted`` (ended with a clear message).

Nothing stays in-progress forever. Returns counts by outcome.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from esl_controller.calls import persist
from esl_controller.calls.registry import Registry
from esl_controller.calls.session import CallSession, SessionDeps
from esl_controller.calls.state import (
    RINGING,
    STATUS_ORDER,
    CallConfig,
    CallState,
    ReconcileFound,
    ReconcileNotFound,
    RuntimeRestarted,
    new_call,
)
from esl_controller.config import Settings
from esl_controller.esl import commands as cmds
from esl_controller.esl.errors import ESLError

log = logging.getLogger("esl_controller.calls.reconcile")

_DIRECTIONS = {"inboundPhoneCall": "inbound", "outboundPhoneCall": "outbound", "webCall": "web"}


def state_from_row(row: Any, config: CallConfig) -> CallState:
    direction = _DIRECTIONS.get(row.type, "web")
    state = new_call(
        row.id, direction, at=row.created_at, channel_uuid=row.channel_uuid, config=config
    )
    status = row.status if row.status in STATUS_ORDER else RINGING
    return replace(
        state,
        status=status,
        started_at=row.started_at,
        answered=row.started_at is not None,
    )


def _exists(inbound: Any, uuid: str, timeout: float) -> bool | None:
    """True/False from ``uuid_exists``; None when FreeSWITCH cannot tell us."""
    if inbound is None or getattr(inbound.state, "value", "") != "connected":
        return None
    try:
        result = inbound.api(cmds.uuid_exists(uuid), timeout=timeout)
    except (ESLError, cmds.CommandError) as exc:
        log.warning("reconcile: uuid_exists %s failed: %s", uuid, exc)
        return None
    text = result.text.strip().lower()
    if text in ("true", "false"):
        return text == "true"
    return None


def reconcile(settings: Settings, registry: Registry, deps: SessionDeps) -> dict[str, int]:
    counts = {"reattached": 0, "gone": 0, "ended": 0}
    config = CallConfig(
        max_duration_seconds=settings.calls.max_duration_seconds,
        command_timeout_seconds=settings.freeswitch.command_timeout * 2,
        start_fork=False,
    )
    for row in persist.live_calls(settings.node_id):
        if registry.get(row.id) is not None:
            continue
        state = state_from_row(row, config)
        session = CallSession(state, deps)
        now = datetime.now(timezone.utc)
        exists = None
        if state.direction != "web" and state.channel_uuid:
            exists = _exists(deps.inbound, state.channel_uuid, settings.freeswitch.command_timeout)
        if exists:
            registry.add(session)
            session.start()
            session.feed(ReconcileFound(at=now))
            counts["reattached"] += 1
            log.info("call %s: re-attached to channel %s", row.id, state.channel_uuid)
            continue
        # Processed inline: the session never runs its loop, so nothing lingers.
        session.process_now(
            ReconcileNotFound(at=now) if exists is False else RuntimeRestarted(at=now)
        )
        counts["gone" if exists is False else "ended"] += 1
        log.info(
            "call %s: ended at restart (%s)",
            row.id,
            "channel gone" if exists is False else "FreeSWITCH could not confirm it",
        )
    return counts
