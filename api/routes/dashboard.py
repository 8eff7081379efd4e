"""The dashboard blueprint lives in :mod:`api.dashboard` (templates and static assets beside it)."""

from api.dashboard import bp

__all__ = ["bp"]
