"""Open the database behind the proxy from a URL."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlparse

from peewee import Database, SqliteDatabase

from esl_controller.db.base import database

log = logging.getLogger("esl_controller.db")

_PG_SCHEMES = ("postgres", "postgresql", "postgresext", "postgresqlext")
_psycogreen_patched = False


class DatabaseUrlError(ValueError):
    pass


def _patch_psycopg_for_gevent() -> None:
    """Make psycopg2 wait on sockets through gevent, so a query never blocks the hub."""
    global _psycogreen_patched
    if _psycogreen_patched:
        return
    try:
        from psycogreen.gevent import patch_psycopg
    except ImportError as exc:  # pragma: no cover - depends on installed extras
        raise DatabaseUrlError(
            "PostgreSQL needs the 'pg' extra: pip install 'esl-controller[pg]'"
        ) from exc
    patch_psycopg()
    _psycogreen_patched = True


def open_database(
    url: str, max_connections: int = 20, stale_timeout: int = 300, busy_timeout: float = 5.0
) -> Database:
    parsed = urlparse(url)
    scheme = parsed.scheme
    if scheme == "sqlite":
        path = unquote(parsed.path)
        if url.startswith("sqlite:////"):
            path = "/" + path.lstrip("/")
        elif url.startswith("sqlite:///"):
            path = path[1:] if path.startswith("/") else path
        if not path:
            raise DatabaseUrlError("sqlite URL needs a path: sqlite:///var/esl-controller.db")
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        return SqliteDatabase(
            path,
            timeout=busy_timeout,
            pragmas={
                "journal_mode": "wal",
                "foreign_keys": 1,
                "busy_timeout": int(busy_timeout * 1000),
                "synchronous": "normal",
                "cache_size": -32000,
            },
            check_same_thread=False,
        )
    if scheme in _PG_SCHEMES:
        _patch_psycopg_for_gevent()
        from playhouse.pool import PooledPostgresqlDatabase

        params = dict(parse_qsl(parsed.query))
        kwargs: dict = {
            "host": parsed.hostname or "127.0.0.1",
            "port": parsed.port or 5432,
            "max_connections": max_connections,
            "stale_timeout": stale_timeout,
            "timeout": 10,
        }
        if parsed.username:
            kwargs["user"] = unquote(parsed.username)
        if parsed.password:
            kwargs["password"] = unquote(parsed.password)
        kwargs.update(params)
        name = parsed.path.lstrip("/") or os.environ.get("PGDATABASE", "postgres")
        return PooledPostgresqlDatabase(name, **kwargs)
    raise DatabaseUrlError(f"unsupported database URL scheme {scheme!r}")


def connect(
    url: str, max_connections: int = 20, stale_timeout: int = 300, busy_timeout: float = 5.0
) -> Database:
    """Open the database for ``url`` and bind it to the shared proxy. Returns the database."""
    db = open_database(url, max_connections, stale_timeout, busy_timeout)
    database.initialize(db)
    log.info("database: %s", "postgresql" if is_postgres(db) else "sqlite")
    return db


def is_postgres(db: Database | None = None) -> bool:
    from peewee import PostgresqlDatabase

    target = db if db is not None else database.obj
    return isinstance(target, PostgresqlDatabase)


def ping() -> bool:
    """True if the database answers a trivial query."""
    try:
        database.execute_sql("SELECT 1").fetchone()
        return True
    except Exception as exc:  # any driver error means "not ready"
        log.warning("database ping failed: %s", exc)
        return False
    finally:
        if is_postgres() and not database.in_transaction():
            database.close()


def close() -> None:
    if database.obj is not None and not database.is_closed():
        database.close()
