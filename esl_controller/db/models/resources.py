"""Configuration resources: assistants, phone numbers, tools, credentials, webhook endpoints, files,
structured outputs. Each keeps its Vapi-shaped body in ``data`` plus the columns we filter or join on."""

from peewee import (
    BigIntegerField,
    BooleanField,
    CharField,
    ForeignKeyField,
    IntegerField,
    TextField,
)

from esl_controller.db.base import Resource, Stamped
from esl_controller.db.fields import IdField, JSONField, UTCTimestampField


class Credential(Resource):
    provider = CharField(max_length=64, index=True)
    #: Fernet token of the JSON object holding the secret fields
    secret_blob = TextField()
    #: non-secret fields plus hints (e.g. last 4 characters), safe to return
    redacted = JSONField(default=dict)


class Assistant(Resource):
    pass


class PhoneNumber(Resource):
    provider = CharField(max_length=32)
    #: E.164 number or None for SIP-URI-only numbers
    number = CharField(max_length=64, null=True, unique=True)
    sip_uri = CharField(max_length=255, null=True, unique=True)
    assistant = ForeignKeyField(
        Assistant, null=True, on_delete="SET NULL", column_name="assistant_id"
    )
    credential = ForeignKeyField(
        Credential, null=True, on_delete="RESTRICT", column_name="credential_id"
    )


class Tool(Resource):
    type = CharField(max_length=64, index=True)
    credential = ForeignKeyField(
        Credential, null=True, on_delete="RESTRICT", column_name="credential_id"
    )


class WebhookEndpoint(Resource):
    url = TextField()
    #: account | assistant | phone-number | tool
    scope = CharField(max_length=32, index=True)
    #: the assistant/phone number/tool id for scoped endpoints
    scope_id = IdField(null=True, index=True)
    enabled = BooleanField(default=True, index=True)
    credential = ForeignKeyField(
        Credential, null=True, on_delete="RESTRICT", column_name="credential_id"
    )


class File(Resource):
    original_name = CharField(max_length=255, null=True)
    bytes = BigIntegerField(default=0)
    mimetype = CharField(max_length=255, null=True)
    purpose = CharField(max_length=64, null=True, index=True)
    status = CharField(max_length=32, default="done")
    #: content address under <data_dir>/files/
    sha256 = CharField(max_length=64, index=True)


class StructuredOutput(Resource):
    pass


class StructuredOutputRun(Stamped):
    structured_output = ForeignKeyField(
        StructuredOutput, on_delete="CASCADE", column_name="structured_output_id"
    )
    call_id = IdField(index=True)
    #: queued | running | done | failed
    status = CharField(max_length=16, default="queued", index=True)
    attempts = IntegerField(default=0)
    result = JSONField(null=True)
    error = TextField(null=True)
    finished_at = UTCTimestampField(null=True)
