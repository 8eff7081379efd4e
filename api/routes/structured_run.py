"""``POST /structured-output/run``: run structured outputs on ended calls, synchronously.

The body is Vapi's StructuredOutputRunDTO: ``callIds`` (Req, 1..100), ``structuredOutputId`` and/or our
``structuredOutputIds`` (stored outputs), or ``structuredOutput`` (a transient definition), and
``previewEnabled`` (answer only; nothing written to the call). With no output named, each call's bound
outputs run (those listing its assistant in ``assistantIds`` and the assistant's
``artifactPlan.structuredOutputIds``).

Every call is checked first: an unknown call, a call that has not ended, or an unknown output id is a 400
and nothing runs. Then the runs happen in this request (the request's transaction is committed first, so no
database transaction is held while models answer): each model request is bounded by
``REQUEST_TIMEOUT_SECONDS`` and retried up to ``ATTEMPTS`` times. The answer is 201 with one result per
(call, output): ``status`` ``done`` or ``failed`` (with ``error``), ``result`` and the stored run's
``runId`` (none for transient outputs or previews). The results are also on each call's
``artifact.structuredOutputs`` unless previewing.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint, g, jsonify

from api.crud import services
from api.errors import ApiError
from api.openapi import OperationDoc, document
from api.schemas.structured_run import StructuredOutputRunBody, StructuredOutputRunResponse
from api.wire import json_body
from esl_controller.db import database
from esl_controller.observe import structured

bp = Blueprint("structured_run", __name__)

REQUEST_TIMEOUT_SECONDS = 30.0
ATTEMPTS = 2
RETRY_DELAY_SECONDS = 0.5
#: None: models with the org's credentials attached (tests replace it)
MODEL_FACTORY: structured.ModelFactory | None = None


def _outside_transaction(fn):
    """Commit the request's transaction, run ``fn``, open a fresh one (no transaction across model calls)."""
    txn = g.pop("txn", None)
    if txn is not None:
        txn.__exit__(None, None, None)
    try:
        return fn()
    finally:
        g.txn = database.atomic()
        g.txn.__enter__()


@bp.post("/structured-output/run")
def run_structured_outputs():
    body = StructuredOutputRunBody.model_validate(json_body())
    preview = bool(body.preview_enabled)
    output_ids = body.output_ids()
    transient = []
    if body.structured_output is not None:
        data = body.structured_output.model_dump(by_alias=True, exclude_none=True)
        transient.append(structured.transient_output(data))
    plans = []
    errors: list[str] = []
    for call_id in body.call_ids:
        try:
            plans.append(structured.prepare(call_id, output_ids, transient, record=not preview))
        except structured.StructuredRunError as exc:
            errors.append(str(exc))
    if errors:
        raise ApiError(400, list(dict.fromkeys(errors)))
    factory = MODEL_FACTORY or structured.credentialed_model_factory(services().secret_box)

    def run() -> list[dict[str, Any]]:
        out = []
        for plan in plans:
            results = structured.execute(
                plan,
                factory,
                analysis=False,
                store=not preview,
                max_attempts=ATTEMPTS,
                timeout=REQUEST_TIMEOUT_SECONDS,
                retry_delay=RETRY_DELAY_SECONDS,
            )
            for item in results:
                out.append(
                    {
                        "callId": plan.call.id,
                        "structuredOutputId": item["id"],
                        "name": item["name"],
                        "status": item["status"],
                        "attempts": item["attempts"],
                        "result": item["result"],
                        "error": item["error"],
                        "runId": item["runId"],
                    }
                )
        return out

    results = _outside_transaction(run)
    return jsonify({"previewEnabled": preview, "results": results}), 201


document(
    "/structured-output/run",
    "POST",
    OperationDoc(
        "Run StructuredOutputs on ended calls",
        "Structured Output",
        StructuredOutputRunBody,
        StructuredOutputRunResponse,
        status=201,
    ),
)
