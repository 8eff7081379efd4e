"""The proxy every model binds to, and the common base models."""

from __future__ import annotations

from peewee import CharField, DatabaseProxy, Model

from esl_controller.db.fields import IdField, JSONField, UTCTimestampField, new_id, utcnow

database = DatabaseProxy()


class BaseModel(Model):
    class Meta:
        database = database
        legacy_table_names = False


class Stamped(BaseModel):
    """id, orgId, createdAt, updatedAt: on every stored object (all UTC, indexed for the list filters)."""

    id = IdField(primary_key=True, default=new_id)
    org_id = IdField(index=True)
    created_at = UTCTimestampField(default=utcnow, index=True)
    updated_at = UTCTimestampField(default=utcnow, index=True)

    def touch(self) -> None:
        self.updated_at = utcnow()


class Resource(Stamped):
    """A configuration resource: a few indexed columns plus the validated Vapi-shaped body as JSON."""

    name = CharField(max_length=200, null=True)
    data = JSONField(default=dict)
