"""The ``esl-controller`` command: serve, migrate, keys, config.

``main(argv=None) -> int``; the parser is built apart (:func:`build_parser`) so tests can drive it.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
import signal
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
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

    _add_ops_parsers(sub, common)

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
    return _run(parser, parser.parse_args(argv))


def _run(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
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
        if args.command in OPS_COMMANDS:
            return OPS_COMMANDS[args.command](settings, args)
    except KeyboardInterrupt:
        return 130
    parser.error(f"unknown command {args.command}")
    return 2


# ------------------------------------------------------------------------------------------------
# On-box operator tools: pcap, doctor, monitor, webhooks retry|replay, logs tail (issue 7).
# scripts/esl-* call tool_main(), which runs one subcommand under the script's own name.

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
_LEVEL_ALIASES = {"WARN": "WARNING", "LOG": "INFO", "CHECKPOINT": "INFO", "CRITICAL": "ERROR"}


def _add_ops_parsers(sub: Any, common: Any) -> None:
    from esl_controller import doctor, monitor

    pc = sub.add_parser(
        "pcap", help="copy a call's packet capture (pcap) out of the data directory"
    )
    common(pc)
    pc.add_argument("call_id", metavar="call-id")
    pc.add_argument("--output", "-o", help="file to write (default ./<call-id>.pcap; - for stdout)")

    dr = sub.add_parser(
        "doctor",
        help="check database, FreeSWITCH, ports, capture privileges, disk and key file",
        description=(doctor.__doc__ or "").split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common(dr)
    doctor.add_arguments(dr)

    mo = sub.add_parser(
        "monitor",
        help="top-like live list of calls (status, duration, turn latency)",
        description=(monitor.__doc__ or "").split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    common(mo)
    monitor.add_arguments(mo)

    wh = sub.add_parser("webhooks", help="retry a webhook job or replay an attempt (on-box)")
    wh_sub = wh.add_subparsers(dest="webhooks_command", required=True)
    wr = wh_sub.add_parser(
        "retry", help="make a failed or skipped job pending again, due now (the workers send it)"
    )
    common(wr)
    wr.add_argument("job_id", metavar="job-id")
    wr.add_argument("--attempts", type=int, help="more attempts allowed (default: its budget)")
    wp = wh_sub.add_parser(
        "replay",
        help="send a stored attempt's payload again to the job's current target, now",
        description="The replay is recorded as a new attempt (replay: true); the job is unchanged. "
        "Exit 0 when the target answered 2xx, 1 otherwise.",
    )
    common(wp)
    wp.add_argument("attempt_id", metavar="attempt-id")
    wp.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")

    lg = sub.add_parser("logs", help="call event logs")
    lg_sub = lg.add_subparsers(dest="logs_command", required=True)
    lt = lg_sub.add_parser(
        "tail",
        help="print call events as 'time level call kind message'",
        description="Print call events (and webhook attempts with --webhooks), oldest first, as "
        "'time level call kind message'. --follow keeps polling for new lines until Ctrl-C.",
    )
    common(lt)
    lt.add_argument("--call", help="only this call id")
    lt.add_argument("--level", help="lowest level shown: DEBUG, INFO, WARNING or ERROR")
    lt.add_argument("--kind", help="only this event kind (a trailing * matches a prefix)")
    lt.add_argument("--since", help="ISO 8601 time or an age such as 30s, 10m, 2h, 1d")
    lt.add_argument("--webhooks", action="store_true", help="also webhook delivery attempts")
    lt.add_argument("--lines", "-n", type=int, default=50, help="last lines shown (default 50)")
    lt.add_argument("--follow", "-f", action="store_true", help="keep printing new lines")
    lt.add_argument("--interval", type=float, default=1.0, help="seconds between polls")


def tool_main(command: tuple[str, ...], argv: list[str] | None, prog: str) -> int:
    """Run ``esl-controller <command...> <argv>`` with ``prog`` as the program name (scripts/)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser()
    target = parser
    values: dict[str, str] = {}
    for name in command:
        action = next(a for a in target._actions if isinstance(a, argparse._SubParsersAction))
        values[action.dest] = name
        target = action.choices[name]
    old = target.prog
    for p in _parsers_under(target):
        p.prog = p.prog.replace(old, prog, 1)
    args = target.parse_args(argv)
    for dest, value in values.items():
        setattr(args, dest, value)
    return _run(parser, args)


def _parsers_under(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    out = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):
                out.extend(_parsers_under(child))
    return out


