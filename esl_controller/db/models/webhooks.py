"""Durable webhook jobs (the outbox) and every delivery attempt."""

from peewee import (
    BigIntegerField,
    BooleanField,
    CharField,
    ForeignKeyField,
    IntegerField,
    TextField,
)

from esl_controller.db.base import Stamped
from esl_controller.db.fields import IdField, JSONField, UTCTimestampField


class WebhookJob(Stamped):
    call_id = IdField(null=True, index=True)
    message_type = CharField(max_length=64, index=True)
    #: the resolved target at enqueue time: url, headers, credential id, source
    target = JSONField(default=dict)
    target_url = TextField()
    payload = JSONField()
    #: pending | delivering | delivered | failed | skipped
    status = CharField(max_length=16, default="pending")
    attempts = IntegerField(default=0)
    max_attempts = IntegerField(default=8)
    next_attempt_at = UTCTimestampField(null=True)
    locked_by = CharField(max_length=64, null=True)
    locked_until = UTCTimestampField(null=True)
    #: jobs with the same key (a call and a target) are delivered in seq order
    ordering_key = CharField(max_length=128, index=True)
    seq = BigIntegerField(default=0)
    last_error = TextField(null=True)
    delivered_at = UTCTimestampField(null=True)

    class Meta:
        indexes = ((("status", "next_attempt_at"), False),)


class WebhookAttempt(Stamped):
    job = ForeignKeyField(
        WebhookJob, on_delete="CASCADE", column_name="job_id", backref="attempt_rows"
    )
    number = IntegerField()
    request_url = TextField()
    #: secrets masked
    request_headers = JSONField(default=dict)
    status_code = IntegerField(null=True)
    latency_ms = IntegerField(null=True)
    error = TextField(null=True)
    response_excerpt = TextField(null=True)
    #: a replay sent from the API rather than a scheduled attempt
    replay = BooleanField(default=False)
