"""After startup the heap is settled: a full collection on a busy hub walks the calls' objects only, and
the calls' greenlets carry no spawning stacks."""

import gc

import gevent

from esl_controller.server import settle_after_startup


class _Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector could ever free it


def test_objects_alive_at_startup_are_left_out_of_collections():
    startup = _Node()
    try:
        count = settle_after_startup()
        assert count == gc.get_freeze_count() > 0
        assert not any(o is startup for o in gc.get_objects())  # never walked again
        later = _Node()  # made once calls run: collected as usual
        assert any(o is later for o in gc.get_objects())
        del later
        assert gc.collect() >= 1  # the cycle is found and freed
        assert gevent.spawn(lambda: None).spawning_stack is None
    finally:
        gc.unfreeze()
        gevent.config.track_greenlet_tree = True
    assert any(o is startup for o in gc.get_objects())
