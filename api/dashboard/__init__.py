"""The operator dashboard and the web-call page: static HTML + vanilla JS modules served by the API process.

* ``GET /dashboard/`` the single-page dashboard (hash routes, ``static/js/app.js``);
* ``GET /dashboard/assets/<path>`` its JS, CSS and the vendored uPlot (with its licence);
* ``GET /dashboard/config.json`` non-secret flags the login form needs (is Supabase Auth configured);
* ``GET /call/<id>/web`` (the ``webCallUrl`` the call service hands out) and ``GET /dashboard/webcall/<id>``:
  the web-call page. It reads ``?token=`` from its own URL and joins the call's web-call WebSocket
  (``transport.websocketCallUrl`` of the stored call, read here on the server) with that token.

All of these are public: they hold no data. Every data call the pages make goes through the authenticated
API (``Authorization: Bearer <api key or Supabase access token>``); the web-call page uses the per-call
token only, never an API key.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from flask import (
    Blueprint,
    Response,
    current_app,
    jsonify,
    make_response,
    render_template,
    send_from_directory,
)

from api.auth import public
from api.errors import ApiError
from api.wire import check_uuid
from esl_controller.db.models import Call

log = logging.getLogger("esl_controller.api.dashboard")

HERE = Path(__file__).parent
STATIC = HERE / "static"

bp = Blueprint("dashboard", __name__, template_folder="templates", static_folder=None)

#: the pages load scripts and styles from this origin only; sockets may go to another port of this host
#: (the web-call and listen servers), so ``connect-src`` allows ws/wss anywhere the call URLs point.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data: blob:; media-src 'self' blob:; connect-src 'self' ws: wss: http: https:; "
    "worker-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


def _page(html: str, status: int = 200) -> Response:
    resp = make_response(html, status)
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["X-Content-Type-Options"] = "nosniff"
    # the web-call URL carries a token in its query: never leak it in a Referer
    resp.headers["Referrer-Policy"] = "no-referrer"
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.get("/dashboard/")
@public
def index() -> Response:
    return _page(render_template("dashboard/index.html"))


@bp.get("/dashboard/assets/<path:filename>")
@public
def asset(filename: str) -> Response:
    resp = send_from_directory(STATIC, filename, max_age=0)
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp


@bp.get("/dashboard/config.json")
@public
def config() -> Response:
    """Flags for the login page; nothing secret (no keys, no project secrets)."""
    services = current_app.extensions["esl_controller"]
    supabase = services.settings.auth.supabase
    return jsonify(
        {
            "supabaseEnabled": bool(supabase.enabled),
            "webCallPath": "/call/{id}/web",
        }
    )


def websocket_url(call: Call) -> str | None:
    """The web-call WebSocket URL stored on the call (``transport.websocketCallUrl``), if it is a ws URL,
    without its ``token``: this page is public, so the token must come from whoever opened it."""
    data: dict[str, Any] = call.data if isinstance(call.data, dict) else {}
    transport = data.get("transport") if isinstance(data.get("transport"), dict) else {}
    url = transport.get("websocketCallUrl")
    if not isinstance(url, str):
        return None
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        return None
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k != "token"]
    return urlunsplit(parts._replace(query=urlencode(query)))


def _webcall_page(id: str) -> Response:
    try:
        call_id = check_uuid(id, "call id")
    except ApiError:  # a malformed id is simply "not found" on an HTML page
        call_id = None
    call = Call.get_or_none(Call.id == call_id) if call_id else None
    if call is None or call.type not in ("webCall", "vapi.websocketCall"):
        html = render_template("dashboard/webcall.html", call_id="", ws_url="", missing=True)
        return _page(html, 404)
    html = render_template(
        "dashboard/webcall.html",
        call_id=call.id,
        ws_url=websocket_url(call) or "",
        status=call.status,
        ended_reason=call.ended_reason or "",
        missing=False,
    )
    return _page(html)


@bp.get("/call/<id>/web")
@public
def webcall_public(id: str) -> Response:
    return _webcall_page(id)


@bp.get("/dashboard/webcall/<id>")
@public
def webcall(id: str) -> Response:
    return _webcall_page(id)
