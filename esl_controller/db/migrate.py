"""Numbered migrations (``esl_controller/db/migrations/NNNN_name.py``), applied in order and recorded in the
``schema_migration`` table by peewee's migration runner."""

from __future__ import annotations

import logging
from pathlib import Path

from playhouse.migrations import Runner

from esl_controller.db.base import database

log = logging.getLogger("esl_controller.db")
MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def _runner() -> Runner:
    if database.obj is None:
        raise RuntimeError("database not connected: call esl_controller.db.connect(url) first")
    return Runner(database.obj, str(MIGRATIONS_DIR))


def pending_migrations() -> list[str]:
    return [m.name for m in _runner().status() if not m.applied and m.path is not None]


def migrate() -> list[str]:
    """Apply every pending migration; returns the names applied (empty when up to date)."""
    with database.obj.connection_context():
        applied = _runner().up()
    for name in applied:
        log.info("migration applied: %s", name)
    return applied
