"""The startup heap is frozen: a full collection on a busy hub walks the calls' objects only."""

import gc

from esl_controller.server import freeze_startup_heap


class _Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector could ever free it


def test_objects_alive_at_startup_are_left_out_of_collections():
    startup = _Node()
    try:
        count = freeze_startup_heap()
        assert count == gc.get_freeze_count() > 0
        assert not any(o is startup for o in gc.get_objects())  # never walked again
        later = _Node()  # made once calls run: collected as usual
        assert any(o is later for o in gc.get_objects())
        del later
        assert gc.collect() >= 1  # the cycle is found and freed
    finally:
        gc.unfreeze()
    assert any(o is startup for o in gc.get_objects())
