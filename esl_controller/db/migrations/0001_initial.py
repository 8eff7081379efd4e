"""Initial schema: every resource, calls and their children, webhook jobs and attempts (generated from the models, frozen here)."""

from peewee import *

from esl_controller.db.fields import IdField, JSONField, UTCTimestampField


def up(migrator, db):
    class ApiKey(Model):
        id = IdField(primary_key=True, max_length=36)
        org_id = IdField(index=True, max_length=36)
        created_at = UTCTimestampField(index=True)
        updated_at = UTCTimestampField(index=True)
        name = CharField(max_length=200)
        prefix = CharField(index=True, max_length=16)
        key_hash = CharField(unique=True, max_length=64)
        last_used_at = UTCTimestampField(null=True)
        revoked_at = UTCTimestampField(null=True)

        class Meta:
            database = db
            table_name = "api_key"

    db.create_tables([ApiKey])

    class Call(Model):
        id = IdField(primary_key=True, max_length=36)
        org_id = IdField(index=True, max_length=36)
        created_at = UTCTimestampField(index=True)
        updated_at = UTCTimestampField(index=True)
        type = CharField(max_length=32)
        status = CharField(max_length=16, default="queued")
        ended_reason = CharField(null=True, max_length=128)
        name = CharField(null=True, max_length=200)
        assistant_id = IdField(null=True, max_length=36)
        phone_number_id = IdField(null=True, max_length=36)
        customer_number = CharField(null=True, max_length=64)
        channel_uuid = IdField(index=True, null=True, max_length=36)
        node_id = CharField(null=True, max_length=64)
        started_at = UTCTimestampField(null=True)
        ended_at = UTCTimestampField(null=True)
        cost = DoubleField(null=True)
        data = JSONField(default=dict)

        class Meta:
            database = db
            table_name = "call"
            indexes = (
                (("assistant_id", "created_at"), False),
                (("phone_number_id", "created_at"), False),
                (("status", "created_at"), False),
            )

    db.create_tables([Call])

    class Artifact(Model):
        id = IdField(primary_key=True, max_length=36)
        org_id = IdField(index=True, max_length=36)
        created_at = UTCTimestampField(index=True)
        updated_at = UTCTimestampField(index=True)
        call = ForeignKeyField(Call, on_delete="CASCADE")
        kind = CharField(max_length=32)
        path = TextField()
        bytes = IntegerField(default=0)
        mimetype = CharField(max_length=128)
        status = CharField(max_length=16, default="writing")
        data = JSONField(default=dict)

        class Meta:
            database = db
            table_name = "artifact"
            indexes = ((("call", "kind"), True),)

    db.create_tables([Artifact])

    class Assistant(Model):
        id = IdField(primary_key=True, max_length=36)
        org_id = IdField(index=True, max_length=36)
        created_at = UTCTimestampField(index=True)
        updated_at = UTCTimestampField(index=True)
        name = CharField(null=True, max_length=200)
        data = JSONField(default=dict)

        class Meta:
            database = db
            table_name = "assistant"

    db.create_tables([Assistant])

    class CallEvent(Model):
        id = BigAutoField()
        call = ForeignKeyField(Call, on_delete="CASCADE")
        at = UTCTimestampField(index=True)
        kind = CharField(max_length=64)
        source = CharField(max_length=16, default="runtime")
        level = CharField(max_length=8, default="INFO")
        data = JSONField(default=dict)

        class Meta:
            database = db
            table_name = "call_event"
            indexes = ((("call", "at"), False),)

    db.create_tables([CallEvent])

    class CallMessage(Model):
        id = BigAutoField()
        call = ForeignKeyField(Call, on_delete="CASCADE")
        seq = IntegerField()
        role = CharField(max_length=32)
        message = TextField(null=True)
        time = UTCTimestampField()
        end_time = UTCTimestampField(null=True)
        seconds_from_start = DoubleField(null=True)
        duration = DoubleField(null=True)
        data = JSONField(default=dict)

        class Meta:
            database = db
            table_name = "call_message"
            indexes = ((("call", "seq"), True),)

    db.create_tables([CallMessage])

    class CostItem(Model):
        id = IdField(primary_key=True, max_length=36)
        org_id = IdField(index=True, max_length=36)
        created_at = UTCTimestampField(index=True)
        updated_at = UTCTimestampField(index=True)
        call = ForeignKeyField(Call, on_delete="CASCADE")
        type = CharField(max_length=32)
        provider = CharField(null=True, max_length=64)
        model = CharField(null=True, max_length=128)
        usage = JSONField(default=dict)
        amount = CharField(null=True, max_length=32)
        rate_card_version = CharField(null=True, max_length=64)

        class Meta:
            database = db
            table_name = "cost_item"

    db.create_tables([CostItem])

    class Credential(Model):
        id = IdField(primary_key=True, max_length=36)
        org_id = IdField(index=True, max_length=36)
        created_at = UTCTimestampField(index=True)
        updated_at = UTCTimestampField(index=True)
        name = CharField(null=True, max_length=200)
        data = JSONField(default=dict)
        provider = CharField(index=True, max_length=64)
        secret_blob = TextField()
        redacted = JSONField(default=dict)

        class Meta:
            database = db
            table_name = "credential"

    db.create_tables([Credential])

    class File(Model):
        id = IdField(primary_key=True, max_length=36)
        org_id = IdField(index=True, max_length=36)
        created_at = UTCTimestampField(index=True)
        updated_at = UTCTimestampField(index=True)
        name = CharField(null=True, max_length=200)
        data = JSONField(default=dict)
        original_name = CharField(null=True)
        bytes = BigIntegerField(default=0)
        mimetype = CharField(null=True)
        purpose = CharField(index=True, null=True, max_length=64)
        status = CharField(max_length=32, default="done")
        sha256 = CharField(index=True, max_length=64)

        class Meta:
            database = db
            table_name = "file"

    db.create_tables([File])

    class PhoneNumber(Model):
        id = IdField(primary_key=True, max_length=36)
        org_id = IdField(index=True, max_length=36)
        created_at = UTCTimestampField(index=True)
        updated_at = UTCTimestampField(index=True)
        name = CharField(null=True, max_length=200)
        data = JSONField(default=dict)
        provider = CharField(max_length=32)
        number = CharField(unique=True, null=True, max_length=64)
        sip_uri = CharField(unique=True, null=True)
        assistant = ForeignKeyField(Assistant, null=True, on_delete="SET NULL")
        credential = ForeignKeyField(Credential, null=True, on_delete="RESTRICT")

        class Meta:
            database = db
            table_name = "phone_number"

    db.create_tables([PhoneNumber])

    class StructuredOutput(Model):
        id = IdField(primary_key=True, max_length=36)
        org_id = IdField(index=True, max_length=36)
        created_at = UTCTimestampField(index=True)
        updated_at = UTCTimestampField(index=True)
        name = CharField(null=True, max_length=200)
        data = JSONField(default=dict)

        class Meta:
            database = db
            table_name = "structured_output"

    db.create_tables([StructuredOutput])

    class StructuredOutputRun(Model):
        id = IdField(primary_key=True, max_length=36)
        org_id = IdField(index=True, max_length=36)
        created_at = UTCTimestampField(index=True)
        updated_at = UTCTimestampField(index=True)
        structured_output = ForeignKeyField(StructuredOutput, on_delete="CASCADE")
        call_id = IdField(index=True, max_length=36)
        status = CharField(index=True, max_length=16, default="queued")
        attempts = IntegerField(default=0)
        result = JSONField(null=True)
        error = TextField(null=True)
        finished_at = UTCTimestampField(null=True)

        class Meta:
            database = db
            table_name = "structured_output_run"

    db.create_tables([StructuredOutputRun])

    class Tool(Model):
        id = IdField(primary_key=True, max_length=36)
        org_id = IdField(index=True, max_length=36)
        created_at = UTCTimestampField(index=True)
        updated_at = UTCTimestampField(index=True)
        name = CharField(null=True, max_length=200)
        data = JSONField(default=dict)
        type = CharField(index=True, max_length=64)
        credential = ForeignKeyField(Credential, null=True, on_delete="RESTRICT")

        class Meta:
            database = db
            table_name = "tool"

    db.create_tables([Tool])

    class WebhookJob(Model):
        id = IdField(primary_key=True, max_length=36)
        org_id = IdField(index=True, max_length=36)
        created_at = UTCTimestampField(index=True)
        updated_at = UTCTimestampField(index=True)
        call_id = IdField(index=True, null=True, max_length=36)
        message_type = CharField(index=True, max_length=64)
        target = JSONField(default=dict)
        target_url = TextField()
        payload = JSONField()
        status = CharField(max_length=16, default="pending")
        attempts = IntegerField(default=0)
        max_attempts = IntegerField(default=8)
        next_attempt_at = UTCTimestampField(null=True)
        locked_by = CharField(null=True, max_length=64)
        locked_until = UTCTimestampField(null=True)
        ordering_key = CharField(index=True, max_length=128)
        seq = BigIntegerField(default=0)
        last_error = TextField(null=True)
        delivered_at = UTCTimestampField(null=True)

        class Meta:
            database = db
            table_name = "webhook_job"
            indexes = ((("status", "next_attempt_at"), False),)

    db.create_tables([WebhookJob])

    class WebhookAttempt(Model):
        id = IdField(primary_key=True, max_length=36)
        org_id = IdField(index=True, max_length=36)
        created_at = UTCTimestampField(index=True)
        updated_at = UTCTimestampField(index=True)
        job = ForeignKeyField(WebhookJob, on_delete="CASCADE")
        number = IntegerField()
        request_url = TextField()
        request_headers = JSONField(default=dict)
        status_code = IntegerField(null=True)
        latency_ms = IntegerField(null=True)
        error = TextField(null=True)
        response_excerpt = TextField(null=True)
        replay = BooleanField(default=False)

        class Meta:
            database = db
            table_name = "webhook_attempt"

    db.create_tables([WebhookAttempt])

    class WebhookEndpoint(Model):
        id = IdField(primary_key=True, max_length=36)
        org_id = IdField(index=True, max_length=36)
        created_at = UTCTimestampField(index=True)
        updated_at = UTCTimestampField(index=True)
        name = CharField(null=True, max_length=200)
        data = JSONField(default=dict)
        url = TextField()
        scope = CharField(index=True, max_length=32)
        scope_id = IdField(index=True, null=True, max_length=36)
        enabled = BooleanField(index=True, default=True)
        credential = ForeignKeyField(Credential, null=True, on_delete="RESTRICT")

        class Meta:
            database = db
            table_name = "webhook_endpoint"

    db.create_tables([WebhookEndpoint])


def down(migrator, db):
    migrator.migrate(migrator.drop_table("webhook_endpoint"))
    migrator.migrate(migrator.drop_table("webhook_attempt"))
    migrator.migrate(migrator.drop_table("webhook_job"))
    migrator.migrate(migrator.drop_table("tool"))
    migrator.migrate(migrator.drop_table("structured_output_run"))
    migrator.migrate(migrator.drop_table("structured_output"))
    migrator.migrate(migrator.drop_table("phone_number"))
    migrator.migrate(migrator.drop_table("file"))
    migrator.migrate(migrator.drop_table("credential"))
    migrator.migrate(migrator.drop_table("cost_item"))
    migrator.migrate(migrator.drop_table("call_message"))
    migrator.migrate(migrator.drop_table("call_event"))
    migrator.migrate(migrator.drop_table("assistant"))
    migrator.migrate(migrator.drop_table("artifact"))
    migrator.migrate(migrator.drop_table("call"))
    migrator.migrate(migrator.drop_table("api_key"))
