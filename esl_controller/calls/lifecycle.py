"""The after-call side of live calls (I/O): server messages, capture, pricing, outputs, the report.

One :class:`CallLifecycle` per controller, handed to every session in ``SessionDeps.lifecycle``.
Its hooks never raise into the session and never block its queue for long:

* ``status_changed(call, previous)`` — a ``persist`` status listener: called INSIDE the transaction
  that writes a Call status (creation included), it queues the ``status-update`` jobs there (the
  outbox rule); ``committed()`` then wakes the deliverer.
* ``on_note(call_id, kind, data)`` — a pipeline notice the session stores (``message`` ->
  CallMessage, the rest -> CallEvent): stored and its server messages queued in ONE transaction:
  ``transcript`` (final, partial), ``conversation-update`` (and an assistant ``transcript`` for a
  spoken bot message), ``speech-update``, ``user-interrupted``, ``hang``. Which go out follows the
  assistant's ``serverMessages`` (the emitter resolves the targets).
* ``on_answered(session)`` — starts the packet capture (``settings.capture.enabled`` or the
  assistant's ``artifactPlan.pcapEnabled``) in a helper greenlet.
* ``on_finished(session)`` — the session is done: a background greenlet stops the capture (Artifact
  row, ``artifact.pcapUrl`` or ``artifact.pcapError``), prices the call, runs the bound structured
  outputs and the analysis, then queues exactly one ``end-of-call-report``. Work is bounded
  (``max_concurrent`` calls at once, every wait with a timeout); failures are CallEvents; when the
  report cannot be built in full one is still sent with what is known.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

import gevent
import gevent.event
import gevent.lock
import gevent.pool

from esl_controller.calls import persist
from esl_controller.db import database
from esl_controller.db.fields import utcnow
from esl_controller.db.models import Artifact, Call, CallEvent, CallMessage
from esl_controller.webhooks import messages as m

log = logging.getLogger("esl_controller.calls.lifecycle")

PCAP_MIMETYPE = "application/vnd.tcpdump.pcap"
#: seconds the report waits for structured outputs and analysis before it goes without them
REPORT_TIMEOUT = 300.0
#: seconds a call's after-call work waits for a free slot
SLOT_TIMEOUT = 120.0
REPORT_ATTEMPTS = 5
_NOTE_TYPES = {
    "pipeline.transcript": "transcript",
    "pipeline.speech": "speech-update",
    "pipeline.interrupted": "user-interrupted",
    "pipeline.hang": "hang",
}


class CallLifecycle:
    def __init__(
        self,
        settings: Any,
        emitter: Any = None,
        *,
        capture: Any = None,
        model_factory: Callable[[Any], Any] | None = None,
        max_concurrent: int = 4,
        report_timeout: float = REPORT_TIMEOUT,
        retry_delay: float = 1.0,
        structured_options: Mapping[str, Any] | None = None,
    ) -> None:
        from esl_controller.observe.pricing import RateCardSource

        self.settings = settings
        self.capture = capture
        self.model_factory = model_factory
        self.rate_card = RateCardSource(settings.observe.rate_card_path)
        self.report_timeout = report_timeout
        self.retry_delay = retry_delay
        self.structured_options = dict(structured_options or {})
        self._emitter: Any = None
        self._wake: Callable[[], None] | None = None
        self.set_emitter(emitter)
        self._slots = gevent.lock.BoundedSemaphore(max(1, max_concurrent))
        self._group = gevent.pool.Group()
        self._captures: dict[str, gevent.Greenlet] = {}
        self._reported: set[str] = set()
        self._assistant_transcripts: set[str] = set()
        self.counters: dict[str, int] = {"reports": 0, "emit_failures": 0, "after_call_errors": 0}

    def set_emitter(self, emitter: Any) -> None:
        """The webhook Emitter (None: no server messages). Jobs are queued without waking the
        deliverer inside the transaction; it is woken once the transaction committed."""
        if emitter is None:
            self._emitter, self._wake = None, None
            return
        from esl_controller.webhooks.emit import Emitter

        self._emitter = Emitter(emitter.org_id, emitter.box, None, emitter.max_attempts)
        self._wake = emitter.wake

    @property
    def emitting(self) -> bool:
        return self._emitter is not None

    # ------------------------------------------------------------------ start / stop
    def start(self) -> None:
        persist.add_status_listener(self)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop listening; give running after-call work ``timeout`` seconds, then kill it."""
        persist.remove_status_listener(self)
        self._group.join(timeout=timeout)
        self._group.kill(block=True, timeout=timeout)
        if self.capture is not None:
            try:
                self.capture.stop_all(timeout)
            except Exception:
                log.exception("stopping captures failed")

    def wait_idle(self, timeout: float) -> bool:
        """Wait (bounded) until no after-call work runs (tests, shutdown)."""
        return self._group.join(timeout=timeout)

    # ------------------------------------------------------------------ status (persist listener)
    def status_changed(self, call: Call, previous: str | None) -> None:
        if self._emitter is None:
            return
        status = call.status
        if status not in m.CALL_STATUSES:
            return

        def build(ctx: m.MessageContext) -> dict[str, Any]:
            reason = call.ended_reason or "unknown" if status == "ended" else None
            return m.status_update(ctx, status, ended_reason=reason)

        self._emit_guarded(
            call.id, "status-update", lambda: self._emitter.emit(call, "status-update", build)
        )

    def committed(self) -> None:
        self._wake_deliverer()

    # ------------------------------------------------------------------ pipeline notes
    def on_note(self, call_id: str, kind: str, data: dict[str, Any]) -> None:
        """Store a pipeline note (as the session did) and queue its server messages, in one
        transaction. Storing errors propagate (as before); emission errors are contained."""
        queued = False
        with persist.transaction():
            if kind == "message":
                persist.add_message(call_id, data)
            else:
                # usage rows are what pricing reads (observe.pricing.USAGE_EVENT)
                stored = "usage" if kind == "pipeline.usage" else kind
                persist.record(call_id, stored[:64], data, source="pipeline")
            if self._emitter is not None:
                queued = self._emit_note(call_id, kind, data)
        if queued:
            self._wake_deliverer()

    def _emit_note(self, call_id: str, kind: str, data: Mapping[str, Any]) -> bool:
        message_type = "conversation-update" if kind == "message" else _NOTE_TYPES.get(kind)
        if message_type is None:
            return False
        call = Call.get_or_none(Call.id == call_id)
        if call is None:
            return False
        emitter = self._emitter
        n = 0
        if kind == "pipeline.transcript":
            role, ttype = data.get("role"), data.get("transcriptType")
            text = str(data.get("transcript") or "")
            if role not in ("user", "assistant") or ttype not in ("partial", "final") or not text:
                return False
            if role == "assistant":
                self._assistant_transcripts.add(call_id)
            n += self._emit_transcript(call, role, ttype, text)
        elif kind == "message":
            if data.get("role") == "bot" and call_id not in self._assistant_transcripts:
                text = str(data.get("message") or "").strip()
                if text:
                    n += self._emit_transcript(call, "assistant", "final", text)

            def conversation(ctx: m.MessageContext) -> dict[str, Any]:
                return m.conversation_update(ctx, _history(call_id))

            n += self._emit_guarded(
                call_id,
                "conversation-update",
                lambda: emitter.emit(call, "conversation-update", conversation),
            )
        elif kind == "pipeline.speech":
            status, role = data.get("status"), data.get("role")
            if status not in ("started", "stopped") or role not in ("assistant", "user"):
                return False
            turn = int(data.get("turn") or 0)
            n += self._emit_guarded(
                call_id,
                "speech-update",
                lambda: emitter.emit(
                    call, "speech-update", lambda ctx: m.speech_update(ctx, status, role, turn)
                ),
            )
        elif kind == "pipeline.interrupted":
            turn = data.get("turnId", data.get("turn"))
            turn_id = None if turn is None else str(turn)
            n += self._emit_guarded(
                call_id,
                "user-interrupted",
                lambda: emitter.emit(
                    call, "user-interrupted", lambda ctx: m.user_interrupted(ctx, turn_id)
                ),
            )
        elif kind == "pipeline.hang":
            n += self._emit_guarded(call_id, "hang", lambda: emitter.emit(call, "hang", m.hang))
        return n > 0

    def _emit_transcript(self, call: Call, role: str, ttype: str, text: str) -> int:
        emitter = self._emitter
        server_messages = _server_messages(emitter, call)
        as_type = m.wanted_as("transcript", server_messages, transcript_type=ttype) or "transcript"

        def build(ctx: m.MessageContext) -> dict[str, Any]:
            return m.transcript(ctx, role, ttype, text, as_type=as_type)

        return self._emit_guarded(
            call.id,
            "transcript",
            lambda: emitter.emit(call, "transcript", build, transcript_type=ttype),
        )

    def _emit_guarded(self, call_id: str, what: str, fn: Callable[[], int]) -> int:
        """Run one emission in a savepoint: a failure is logged and recorded (in the enclosing
        transaction) instead of rolling back the change that caused it."""
        try:
            with database.atomic():
                return int(fn() or 0)
        except Exception as exc:
            self.counters["emit_failures"] += 1
            log.exception("call %s: %s not queued", call_id, what)
            try:
                with database.atomic():
                    CallEvent.create(
                        call=call_id,
                        kind="webhook.emit-failed",
                        source="runtime",
                        level="ERROR",
                        data={"type": what, "error": f"{type(exc).__name__}: {exc}"[:500]},
                    )
            except Exception:
                log.exception("call %s: recording the emission failure failed", call_id)
            return 0

    def _wake_deliverer(self) -> None:
        wake = self._wake
        if wake is not None:
            try:
                wake()
            except Exception:
                log.exception("waking the webhook deliverer failed")

    # ------------------------------------------------------------------ answer: capture
    def on_answered(self, session: Any) -> None:
        if self.capture is None or session.call_id in self._captures:
            return
        channel = _channel_vars(session)
        g = gevent.spawn(self._start_capture, session.call_id, channel)
        self._captures[session.call_id] = g
        self._group.add(g)

    def _capture_wanted(self, call_id: str) -> bool:
        from esl_controller.observe.structured import call_assistant

        with persist.transaction():
            call = Call.get_or_none(Call.id == call_id)
            assistant = call_assistant(call) if call is not None else {}
        plan = assistant.get("artifactPlan") if isinstance(assistant, Mapping) else None
        if isinstance(plan, Mapping) and isinstance(plan.get("pcapEnabled"), bool):
            return plan["pcapEnabled"]
        return bool(self.settings.capture.enabled)

    def _start_capture(self, call_id: str, channel: dict[str, str]) -> Any:
        try:
            if not self._capture_wanted(call_id):
                return None
            status = self.capture.start(call_id, channel)
        except Exception as exc:
            log.exception("call %s: capture not started", call_id)
            status = None
            self._record(call_id, "capture", "ERROR", {"state": "failed", "reason": str(exc)})
            self._merge_artifact(call_id, pcapError=f"capture failed to start: {exc}")
            return None
        self._record(call_id, "capture", _level(status), _status_dict(status))
        if getattr(status, "state", "") == "failed":
            self._merge_artifact(call_id, pcapError=status.reason or "capture failed")
        return status

    def _stop_capture(self, call_id: str) -> None:
        g = self._captures.pop(call_id, None)
        if g is None:
            return
        started = g.get(timeout=self.settings.capture.start_timeout + 5.0, block=True)
        if started is None or getattr(started, "state", "") == "failed":
            return
        status = self.capture.stop(call_id)
        if status is None:
            return
        self._record(call_id, "capture", _level(status), _status_dict(status))
        path = getattr(status, "path", None)
        sealed = status.state == "sealed" and path
        with persist.transaction():
            call = Call.get_or_none(Call.id == call_id)
            if call is None:
                return
            size = 0
            if sealed:
                try:
                    from pathlib import Path

                    size = Path(path).stat().st_size
                except OSError:
                    sealed = False
            art = Artifact.get_or_none((Artifact.call == call_id) & (Artifact.kind == "pcap"))
            values = {
                "path": str(path or ""),
                "bytes": size,
                "mimetype": PCAP_MIMETYPE,
                "status": "sealed" if sealed else "failed",
                "data": {"reason": status.reason, "packets": status.packets},
            }
            if art is None:
                Artifact.create(org_id=call.org_id, call=call_id, kind="pcap", **values)
            else:
                Artifact.update(updated_at=utcnow(), **values).where(
                    Artifact.id == art.id
                ).execute()
            if sealed:
                url = f"{self.settings.public_url.rstrip('/')}/call/{call_id}/pcap"
                self._merge_artifact(call_id, pcapUrl=url)
            else:
                self._merge_artifact(call_id, pcapError=status.reason or "no capture file")

    # ------------------------------------------------------------------ the end
    def on_finished(self, session: Any) -> None:
        """The session finished: the after-call work runs in the background."""
        self._assistant_transcripts.discard(session.call_id)
        g = gevent.spawn(self._after_call, session.call_id, getattr(session, "gateway", None))
        self._group.add(g)

    def _after_call(self, call_id: str, gateway: str | None) -> None:
        try:
            self._after_call_steps(call_id, gateway)
        finally:
            self._reported.discard(call_id)

    def _after_call_steps(self, call_id: str, gateway: str | None) -> None:
        if self.capture is not None:
            self._step(call_id, "capture", lambda: self._stop_capture(call_id))
        if not self._slots.acquire(timeout=SLOT_TIMEOUT):
            self._record(call_id, "after-call", "WARNING", {"error": "no free slot in time"})
            self._report(call_id, partial="no free slot for the after-call work in time")
            return
        try:
            if gateway:
                self._step(call_id, "trunk", lambda: self._set_trunk(call_id, gateway))
            self._step(call_id, "pricing", lambda: self._price(call_id))
            wants = self._step(call_id, "analysis", lambda: self._needs_outputs(call_id))
        finally:
            self._slots.release()
        if not wants:
            self._report(call_id)
            return
        from esl_controller.observe.structured import queue_for_ended_call

        done = gevent.event.Event()

        def on_done(cid: str, results: list[dict[str, Any]]) -> None:
            failed = [r.get("id") for r in results if r.get("status") != "done"]
            self._report(cid, partial=f"structured outputs failed: {failed}" if failed else None)
            done.set()

        g = queue_for_ended_call(
            call_id, self.model_factory, on_done=on_done, **self.structured_options
        )
        if not done.wait(timeout=self.report_timeout):
            # report first: killing the runner calls on_done, which must not report without a word
            self._report(call_id, partial="structured outputs and analysis not done in time")
            self._record(
                call_id,
                "after-call",
                "WARNING",
                {"error": f"structured outputs not done in {self.report_timeout}s"},
            )
            g.kill(block=True, timeout=5.0)

    def _step(self, call_id: str, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as exc:
            self.counters["after_call_errors"] += 1
            log.exception("call %s: after-call %s failed", call_id, what)
            self._record(
                call_id,
                "after-call",
                "ERROR",
                {"step": what, "error": f"{type(exc).__name__}: {exc}"},
            )
            return None

    def _set_trunk(self, call_id: str, gateway: str) -> None:
        with persist.transaction():
            call = Call.get_or_none(Call.id == call_id)
            if call is None or (call.data or {}).get("trunk"):
                return
        persist.set_data(call_id, trunk=gateway)

    def _price(self, call_id: str) -> None:
        from esl_controller.observe.pricing import price_if_ended

        with persist.transaction():
            price_if_ended(call_id, self.rate_card)

    def _needs_outputs(self, call_id: str) -> bool:
        from esl_controller.observe.structured import call_assistant, outputs_for_assistant

        with persist.transaction():
            call = Call.get_or_none(Call.id == call_id)
            if call is None:
                return False
            assistant = call_assistant(call)
            if call.assistant_id and outputs_for_assistant(call.assistant_id):
                return True
        plan = assistant.get("artifactPlan") or {}
        if isinstance(plan, Mapping) and plan.get("structuredOutputIds"):
            return True
        analysis = assistant.get("analysisPlan") or {}
        if not isinstance(analysis, Mapping):
            return False
        summary = analysis.get("summaryPlan") or {}
        data = analysis.get("structuredDataPlan") or {}
        return (isinstance(summary, Mapping) and summary.get("enabled") is True) or (
            isinstance(data, Mapping) and bool(data.get("enabled")) and bool(data.get("schema"))
        )

    def _report(self, call_id: str, partial: str | None = None) -> None:
        """Queue the call's one end-of-call-report (retried a few times; never raises)."""
        if call_id in self._reported:
            return
        self._reported.add(call_id)
        if self._emitter is None:
            return
        for attempt in range(1, REPORT_ATTEMPTS + 1):
            try:
                if self._queue_report(call_id, partial):
                    self._wake_deliverer()
                self.counters["reports"] += 1
                return
            except Exception as exc:
                log.warning(
                    "call %s: end-of-call-report not queued (try %d): %s", call_id, attempt, exc
                )
                last = f"{type(exc).__name__}: {exc}"
                if attempt < REPORT_ATTEMPTS:
                    gevent.sleep(self.retry_delay * attempt)
        self._record(
            call_id, "webhook.emit-failed", "ERROR", {"type": "end-of-call-report", "error": last}
        )

    def _queue_report(self, call_id: str, partial: str | None) -> int:
        emitter = self._emitter
        with persist.transaction():
            call = Call.get_or_none(Call.id == call_id)
            if call is None:
                return 0
            try:
                with database.atomic():
                    n = emitter.end_of_call_report(call)
            except Exception as exc:
                # build what is known: no artifact history, costs or analysis
                log.exception(
                    "call %s: full end-of-call-report failed; sending a short one", call_id
                )
                partial = f"report incomplete: {type(exc).__name__}: {exc}"

                def short(ctx: m.MessageContext) -> dict[str, Any]:
                    return m.end_of_call_report(
                        ctx,
                        ended_reason=call.ended_reason or "unknown",
                        artifact=dict((ctx.call or {}).get("artifact") or {}),
                    )

                n = emitter.emit(call, "end-of-call-report", short)
            CallEvent.create(
                call=call_id,
                kind="webhook.end-of-call-report",
                source="runtime",
                level="WARNING" if partial else "INFO",
                data={"jobs": n, **({"partial": partial} if partial else {})},
            )
            return n

    # ------------------------------------------------------------------ helpers
    def _record(self, call_id: str, kind: str, level: str, data: dict[str, Any]) -> None:
        try:
            with persist.transaction():
                CallEvent.create(call=call_id, kind=kind, source="runtime", level=level, data=data)
        except Exception:
            log.exception("call %s: recording %s failed", call_id, kind)

    def _merge_artifact(self, call_id: str, **values: Any) -> None:
        with persist.transaction():
            call = Call.get_or_none(Call.id == call_id)
            if call is None:
                return
            data = dict(call.data or {})
            art = dict(data.get("artifact") or {})
            art.update(values)
            if "pcapUrl" in values:
                art.pop("pcapError", None)
            data["artifact"] = art
            call.data = data
            call.touch()
            call.save()


def _history(call_id: str) -> list[dict[str, Any]]:
    rows = [
        {
            "role": r.role,
            "message": r.message,
            "time": r.time,
            "endTime": r.end_time,
            "secondsFromStart": r.seconds_from_start,
            "duration": r.duration,
            **(r.data or {}),
        }
        for r in CallMessage.select().where(CallMessage.call == call_id).order_by(CallMessage.seq)
    ]
    return m.call_messages(rows)


def _server_messages(emitter: Any, call: Call) -> list[str] | None:
    try:
        _, assistant, _ = emitter.context_for(call)
    except Exception:
        return None
    value = (assistant or {}).get("serverMessages")
    return list(value) if isinstance(value, list) else None


def _channel_vars(session: Any) -> dict[str, str]:
    sock = getattr(session, "socket", None)
    data = getattr(sock, "channel_data", None)
    headers = getattr(data, "headers", None) or {}
    return {str(k): str(v) for k, v in headers.items()}


def _status_dict(status: Any) -> dict[str, Any]:
    if status is None:
        return {"state": "none"}
    return {
        "state": status.state,
        "reason": status.reason,
        "path": status.path,
        "interface": status.interface,
        "filter": status.filter,
        "packets": status.packets,
        "bytes": status.bytes,
    }


def _level(status: Any) -> str:
    return "WARNING" if getattr(status, "state", "") == "failed" else "INFO"
