"""Exceptions raised by the ESL I/O layer (inbound connection and outbound server)."""

from __future__ import annotations


class ESLError(Exception):
    """Base class for ESL I/O errors."""


class NotConnected(ESLError):
    """No live connection to FreeSWITCH (or the call's socket is already closed)."""


class ConnectionLost(ESLError):
    """The connection dropped while this command or wait was pending."""


class CommandTimeout(ESLError):
    """FreeSWITCH did not answer within the timeout."""


class AuthenticationFailed(ESLError):
    """FreeSWITCH refused the password (``-ERR invalid``) or rejected us by ACL."""


class CommandFailed(ESLError):
    """A command was answered with ``-ERR``; ``reply`` holds the reply text."""

    def __init__(self, reply: str) -> None:
        super().__init__(reply)
        self.reply = reply


class ChannelGone(ESLError):
    """The channel has hung up: no more applications can run on it."""
