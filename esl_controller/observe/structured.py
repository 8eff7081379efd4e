"""Structured outputs and call analysis after the call (api-compat.md §3, §8).

For an ended call, :func:`run_structured_outputs` runs the structured outputs bound to the call's
assistant (outputs whose ``assistantIds`` name it, plus the assistant's ``artifactPlan.structuredOutputIds``)
or the ids given, and, when asked, the assistant's ``analysisPlan``:

* ``type: "ai"`` (default): the model is asked in JSON-schema mode (``ChatRequest(json_schema=...)``): a system
  prompt built from the output's name and description, then the conversation (CallMessage rows) as
  ``user`` / ``assistant`` messages. A non-object schema is wrapped as ``{"result": <schema>}`` (hosted JSON
  modes need an object) and unwrapped after. The answer is parsed as JSON and validated with ``jsonschema``;
  a provider error that may pass, unparsable JSON or a value that fails the schema is retried up to
  ``max_attempts`` times, then the run is ``failed`` with the error. The output's own ``model`` block picks
  the model when it names a provider, else the assistant's ``model``, else the registry default (scripted).
  ``model.messages`` replace the default prompt; ``{{transcript}}``, ``{{structuredOutput.name}}``,
  ``{{structuredOutput.description}}`` and ``{{structuredOutput.schema}}`` are filled in.
* ``type: "regex"``: ``re.search(regex, transcript)``, no model. A boolean schema gets whether it matched;
  otherwise the first group (or the whole match), converted for number/integer schemas; ``null`` when
  nothing matched.

Every output run is a :class:`StructuredOutputRun` row (``queued`` -> ``running`` -> ``done`` | ``failed``,
``attempts``, ``error``, ``result``) and a ``structured-output`` CallEvent. Results land in
``call.artifact.structuredOutputs[<id>] = {name, result}``. With ``analysis=True``: the
``analysisPlan.structuredDataPlan`` schema (when ``enabled``) -> ``call.analysis.structuredData`` and
``summaryPlan`` (when ``enabled: true``; a plain-text request) -> ``call.analysis.summary``, both skipped
under ``minMessagesThreshold`` (default 2) spoken messages; their failures are ``analysis`` CallEvents.

:func:`queue_for_ended_call` is what the call session calls at hangup: it returns at once; a greenlet
writes the ``queued`` rows, waits for one of a bounded number of slots and runs everything.
"""

from __future__ import annotations

import json
import logging
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import gevent
import jsonschema
from gevent.lock import BoundedSemaphore
from peewee import Value

from esl_controller.db import database
from esl_controller.db.fields import utcnow
from esl_controller.db.models import (
    Assistant,
    Call,
    CallEvent,
    CallMessage,
    StructuredOutput,
    StructuredOutputRun,
)
from esl_controller.observe.timeline import transcript_text
from esl_controller.pipeline.assistant import merge_overrides
from esl_controller.pipeline.providers.base import (
    ChatModel,
    ChatRequest,
    ModelDone,
    ProviderError,
    TextDelta,
)

log = logging.getLogger("esl_controller.observe.structured")

ModelFactory = Callable[[Mapping[str, Any] | None], ChatModel]

DEFAULT_TIMEOUT = 30.0
DEFAULT_ATTEMPTS = 3
DEFAULT_PROMPT = (
    "You extract structured data from a phone call between an AI assistant and a customer.\n"
    "Output: {name}.{description}\n"
    "Answer with JSON only, matching the JSON schema you are given."
)
SUMMARY_PROMPT = (
    "You are an expert note-taker. Summarize the following phone call in 2-3 sentences, "
    "stating the customer's request and the outcome."
)
_SPOKEN = ("user", "bot", "assistant")


class StructuredRunError(Exception):
    """The run cannot start (unknown call, call not ended, unknown outputs)."""


class CallNotFound(StructuredRunError):
    pass


class CallNotEnded(StructuredRunError):
    pass


