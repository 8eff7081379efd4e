"""Every command the FreeSWITCH peer receives, with waits on "command X received" (no sleeps)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import gevent
import gevent.event

from esl_controller.esl.protocol import Frame


@dataclass(frozen=True)
class ReceivedCommand:
    source: str  # "inbound" (ESL server connection) or "outbound:<channel uuid>"
    line: str  # the command line, e.g. "api uuid_kill <uuid>" or "sendmsg"
    frame: Frame  # headers and body as received

    def header(self, name: str) -> str | None:
        return self.frame.get(name)


Matcher = str | Callable[[ReceivedCommand], bool]


class CommandLog:
    def __init__(self) -> None:
        self.commands: list[ReceivedCommand] = []
        self._changed = gevent.event.Event()

    def record(self, item: ReceivedCommand) -> None:
        self.commands.append(item)
        changed, self._changed = self._changed, gevent.event.Event()
        changed.set()

    def lines(self) -> list[str]:
        return [c.line for c in self.commands]

    def find(self, match: Matcher, since: int = 0) -> ReceivedCommand | None:
        test = match if callable(match) else (lambda c: c.line.startswith(match))
        for item in self.commands[since:]:
            if test(item):
                return item
        return None

    def wait_for(self, match: Matcher, timeout: float = 5.0, since: int = 0) -> ReceivedCommand:
        """The first command (from index ``since``) whose line starts with ``match`` (a string) or
        for which ``match(cmd)`` is true; ``TimeoutError`` listing what was received otherwise."""
        with gevent.Timeout(timeout, False):
            while True:
                changed = self._changed
                found = self.find(match, since)
                if found is not None:
                    return found
                changed.wait()
        raise TimeoutError(f"command {match!r} not received within {timeout}s; got {self.lines()}")
