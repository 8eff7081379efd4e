"""Webhook queue: a unique (ordering_key, seq) index, so per-call order is enforced by the database and the
head-of-line check of a claim is one index probe."""

from peewee import *  # noqa: F403


def up(migrator, db):
    migrator.migrate(migrator.add_index("webhook_job", ("ordering_key", "seq"), unique=True))


def down(migrator, db):
    migrator.migrate(migrator.drop_index("webhook_job", "webhook_job_ordering_key_seq"))
