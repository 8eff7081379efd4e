"""Webhook queue indexes: a unique (ordering_key, seq), so per-call order is enforced by the database and
the head-of-line check of a claim is one index probe; and the due jobs (pending or leased) by
next_attempt_at, partial so that a claim walks only open jobs, oldest first, and stops at its limit."""

from peewee import SQL


def up(migrator, db):
    migrator.migrate(
        migrator.add_index("webhook_job", ("ordering_key", "seq"), unique=True),
        migrator.add_index(
            "webhook_job",
            ("next_attempt_at",),
            where=SQL("status IN ('pending', 'delivering')"),
            name="webhook_job_due",
        ),
    )


def down(migrator, db):
    migrator.migrate(
        migrator.drop_index("webhook_job", "webhook_job_due"),
        migrator.drop_index("webhook_job", "webhook_job_ordering_key_seq"),
    )
