"""A call and everything it accumulates: messages, events, artifacts, cost items."""

from peewee import BigAutoField, CharField, DoubleField, ForeignKeyField, IntegerField, TextField

from esl_controller.db.base import BaseModel, Stamped
from esl_controller.db.fields import IdField, JSONField, UTCTimestampField, utcnow


class Call(Stamped):
    #: inboundPhoneCall | outboundPhoneCall | webCall | vapi.websocketCall
    type = CharField(max_length=32)
    #: queued | ringing | in-progress | forwarding | ended
    status = CharField(max_length=16, default="queued")
    ended_reason = CharField(max_length=128, null=True)
    name = CharField(max_length=200, null=True)
    assistant_id = IdField(null=True)
    phone_number_id = IdField(null=True)
    customer_number = CharField(max_length=64, null=True)
    #: the FreeSWITCH channel uuid (origination_uuid or the inbound channel)
    channel_uuid = IdField(null=True, index=True)
    #: node that owns the live call
    node_id = CharField(max_length=64, null=True)
    started_at = UTCTimestampField(null=True)
    ended_at = UTCTimestampField(null=True)
    cost = DoubleField(null=True)
    #: everything else in Vapi's shape (assistant, overrides, customer, transport, monitor, artifact, analysis…)
    data = JSONField(default=dict)

    class Meta:
        indexes = (
            (("assistant_id", "created_at"), False),
            (("phone_number_id", "created_at"), False),
            (("status", "created_at"), False),
        )


class CallMessage(BaseModel):
    """A conversation turn or transcript entry (Vapi's call.messages[])."""

    id = BigAutoField()
    call = ForeignKeyField(Call, on_delete="CASCADE", column_name="call_id", backref="messages")
    seq = IntegerField()
    #: user | bot | system | tool_calls | tool_call_result
    role = CharField(max_length=32)
    message = TextField(null=True)
    time = UTCTimestampField(default=utcnow)
    end_time = UTCTimestampField(null=True)
    seconds_from_start = DoubleField(null=True)
    duration = DoubleField(null=True)
    data = JSONField(default=dict)

    class Meta:
        indexes = ((("call", "seq"), True),)


class CallEvent(BaseModel):
    """Status changes, ESL events, control actions, pipeline and webhook notes: the call log and timeline."""

    id = BigAutoField()
    call = ForeignKeyField(Call, on_delete="CASCADE", column_name="call_id", backref="events")
    at = UTCTimestampField(default=utcnow, index=True)
    kind = CharField(max_length=64)
    #: esl | api | pipeline | runtime | webhook
    source = CharField(max_length=16, default="runtime")
    level = CharField(max_length=8, default="INFO")
    data = JSONField(default=dict)

    class Meta:
        indexes = ((("call", "at"), False),)


class Artifact(Stamped):
    call = ForeignKeyField(Call, on_delete="CASCADE", column_name="call_id", backref="artifacts")
    #: recording-mono | recording-stereo | pcap | log
    kind = CharField(max_length=32)
    path = TextField()
    bytes = IntegerField(default=0)
    mimetype = CharField(max_length=128)
    #: writing | sealed | failed
    status = CharField(max_length=16, default="writing")
    data = JSONField(default=dict)

    class Meta:
        indexes = ((("call", "kind"), True),)


class CostItem(Stamped):
    call = ForeignKeyField(Call, on_delete="CASCADE", column_name="call_id", backref="cost_items")
    #: transport | transcriber | model | voice | vapi | analysis
    type = CharField(max_length=32)
    provider = CharField(max_length=64, null=True)
    model = CharField(max_length=128, null=True)
    #: usage figures: minutes, promptTokens, completionTokens, characters, audioSeconds...
    usage = JSONField(default=dict)
    #: decimal USD as text, so no float rounding creeps in
    amount = CharField(max_length=32, null=True)
    rate_card_version = CharField(max_length=64, null=True)


__all__ = ["Artifact", "Call", "CallEvent", "CallMessage", "CostItem"]
_ = BigAutoField  # re-exported for migrations' readers
