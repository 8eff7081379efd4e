"""API keys: only a hash is stored; the key itself is shown once at creation."""

from peewee import CharField

from esl_controller.db.base import Stamped
from esl_controller.db.fields import UTCTimestampField


class ApiKey(Stamped):
    name = CharField(max_length=200)
    #: the first characters of the key, shown in listings to tell keys apart
    prefix = CharField(max_length=16, index=True)
    #: hex SHA-256 of the whole key (keys carry 256 bits of randomness, so a plain hash suffices)
    key_hash = CharField(max_length=64, unique=True)
    last_used_at = UTCTimestampField(null=True)
    revoked_at = UTCTimestampField(null=True)
