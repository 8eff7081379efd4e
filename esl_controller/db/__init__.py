"""Database layer: one ``DatabaseProxy`` bound at run time, so the API and the controller share the models.

``connect(url)`` maps a URL to a database: ``sqlite:///path`` (WAL, foreign keys, busy timeout) or
``postgresql://...`` (pooled, with psycogreen so queries yield to the gevent hub instead of blocking it).
"""

from esl_controller.db.base import BaseModel, database
from esl_controller.db.connect import close, connect, is_postgres, ping
from esl_controller.db.migrate import migrate, pending_migrations

__all__ = [
    "BaseModel",
    "close",
    "connect",
    "database",
    "is_postgres",
    "migrate",
    "pending_migrations",
    "ping",
]
