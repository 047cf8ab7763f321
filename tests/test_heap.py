"""The send's garbage-collection settings are set for the send and undone after it."""

from __future__ import annotations

import gc
import threading

from newsletter.delivery.heap import YOUNG_THRESHOLD, quiet_gc


def test_quiet_gc_nests_and_restores_the_defaults() -> None:
    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    with quiet_gc():
        assert gc.get_threshold()[0] == max(YOUNG_THRESHOLD, before[0])
        assert gc.get_freeze_count() > 0  # start-up objects out of the collector's sight
        with quiet_gc():  # a second send in the same process
            pass
        assert gc.get_threshold()[0] == max(YOUNG_THRESHOLD, before[0])  # still sending
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_quiet_gc_from_threads_ends_with_the_last_one() -> None:
    before = gc.get_threshold()
    inside = threading.Barrier(3)
    leave = threading.Event()

    def send() -> None:
        with quiet_gc():
            inside.wait()
            leave.wait(5)

    threads = [threading.Thread(target=send) for _ in range(2)]
    for t in threads:
        t.start()
    inside.wait()
    assert gc.get_threshold()[0] == max(YOUNG_THRESHOLD, before[0])
    leave.set()
    for t in threads:
        t.join()
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_quiet_gc_restores_after_an_error() -> None:
    before = gc.get_threshold()
    try:
        with quiet_gc():
            raise RuntimeError("the send failed")
    except RuntimeError:
        pass
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