class UnknownOutputs(StructuredRunError):
    def __init__(self, ids: Sequence[str]) -> None:
        super().__init__(", ".join(f"structured output {i} not found" for i in ids))
        self.ids = list(ids)


class _Failure(Exception):
    def __init__(self, message: str, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


# -- pure pieces -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutputDef:
    """One structured output to run (a stored one, or a transient definition)."""

    id: str
    name: str
    schema: Mapping[str, Any]
    description: str = ""
    type: str = "ai"
    regex: str | None = None
    model: Mapping[str, Any] | None = None

    @classmethod
    def from_data(cls, id: str, data: Mapping[str, Any]) -> OutputDef:
        model = data.get("model")
        return cls(
            id=id,
            name=str(data.get("name") or ""),
            schema=dict(data.get("schema") or {}),
            description=str(data.get("description") or ""),
            type=str(data.get("type") or "ai"),
            regex=data.get("regex"),
            model=dict(model) if isinstance(model, Mapping) else None,
        )


def conversation(rows: Iterable[CallMessage]) -> list[dict[str, str]]:
    """CallMessage rows -> chat messages: what was said, as ``user`` and ``assistant`` turns."""
    out = []
    for m in rows:
        if m.role in _SPOKEN and m.message:
            out.append({"role": "user" if m.role == "user" else "assistant", "content": m.message})
    return out


def request_schema(schema: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
    """The schema sent to the model, and whether it wraps a non-object schema as ``{"result": ...}``."""
    if schema.get("type") == "object":
        return dict(schema), False
    return {"type": "object", "properties": {"result": dict(schema)}, "required": ["result"]}, True


def parse_json(text: str) -> Any:
    """The model's answer as JSON (a fenced ```json block is accepted)."""
    body = text.strip()
    fenced = re.match(r"^```(?:json)?\s*(.*?)\s*```$", body, re.DOTALL)
    if fenced:
        body = fenced.group(1)
    try:
        return json.loads(body)
    except ValueError as exc:
        raise _Failure(f"the model's answer is not JSON: {exc}: {body[:200]!r}") from None


def check_schema(schema: Mapping[str, Any]) -> None:
    """Raise a non-retryable failure when the schema itself is not a valid JSON Schema."""
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise _Failure(f"invalid schema: {exc.message}", retryable=False) from None


def validation_error(schema: Mapping[str, Any], value: Any) -> str | None:
    """The first schema violation as ``<path>: <message>``, or None when ``value`` is valid."""
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    errors = sorted(cls(schema).iter_errors(value), key=lambda e: list(e.absolute_path))
    if not errors:
        return None
    err = errors[0]
    where = "/".join(str(p) for p in err.absolute_path) or "(root)"
    return f"schema validation failed at {where}: {err.message}"


_REGEX_LITERAL = re.compile(r"^/(?P<body>.*)/(?P<flags>[a-z]*)$", re.DOTALL)
_FLAGS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL}


def compile_regex(pattern: str) -> re.Pattern[str]:
    """A raw pattern, or a JavaScript-style ``/body/flags`` literal (flags i, m, s; others ignored)."""
    flags = 0
    literal = _REGEX_LITERAL.match(pattern)
    if literal:
        pattern = literal.group("body")
        for f in literal.group("flags"):
            flags |= _FLAGS.get(f, 0)
    try:
        return re.compile(pattern, flags)
    except re.error as exc:
        raise _Failure(f"invalid regex: {exc}", retryable=False) from None


def regex_result(out: OutputDef, transcript: str) -> Any:
    """A regex output's value: matched or not (boolean schema), else the first group or the match."""
    if not out.regex:
        raise _Failure("regex output has no regex", retryable=False)
    match = compile_regex(out.regex).search(transcript)
    kind = out.schema.get("type")
    if kind == "boolean":
        return match is not None
    if match is None:
        return None
    text = next((g for g in match.groups() if g is not None), match.group(0))
    if kind in ("number", "integer"):
        try:
            return int(text) if kind == "integer" else float(text)
        except ValueError:
            raise _Failure(f"regex matched {text!r}, not a {kind}", retryable=False) from None
    if kind == "array":
        return [m.group(0) for m in compile_regex(out.regex).finditer(transcript)]
    return text


def _fill(template: str, values: Mapping[str, str]) -> str:
    for key, value in values.items():
        template = re.sub(r"\{\{\s*" + re.escape(key) + r"\s*\}\}", lambda _m, v=value: v, template)
    return template


def extraction_messages(
    out: OutputDef, talk: list[dict[str, str]], transcript: str
) -> list[dict[str, str]]:
    """The prompt: the output's ``model.messages`` (templated) or the default system prompt + the talk."""
    custom = (out.model or {}).get("messages")
    if isinstance(custom, list) and custom:
        values = {
            "transcript": transcript,
            "messages": json.dumps(talk),
            "structuredOutput.name": out.name,
            "structuredOutput.description": out.description,
            "structuredOutput.schema": json.dumps(out.schema),
            "structuredOutput": json.dumps({"name": out.name, "schema": out.schema}),
        }
        return [
            {
                "role": str(m.get("role") or "system"),
                "content": _fill(str(m.get("content") or ""), values),
            }
            for m in custom
            if isinstance(m, Mapping)
        ]
    desc = f" {out.description}" if out.description else ""
    return [
        {"role": "system", "content": DEFAULT_PROMPT.format(name=out.name, description=desc)},
        *talk,
    ]


# -- the model ---------------------------------------------------------------------------------------


def _ask(model: ChatModel, request: ChatRequest, timeout: float) -> str:
    """The whole text answer of one request (bounded by ``timeout``)."""
    parts: list[str] = []
    try:
        with gevent.Timeout(timeout, _Failure(f"model timed out after {timeout:g}s")):
            for chunk in model.stream(request, timeout=timeout):
                if isinstance(chunk, TextDelta):
                    parts.append(chunk.text)
                elif isinstance(chunk, ModelDone):
                    break
    except ProviderError as exc:
        raise _Failure(f"{exc.provider}: {exc}", retryable=exc.retryable) from None
    return "".join(parts)


def _extract(model: ChatModel, out: OutputDef, talk: list[dict[str, str]], transcript: str,
             timeout: float) -> Any:  # fmt: skip
    check_schema(out.schema)
    schema, wrapped = request_schema(out.schema)
    schema.setdefault("title", out.name or "output")
    request = ChatRequest(
        messages=extraction_messages(out, talk, transcript),
        json_schema=schema,
        temperature=0,
        metadata={"purpose": "structured-output", "structuredOutputId": out.id},
    )
    value = parse_json(_ask(model, request, timeout))
    if wrapped:
        if not isinstance(value, dict) or "result" not in value:
            raise _Failure('schema validation failed at (root): expected {"result": ...}')
        value = value["result"]
    error = validation_error(out.schema, value)
    if error:
        raise _Failure(error)
    return value


class _Models:
    """Models built once per distinct config during one run."""

    def __init__(self, factory: ModelFactory | None) -> None:
        if factory is None:
            from esl_controller.pipeline.providers.registry import build_model

            factory = build_model
        self.factory = factory
        self._built: dict[str, ChatModel] = {}

    def get(self, config: Mapping[str, Any] | None) -> ChatModel:
        key = json.dumps(config or {}, sort_keys=True, default=str)
        if key not in self._built:
            try:
                self._built[key] = self.factory(config)
            except (LookupError, ValueError, ImportError) as exc:
                raise _Failure(f"model unavailable: {exc}", retryable=False) from None
        return self._built[key]


def _model_config(out: OutputDef | None, assistant: Mapping[str, Any]) -> Mapping[str, Any] | None:
    if out is not None and out.model and out.model.get("provider"):
        return {k: v for k, v in out.model.items() if k != "messages"}
    model = assistant.get("model")
    return model if isinstance(model, Mapping) else None


def _attempt(fn: Callable[[], Any], attempts: int, delay: float, on_try: Callable[[int], None]):
    """(ok, value_or_error, tries): ``fn`` retried while its failure is retryable."""
    error = ""
    for n in range(1, max(1, attempts) + 1):
        on_try(n)
        try:
            return True, fn(), n
        except _Failure as exc:
            error = str(exc)
            if not exc.retryable:
                return False, error, n
        except Exception as exc:  # noqa: BLE001 - a provider bug fails this output, not the runner
            log.exception("structured output attempt failed")
            return False, f"{type(exc).__name__}: {exc}", n
        if n < attempts and delay > 0:
            gevent.sleep(delay * n)
    return False, error, max(1, attempts)


# -- the database ------------------------------------------------------------------------------------


@contextmanager
def _tx():
    """A connection (opened if needed) and one short transaction."""
    opened = database.is_closed()
    if opened:
        database.connect()
    try:
        with database.atomic():
            yield
    finally:
        if opened and not database.in_transaction():
            database.close()


def outputs_for_assistant(assistant_id: str) -> list[StructuredOutput]:
    """Outputs whose ``assistantIds`` contain the assistant, oldest first (same query as the API's)."""
    ident = assistant_id.lower()
    candidates = (
        StructuredOutput.select()
        .where(StructuredOutput.data ** Value(f'%"{ident}"%', converter=False))
        .order_by(StructuredOutput.created_at, StructuredOutput.id)
    )
    return [row for row in candidates if ident in ((row.data or {}).get("assistantIds") or [])]


def call_assistant(call: Call) -> dict[str, Any]:
    """The assistant the call ran with: the stored assistant (or the inline one) plus the call's overrides."""
    base: dict[str, Any] = {}
    data = call.data or {}
    if call.assistant_id:
        row = Assistant.get_or_none(Assistant.id == call.assistant_id)
        if row is not None:
            base = dict(row.data or {})
    if not base and isinstance(data.get("assistant"), Mapping):
        base = dict(data["assistant"])
    overrides = data.get("assistantOverrides")
    return merge_overrides(base, overrides if isinstance(overrides, Mapping) else None)


def _bound_ids(call: Call, assistant: Mapping[str, Any]) -> list[str]:
    ids: list[str] = []
    if call.assistant_id:
        ids += [row.id for row in outputs_for_assistant(call.assistant_id)]
    plan = assistant.get("artifactPlan") or {}
    for i in plan.get("structuredOutputIds") or () if isinstance(plan, Mapping) else ():
        if isinstance(i, str) and i.lower() not in ids:
            ids.append(i.lower())
    return ids


def _load_call(call_id: str) -> Call:
    call = Call.get_or_none(Call.id == call_id.lower())
    if call is None:
        raise CallNotFound(f"call {call_id} not found")
    if call.status != "ended":
        raise CallNotEnded(f"call {call_id} has not ended (status {call.status})")
    return call


@dataclass
class _Plan:
    call: Call
    assistant: dict[str, Any]
    items: list[tuple[OutputDef, StructuredOutputRun | None]]


def prepare(
    call_id: str,
    output_ids: Sequence[str] | None = None,
    transient: Sequence[OutputDef] = (),
    *,
    record: bool = True,
) -> _Plan:
    """Check the call and the outputs and write the ``queued`` run rows (one transaction)."""
    with _tx():
        call = _load_call(call_id)
        assistant = call_assistant(call)
        ids = (
            [i.lower() for i in output_ids]
            if output_ids is not None
            else _bound_ids(call, assistant)
        )
        rows = (
            {r.id: r for r in StructuredOutput.select().where(StructuredOutput.id.in_(ids))}
            if ids
            else {}
        )
        missing = [i for i in ids if i not in rows]
        if missing and output_ids is not None:
            raise UnknownOutputs(missing)
        if missing:
            log.warning("call %s: bound structured outputs not found: %s", call.id, missing)
        items: list[tuple[OutputDef, StructuredOutputRun | None]] = []
        for i in dict.fromkeys(i for i in ids if i in rows):
            out = OutputDef.from_data(i, {**(rows[i].data or {}), "name": rows[i].name})
            run = None
            if record:
                run = StructuredOutputRun.create(
                    org_id=call.org_id, structured_output=i, call_id=call.id, status="queued"
                )
            items.append((out, run))
        items += [(out, None) for out in transient]
        return _Plan(call, assistant, items)


def _save_run(run: StructuredOutputRun | None, **fields: Any) -> None:
    if run is None:
        return
    for key, value in fields.items():
        setattr(run, key, value)
    run.touch()
    with _tx():
        run.save()


def _store(call_id: str, artifact: Mapping[str, Any] | None = None,
           analysis: Mapping[str, Any] | None = None) -> None:  # fmt: skip
    """Merge results into Call.data (the row re-read, and locked on PostgreSQL, in the transaction)."""
    with _tx():
        query = Call.select().where(Call.id == call_id)
        if getattr(database.obj, "for_update", False):
            query = query.for_update()
        call = query.get()
        data = dict(call.data or {})
        if artifact:
            art = dict(data.get("artifact") or {})
            outputs = dict(art.get("structuredOutputs") or {})
            outputs.update(artifact)
            art["structuredOutputs"] = outputs
            data["artifact"] = art
        if analysis:
            data["analysis"] = {**dict(data.get("analysis") or {}), **analysis}
        call.data = data
        call.touch()
        call.save()


def _event(call_id: str, kind: str, level: str, data: dict[str, Any]) -> None:
    with _tx():
        CallEvent.create(call=call_id, kind=kind, source="runtime", level=level, data=data)


def execute(
    plan: _Plan,
    model_factory: ModelFactory | None = None,
    *,
    analysis: bool = False,
    store: bool = True,
    max_attempts: int = DEFAULT_ATTEMPTS,
    timeout: float = DEFAULT_TIMEOUT,
    retry_delay: float = 1.0,
) -> list[dict[str, Any]]:
    """Run a prepared plan; returns one result dict per output (``id, name, status, result, error...``)."""
    call = plan.call
    with _tx():
        rows = list(
            CallMessage.select().where(CallMessage.call == call.id).order_by(CallMessage.seq)
        )
    talk, transcript = conversation(rows), transcript_text(rows)
    models = _Models(model_factory)
    results = []
    for out, run in plan.items:
        _save_run(run, status="running")

        def once(out: OutputDef = out) -> Any:
            if out.type == "regex":
                value = regex_result(out, transcript)
                error = None if value is None else validation_error(out.schema, value)
                if error:
                    raise _Failure(error, retryable=False)
                return value
            return _extract(
                models.get(_model_config(out, plan.assistant)), out, talk, transcript, timeout
            )

        ok, value, tries = _attempt(
            once, max_attempts, retry_delay, lambda n, run=run: _save_run(run, attempts=n)
        )
        status = "done" if ok else "failed"
        _save_run(run, status=status, attempts=tries, result=value if ok else None,
                  error=None if ok else value, finished_at=utcnow())  # fmt: skip
        item = {"id": out.id, "name": out.name, "status": status, "attempts": tries,
                "result": value if ok else None, "error": None if ok else value,
                "runId": run.id if run is not None else None}  # fmt: skip
        results.append(item)
        if ok and store:
            _store(call.id, artifact={out.id: {"name": out.name, "result": value}})
        if ok:
            log.info("call %s: structured output %s done (%d tries)", call.id, out.id, tries)
        else:
            log.warning("call %s: structured output %s failed: %s", call.id, out.id, value)
        if store:
            _event(call.id, "structured-output", "INFO" if ok else "WARNING",
                   {k: v for k, v in item.items() if k != "result"})  # fmt: skip
    if analysis and store:
        _analyse(plan, rows, talk, transcript, models, max_attempts, timeout, retry_delay)
    return results


def _analyse(plan: _Plan, rows: list[CallMessage], talk: list[dict[str, str]], transcript: str,
             models: _Models, attempts: int, timeout: float, delay: float) -> None:  # fmt: skip
    """``analysisPlan``: structuredDataPlan -> analysis.structuredData, summaryPlan -> analysis.summary."""
    call, assistant = plan.call, plan.assistant
    cfg = assistant.get("analysisPlan") or {}
    if not isinstance(cfg, Mapping):
        return
    threshold = cfg.get("minMessagesThreshold")
    threshold = 2 if not isinstance(threshold, (int, float)) else threshold
    if len(talk) < threshold:
        log.info(
            "call %s: %d messages, under minMessagesThreshold: no analysis", call.id, len(talk)
        )
        return
    found: dict[str, Any] = {}

    def run(what: str, fn: Callable[[], Any]) -> None:
        try:
            ok, value, tries = _attempt(fn, attempts, delay, lambda n: None)
        except _Failure as exc:  # building the model failed before any attempt
            ok, value, tries = False, str(exc), 0
        if ok:
            found[what] = value
        else:
            log.warning("call %s: analysis %s failed: %s", call.id, what, value)
            _event(
                call.id, "analysis", "WARNING", {"what": what, "error": value, "attempts": tries}
            )

    sd = cfg.get("structuredDataPlan") or {}
    if isinstance(sd, Mapping) and sd.get("enabled") and isinstance(sd.get("schema"), Mapping):
        custom = sd.get("messages")
        out = OutputDef(
            id="structuredData",
            name="structuredData",
            schema=dict(sd["schema"]),
            model={"messages": custom} if isinstance(custom, list) and custom else None,
        )
        limit = float(sd.get("timeoutSeconds") or timeout)
        run("structuredData", lambda: _extract(
            models.get(_model_config(None, assistant)), out, talk, transcript, limit))  # fmt: skip

    summary = cfg.get("summaryPlan") or {}
    if isinstance(summary, Mapping) and summary.get("enabled") is True:
        limit = float(summary.get("timeoutSeconds") or timeout)
        values = {
            "transcript": transcript,
            "endedReason": call.ended_reason or "",
            "systemPrompt": "\n".join(
                str(m.get("content") or "")
                for m in ((assistant.get("model") or {}).get("messages") or ())
                if isinstance(m, Mapping) and m.get("role") == "system"
            ),
        }
        custom = summary.get("messages")
        if isinstance(custom, list) and custom:
            messages = [
                {
                    "role": str(m.get("role") or "system"),
                    "content": _fill(str(m.get("content") or ""), values),
                }
                for m in custom
                if isinstance(m, Mapping)
            ]
        else:
            messages = [
                {"role": "system", "content": SUMMARY_PROMPT},
                {"role": "user", "content": f"Here is the transcript:\n\n{transcript}\n\n"},
            ]

        def summarize() -> str:
            model = models.get(_model_config(None, assistant))
            text = _ask(model, ChatRequest(messages=messages, temperature=0), limit).strip()
            if not text:
                raise _Failure("the model returned an empty summary")
            return text

        run("summary", summarize)
    if found:
        _store(call.id, analysis=found)


def run_structured_outputs(
    call_id: str,
    model_factory: ModelFactory | None = None,
    output_ids: Sequence[str] | None = None,
    *,
    analysis: bool | None = None,
    max_attempts: int = DEFAULT_ATTEMPTS,
    timeout: float = DEFAULT_TIMEOUT,
    retry_delay: float = 1.0,
) -> list[StructuredOutputRun]:
    """Run the call's structured outputs (bound ones, or ``output_ids``) now; returns the run rows.

    ``analysis`` (default: only when ``output_ids`` is None) also runs the assistant's analysisPlan.
    Raises :class:`CallNotFound`, :class:`CallNotEnded` or :class:`UnknownOutputs` before any work.
    """
    plan = prepare(call_id, output_ids)
    execute(
        plan,
        model_factory,
        analysis=output_ids is None if analysis is None else analysis,
        max_attempts=max_attempts,
        timeout=timeout,
        retry_delay=retry_delay,
    )
    return [run for _, run in plan.items if run is not None]


# -- after the call ----------------------------------------------------------------------------------

_slots = BoundedSemaphore(4)
SLOT_WAIT_SECONDS = 600.0


def set_concurrency(n: int) -> None:
    """How many calls' outputs may run at once in this process (call before any call ends)."""
    global _slots
    _slots = BoundedSemaphore(max(1, n))


def queue_for_ended_call(
    call_id: str,
    model_factory: ModelFactory | None = None,
    *,
    on_done: Callable[[str, list[dict[str, Any]]], None] | None = None,
    **options: Any,
) -> gevent.Greenlet:
    """Run the call's bound outputs and analysis in the background; returns the greenlet at once.

    The greenlet writes the ``queued`` rows, waits (at most ``SLOT_WAIT_SECONDS``) for a slot, runs
    them, then calls ``on_done(call_id, results)`` (e.g. to send the end-of-call-report with them).
    """
    return gevent.spawn(_background, call_id, model_factory, on_done, options)


def _background(call_id: str, factory: ModelFactory | None,
                on_done: Callable[[str, list[dict[str, Any]]], None] | None,
                options: dict[str, Any]) -> None:  # fmt: skip
    results: list[dict[str, Any]] = []
    try:
        plan = prepare(call_id)
        slots = _slots
        if not slots.acquire(timeout=SLOT_WAIT_SECONDS):
            for _, run in plan.items:
                _save_run(
                    run,
                    status="failed",
                    error="not run: no free slot in time",
                    finished_at=utcnow(),
                )
            return
        try:
            results = execute(plan, factory, analysis=True, **options)
        finally:
            slots.release()
    except StructuredRunError as exc:
        log.warning("call %s: structured outputs not run: %s", call_id, exc)
    except Exception:
        log.exception("call %s: structured outputs failed", call_id)
    finally:
        if on_done is not None:
            try:
                on_done(call_id, results)
            except Exception:
                log.exception("call %s: structured outputs on_done failed", call_id)


def run_to_wire(run: StructuredOutputRun) -> dict[str, Any]:
    from esl_controller.calls.serialize import iso

    return {
        "id": run.id,
        "orgId": run.org_id,
        "createdAt": iso(run.created_at),
        "updatedAt": iso(run.updated_at),
        "structuredOutputId": run.structured_output_id,
        "callId": run.call_id,
        "status": run.status,
        "attempts": run.attempts,
        "result": run.result,
        "error": run.error,
        "finishedAt": iso(run.finished_at),
    }


def credentialed_model_factory(box: Any) -> ModelFactory:
    """Models built with the org's ``/credential`` keys attached (``box`` opens the sealed secrets)."""
    from esl_controller.db.models import Credential
    from esl_controller.pipeline.providers.hosted import attach_credential, build_with_fallbacks

    def factory(config: Mapping[str, Any] | None) -> ChatModel:
        creds: list[dict[str, Any]] = []
        if config and config.get("provider"):
            with _tx():
                rows = list(Credential.select())
            for row in rows:
                creds.append(
                    {
                        **(row.data or {}),
                        **box.open(row.secret_blob),
                        "id": row.id,
                        "provider": row.provider,
                    }
                )
        return build_with_fallbacks("llm", attach_credential(config, creds) if config else None)

    return factory


def transient_output(data: Mapping[str, Any]) -> OutputDef:
    """A ``structuredOutput`` definition given inline (``POST /structured-output/run``), with a fresh id."""
    return OutputDef.from_data(str(uuid.uuid4()), data)