def _check_id(value: str, what: str) -> str | None:
    if not _UUID.match(value or ""):
        print(f"{what} must be a UUID, got {value!r}", file=sys.stderr)
        return None
    return value.lower()


def cmd_pcap(settings: Settings, args: argparse.Namespace) -> int:
    from esl_controller import db
    from esl_controller.db.models import Artifact, Call

    call_id = _check_id(args.call_id, "call-id")
    if call_id is None:
        return 2
    _open_db(settings)
    with db.database.connection_context():
        if Call.get_or_none(Call.id == call_id) is None:
            print(f"call {call_id} not found", file=sys.stderr)
            return 1
        art = Artifact.get_or_none((Artifact.call == call_id) & (Artifact.kind == "pcap"))
    candidates = [Path(art.path)] if art is not None and art.path else []
    candidates.append(settings.pcap_dir / f"{call_id}.pcap")
    source = next((p for p in candidates if p.is_file()), None)
    if source is None:
        print(
            f"call {call_id} has no packet capture (looked in {settings.pcap_dir})", file=sys.stderr
        )
        return 1
    if args.output == "-":
        with source.open("rb") as fh:
            shutil.copyfileobj(fh, sys.stdout.buffer)
        sys.stdout.flush()
        return 0
    dest = Path(args.output or f"{call_id}.pcap")
    if dest.is_dir():
        dest = dest / f"{call_id}.pcap"
    try:
        shutil.copyfile(source, dest)
    except OSError as exc:
        print(f"cannot write {dest}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"wrote {dest} ({dest.stat().st_size} bytes)")
    return 0


def cmd_doctor(settings: Settings, args: argparse.Namespace) -> int:
    from esl_controller import doctor

    return doctor.command(settings, args)


def cmd_monitor(settings: Settings, args: argparse.Namespace) -> int:
    from esl_controller import monitor

    return monitor.command(settings, args)


def _delivery_settings(settings: Settings) -> Any:
    from esl_controller.webhooks.delivery import DeliverySettings
    from esl_controller.webhooks.targets import UrlPolicy

    w = settings.webhooks
    return DeliverySettings(
        connect_timeout=w.connect_timeout,
        default_timeout=w.default_timeout,
        max_redirects=w.max_redirects,
        url_policy=UrlPolicy.build(allow=w.allow, deny=w.deny, deny_private=w.deny_private),
    )


def cmd_webhooks(settings: Settings, args: argparse.Namespace) -> int:
    from esl_controller import db
    from esl_controller.db.models import WebhookAttempt, WebhookJob
    from esl_controller.webhooks import delivery, queue

    if args.webhooks_command == "retry":
        job_id = _check_id(args.job_id, "job-id")
        if job_id is None:
            return 2
        if args.attempts is not None and args.attempts < 1:
            print("--attempts must be at least 1", file=sys.stderr)
            return 2
        _open_db(settings)
        with db.database.connection_context():
            job = WebhookJob.get_or_none(WebhookJob.id == job_id)
            if job is None:
                print(f"webhook job {job_id} not found", file=sys.stderr)
                return 1
            if job.status not in ("failed", "skipped"):
                print(
                    f"webhook job {job_id} is {job.status}; only failed or skipped jobs can be retried",
                    file=sys.stderr,
                )
                return 1
            if not queue.requeue(job_id, args.attempts):
                print(f"webhook job {job_id} changed state; try again", file=sys.stderr)
                return 1
            job = WebhookJob.get_by_id(job_id)
        print(
            f"webhook job {job_id} ({job.message_type} -> {job.target_url}) is pending again, due now; "
            f"attempts {job.attempts}/{job.max_attempts}"
        )
        return 0

    attempt_id = _check_id(args.attempt_id, "attempt-id")
    if attempt_id is None:
        return 2
    if not 0 < args.timeout <= 300:
        print("--timeout must be between 0 and 300 seconds", file=sys.stderr)
        return 2
    from esl_controller.security.secrets_box import SecretBox, SecretBoxError, load_or_create_key

    _open_db(settings)
    with db.database.connection_context():
        attempt = WebhookAttempt.get_or_none(WebhookAttempt.id == attempt_id)
        if attempt is None:
            print(f"webhook attempt {attempt_id} not found", file=sys.stderr)
            return 1
        job = WebhookJob.get_by_id(attempt.job_id)
        numbers = [
            a.number
            for a in WebhookAttempt.select(WebhookAttempt.number).where(
                WebhookAttempt.job == job.id
            )
        ]
    try:
        box = SecretBox(load_or_create_key(settings.secrets.key, settings.secret_key_path))
        with db.database.connection_context():
            result = delivery.replay(
                job,
                box,
                _delivery_settings(settings),
                number=max(numbers, default=0) + 1,
                timeout=args.timeout,
            )
    except (delivery.ReplayError, SecretBoxError) as exc:
        print(f"cannot replay attempt {attempt_id}: {exc}", file=sys.stderr)
        return 1
    with db.database.connection_context():
        row = delivery.store_attempt(result, job.org_id)
    outcome = (
        f"HTTP {row.status_code}" if row.status_code is not None else (row.error or "no answer")
    )
    if row.status_code is not None and row.error:
        outcome += f" ({row.error})"
    print(
        f"replayed job {job.id} ({job.message_type}) as attempt {row.id} #{row.number} -> "
        f"{row.request_url}: {outcome} in {row.latency_ms} ms"
    )
    return 0 if row.status_code is not None and 200 <= row.status_code < 300 else 1


def parse_since(value: str, now: datetime) -> datetime:
    """``30s``, ``10m``, ``2h``, ``1d`` before ``now``, or an ISO 8601 time (UTC when no offset)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", value)
    if m:
        unit = {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
        return now - timedelta(seconds=float(m.group(1)) * unit)
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    at = datetime.fromisoformat(text)  # ValueError for anything else
    return at if at.tzinfo else at.replace(tzinfo=timezone.utc)


def _level_rank(level: str) -> int:
    level = _LEVEL_ALIASES.get(level.upper(), level.upper())
    return LOG_LEVELS.index(level) if level in LOG_LEVELS else 1


def _event_message(data: Any, kind: str) -> str:
    if isinstance(data, dict):
        for key in ("message", "text", "error", "reason"):
            value = data.get(key)
            if isinstance(value, str) and value:
                return value
        if data:
            return json.dumps(data, separators=(",", ":"), default=str)[:300]
    return kind


def _log_line(at: datetime, level: str, call_id: str | None, kind: str, message: str) -> str:
    stamp = at.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    message = " ".join(message.split())
    return f"{stamp} {level:<7} {call_id or '-':<36} {kind} {message}"


def cmd_logs(settings: Settings, args: argparse.Namespace) -> int:
    from peewee import fn

    from esl_controller import db
    from esl_controller.db.fields import utcnow
    from esl_controller.db.models import Call, CallEvent, WebhookAttempt, WebhookJob

    call_id = None
    if args.call is not None:
        call_id = _check_id(args.call, "--call")
        if call_id is None:
            return 2
    min_rank = 0
    if args.level is not None:
        level = _LEVEL_ALIASES.get(args.level.upper(), args.level.upper())
        if level not in LOG_LEVELS:
            print(f"--level must be one of {', '.join(LOG_LEVELS)}", file=sys.stderr)
            return 2
        min_rank = LOG_LEVELS.index(level)
    since = None
    if args.since is not None:
        try:
            since = parse_since(args.since, utcnow())
        except ValueError:
            print(
                f"--since {args.since!r}: expected an ISO 8601 time or an age like 10m",
                file=sys.stderr,
            )
            return 2
    if args.lines < 0 or not 0.05 <= args.interval <= 60:
        print("--lines must not be negative and --interval must be 0.05 to 60 s", file=sys.stderr)
        return 2
    kind = args.kind

    allowed = [lvl for lvl in (*LOG_LEVELS, *_LEVEL_ALIASES) if _level_rank(lvl) >= min_rank]

    def kind_cond(field: Any) -> Any:
        return field.startswith(kind[:-1]) if kind.endswith("*") else field == kind

    _open_db(settings)
    with db.database.connection_context():
        if call_id is not None and Call.get_or_none(Call.id == call_id) is None:
            print(f"call {call_id} not found", file=sys.stderr)
            return 1

    def events(after: int, upto: int | None, newest: int | None) -> list[Any]:
        q = CallEvent.select().where(CallEvent.id > after)
        if upto is not None:
            q = q.where(CallEvent.id <= upto)
        if call_id is not None:
            q = q.where(CallEvent.call == call_id)
        if since is not None:
            q = q.where(CallEvent.at >= since)
        if kind:
            q = q.where(kind_cond(CallEvent.kind))
        if min_rank:
            q = q.where(CallEvent.level.in_(allowed))
        if newest is not None:
            return list(q.order_by(CallEvent.id.desc()).limit(newest))[::-1]
        return list(q.order_by(CallEvent.id))

    def attempts(after: datetime | None, seen: set[str], newest: int | None) -> list[Any]:
        q = WebhookAttempt.select(WebhookAttempt, WebhookJob).join(WebhookJob)
        if call_id is not None:
            q = q.where(WebhookJob.call_id == call_id)
        bound = max((b for b in (after, since) if b is not None), default=None)
        if bound is not None:
            q = q.where(WebhookAttempt.created_at >= bound)
        if kind:
            prefix = kind[:-1] if kind.endswith("*") else None
            if prefix is not None and "webhook.".startswith(prefix):
                pass  # every attempt matches
            elif prefix is not None and prefix.startswith("webhook."):
                q = q.where(WebhookJob.message_type.startswith(prefix[len("webhook.") :]))
            elif prefix is None and kind.startswith("webhook."):
                q = q.where(WebhookJob.message_type == kind[len("webhook.") :])
            else:
                return []
        if min_rank > LOG_LEVELS.index("INFO"):  # only failed attempts are ERROR lines
            code = WebhookAttempt.status_code
            q = q.where(code.is_null(True) | (code < 200) | (code >= 300))
        q = q.order_by(WebhookAttempt.created_at.desc())
        if newest is not None:
            q = q.limit(newest)
        return [a for a in q if a.id not in seen][::-1]

    def line_of_event(e: Any) -> tuple[datetime, str]:
        return e.at, _log_line(e.at, e.level, e.call_id, e.kind, _event_message(e.data, e.kind))

    def line_of_attempt(a: Any) -> tuple[datetime, str]:
        ok = a.status_code is not None and 200 <= a.status_code < 300
        outcome = f"HTTP {a.status_code}" if a.status_code is not None else (a.error or "no answer")
        text = f"attempt #{a.number}{' (replay)' if a.replay else ''} -> {a.request_url}: {outcome}"
        if a.latency_ms is not None:
            text += f" in {a.latency_ms} ms"
        level = "INFO" if ok else "ERROR"
        return a.created_at, _log_line(
            a.created_at, level, a.job.call_id, f"webhook.{a.job.message_type}", text
        )

    seen: set[str] = set()
    newest_attempt: datetime | None = None
    with db.database.connection_context():
        top = CallEvent.select(CallEvent.id).order_by(CallEvent.id.desc()).first()
        last_id = top.id if top is not None else 0
        lines = [line_of_event(e) for e in events(0, last_id, args.lines)] if args.lines else []
        if args.webhooks:
            found = attempts(None, seen, args.lines) if args.lines else []
            seen.update(a.id for a in found)
            newest_attempt = max((a.created_at for a in found), default=None)
            if newest_attempt is None:  # nothing shown: follow from the newest stored attempt on
                newest_attempt = WebhookAttempt.select(fn.MAX(WebhookAttempt.created_at)).scalar()
                if newest_attempt is not None:
                    at_newest = WebhookAttempt.created_at == newest_attempt
                    seen.update(
                        a.id for a in WebhookAttempt.select(WebhookAttempt.id).where(at_newest)
                    )
            lines += [line_of_attempt(a) for a in found]
    lines.sort(key=lambda t: t[0])
    for _at, text in lines[-args.lines :] if args.lines else []:
        print(text)
    sys.stdout.flush()
    if not args.follow:
        return 0
    stopping: list[int] = []

    def _stop(signum: int, _frame: object) -> None:
        stopping.append(signum)

    # Ctrl-C or SIGTERM ends the follow loop at its next tick (a flag, so a signal that lands inside a
    # database call cannot leave the process hanging)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _stop)
    try:
        while not stopping:
            time.sleep(args.interval)
            if stopping:
                break
            with db.database.connection_context():
                new_events = events(last_id, None, None)
                if new_events:
                    last_id = new_events[-1].id
                fresh = [line_of_event(e) for e in new_events]
                if args.webhooks:
                    found = attempts(newest_attempt, seen, None)
                    seen.update(a.id for a in found)
                    if found:
                        newest_attempt = max(a.created_at for a in found)
                    fresh += [line_of_attempt(a) for a in found]
            fresh.sort(key=lambda t: t[0])
            for _at, text in fresh:
                print(text)
            sys.stdout.flush()
    except KeyboardInterrupt:
        return 0
    return 0


OPS_COMMANDS = {
    "pcap": cmd_pcap,
    "doctor": cmd_doctor,
    "monitor": cmd_monitor,
    "webhooks": cmd_webhooks,
    "logs": cmd_logs,
}
