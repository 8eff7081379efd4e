"""Named one-shot timers for one call session (gevent).

``ScheduleTimer(name, seconds)`` from the reducer (re)starts the named timer; when it fires, the
callback gets the name and the session feeds the matching input (``ring`` -> RingTimeout,
``max-duration`` -> MaxDurationElapsed, others -> CommandTimeout(what=name)). ``cancel_all`` runs when
the session ends, so no timer greenlet outlives its call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import gevent

log = logging.getLogger("esl_controller.calls.timers")


class Timers:
    def __init__(self, fire: Callable[[str], None]) -> None:
        self._fire = fire
        self._live: dict[str, gevent.Greenlet] = {}

    def schedule(self, name: str, seconds: float) -> None:
        self.cancel(name)
        self._live[name] = gevent.spawn_later(max(0.0, float(seconds)), self._run, name)

    def cancel(self, name: str) -> None:
        greenlet = self._live.pop(name, None)
        if greenlet is not None and greenlet is not gevent.getcurrent():
            greenlet.kill(block=False)

    def cancel_all(self) -> None:
        for name in list(self._live):
            self.cancel(name)

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._live)

    def _run(self, name: str) -> None:
        self._live.pop(name, None)
        try:
            self._fire(name)
        except Exception:
            log.exception("timer %s: callback failed", name)
