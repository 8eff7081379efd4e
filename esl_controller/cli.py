"""The ``esl-controller`` command: serve, migrate, keys, config.

``main(argv=None) -> int``; the parser is built apart (:func:`build_parser`) so tests can drive it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

from esl_controller.config import ConfigError, Settings, load_settings, settings_as_dict

log = logging.getLogger("esl_controller.cli")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="esl-controller", description="Voice-AI runtime for FreeSWITCH"
    )
    parser.add_argument("--config", help="YAML configuration file (or ESL_CONTROLLER_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", help=argparse.SUPPRESS, default=argparse.SUPPRESS)
        p.add_argument("--data-dir", help="data directory (database, files, recordings)")
        p.add_argument("--database-url", help="sqlite:///path.db or postgresql://user@host/db")

    serve = sub.add_parser("serve", help="run the API and the controller")
    common(serve)
    serve.add_argument("--host", help="API listen address")
    serve.add_argument("--port", type=int, help="API listen port")

    mig = sub.add_parser("migrate", help="apply pending database migrations")
    common(mig)

    keys = sub.add_parser("keys", help="manage API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    kc = keys_sub.add_parser(
        "create", help="create a key; the key is printed alone on the last line"
    )
    common(kc)
    kc.add_argument("--name", required=True)
    kl = keys_sub.add_parser("list", help="list keys (never the keys themselves)")
    common(kl)
    kr = keys_sub.add_parser("revoke", help="revoke a key by id or prefix")
    common(kr)
    kr.add_argument("key", help="key id or prefix")

    calls = sub.add_parser("calls", help="inspect and steer calls (on-box)")
    calls_sub = calls.add_subparsers(dest="calls_command", required=True)
    cl = calls_sub.add_parser("list", help="list calls, newest first")
    common(cl)
    cl.add_argument("--status", help="queued, ringing, in-progress, forwarding or ended")
    cl.add_argument("--limit", type=int, default=20)
    csh = calls_sub.add_parser("show", help="print one call as JSON, with its events")
    common(csh)
    csh.add_argument("id")
    for name, text in (("hangup", "end a live call"), ("control", "send a live-control body")):
        cp = calls_sub.add_parser(name, help=text + " through the running server's API")
        common(cp)
        cp.add_argument("id")
        cp.add_argument("--url", help="API base URL (default: http.public_url)")
        cp.add_argument("--api-key", help="API key (default: calls.api_key from config/env)")
        if name == "control":
            cp.add_argument("--json", required=True, dest="body", help="the control body")

    cfg = sub.add_parser("config", help="configuration")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True)
    cs = cfg_sub.add_parser("show", help="print the effective configuration, secrets masked")
    common(cs)
    cs.add_argument("--host")
    cs.add_argument("--port", type=int)
    return parser


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    over: dict[str, Any] = {}
    if getattr(args, "data_dir", None):
        over["data_dir"] = args.data_dir
    if getattr(args, "database_url", None):
        over.setdefault("database", {})["url"] = args.database_url
    if getattr(args, "host", None):
        over.setdefault("http", {})["host"] = args.host
    if getattr(args, "port", None) is not None:
        over.setdefault("http", {})["port"] = args.port
    return over


def _open_db(settings: Settings) -> None:
    from esl_controller import db

    db.connect(
        settings.database_url,
        settings.database.max_connections,
        settings.database.stale_timeout,
        settings.database.busy_timeout,
    )


def cmd_migrate(settings: Settings) -> int:
    from esl_controller import db

    _open_db(settings)
    applied = db.migrate()
    print("applied: " + ", ".join(applied) if applied else "database is up to date")
    return 0


def cmd_keys(settings: Settings, args: argparse.Namespace) -> int:
    from esl_controller import db
    from esl_controller.security import api_keys

    _open_db(settings)
    db.migrate()
    if args.keys_command == "create":
        new = api_keys.create_key(args.name, settings.org_id)
        print(f"created API key {new.id} ({new.name}); it is shown once, store it now:")
        print(new.key)
        return 0
    if args.keys_command == "list":
        for row in api_keys.list_keys():
            state = "revoked" if row.revoked_at else "active"
            used = row.last_used_at.isoformat() if row.last_used_at else "never"
            print(f"{row.id}  {row.prefix}…  {state:8} {row.name}  last used: {used}")
        return 0
    count = api_keys.revoke_key(args.key)
    if not count:
        print(f"no active key matches {args.key}", file=sys.stderr)
        return 1
    print(f"revoked {count} key(s)")
    return 0


def cmd_calls(settings: Settings, args: argparse.Namespace) -> int:
    """``calls list|show`` read the database; ``calls hangup|control`` go through the running
    server's HTTP API (the live call is owned by that process's controller)."""
    if args.calls_command in ("list", "show"):
        from esl_controller import db
        from esl_controller.calls.serialize import call_to_wire
        from esl_controller.db.models import Call, CallEvent

        _open_db(settings)
        with db.database.connection_context():
            if args.calls_command == "list":
                query = Call.select().order_by(Call.created_at.desc()).limit(max(1, args.limit))
                if args.status:
                    query = query.where(Call.status == args.status)
                for row in query:
                    print(
                        f"{row.id}  {row.type:18} {row.status:12} {row.ended_reason or '-':40} "
                        f"{row.created_at.isoformat()}"
                    )
                return 0
            row = Call.get_or_none(Call.id == args.id)
            if row is None:
                print(f"call {args.id} not found", file=sys.stderr)
                return 1
            out = call_to_wire(row)
            out["events"] = [
                {"at": e.at.isoformat(), "kind": e.kind, "source": e.source, "data": e.data}
                for e in CallEvent.select().where(CallEvent.call == row.id).order_by(CallEvent.id)
            ]
            print(json.dumps(out, indent=2, default=str))
            return 0
    import requests

    if args.calls_command == "hangup":
        body: Any = {"type": "end-call"}
    else:
        try:
            body = json.loads(args.body)
        except ValueError as exc:
            print(f"--json is not valid JSON: {exc}", file=sys.stderr)
            return 2
    key = args.api_key or settings.calls.api_key
    if not key:
        print("an API key is needed: --api-key or ESL_CONTROLLER_CALLS__API_KEY", file=sys.stderr)
        return 2
    base = (args.url or settings.public_url).rstrip("/")
    try:
        resp = requests.post(
            f"{base}/call/{args.id}/control",
            json=body,
            headers={"Authorization": f"Bearer {key}"},
            timeout=settings.calls.control_timeout + 5,
        )
    except requests.RequestException as exc:
        print(f"cannot reach the server at {base}: {exc}", file=sys.stderr)
        return 1
    print(resp.text.strip())
    return 0 if resp.status_code < 400 else 1


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(getattr(args, "config", None), overrides=_overrides(args))
    except ConfigError as exc:
        print(f"esl-controller: configuration error: {exc}", file=sys.stderr)
        return 2
    from esl_controller.logs import setup_logging

    setup_logging(settings.logging.level, settings.logging.json)
    try:
        if args.command == "serve":
            from esl_controller.server import serve

            return serve(settings)
        if args.command == "migrate":
            return cmd_migrate(settings)
        if args.command == "keys":
            return cmd_keys(settings, args)
        if args.command == "calls":
            return cmd_calls(settings, args)
        if args.command == "config":
            print(json.dumps(settings_as_dict(settings), indent=2))
            return 0
    except KeyboardInterrupt:
        return 130
    parser.error(f"unknown command {args.command}")
    return 2
