"""The long-running processes' collector settings (dashboard/live/gc_tuning.py)."""

from __future__ import annotations

import gc
import time
import weakref

import pytest

from dashboard.contract.topics import Scope
from dashboard.live import gc_tuning
from tests.test_consumers import page

__all__ = ["page"]  # the fixture, shared with test_consumers


@pytest.fixture
def restored_gc():
    thresholds = gc.get_threshold()
    gc.set_threshold(700, 10, 10)  # CPython's own, whatever the test process runs with
    yield
    refreeze = gc_tuning._refreeze
    if refreeze.installed:  # the rest of the suite collects as CPython does
        gc.callbacks.remove(refreeze.after)
        refreeze.installed = False
    refreeze.closed_at = -gc_tuning.QUIET_AFTER_CLOSE
    refreeze.thaw_at = time.monotonic() + gc_tuning.UNFREEZE_EVERY
    gc.unfreeze()
    gc.set_threshold(*thresholds)


class Node:
    """An object of an open page's kind: tracked by the collector, possibly in a cycle."""

    def __init__(self) -> None:
        self.peer: Node | None = None


@pytest.mark.parametrize("ingest_only", [True, False])
def test_what_startup_made_is_out_of_the_collectors_sight(restored_gc, ingest_only):
    kept_for_life = [{"template": n} for n in range(1000)]

    gc_tuning.tune(ingest_only=ingest_only)

    assert gc.get_freeze_count() >= len(kept_for_life)
    seen_by_collector = {id(o) for o in gc.get_objects()}
    assert not any(id(o) in seen_by_collector for o in kept_for_life)


def test_a_bridge_collects_its_older_generations_less_often(restored_gc):
    gc_tuning.tune(ingest_only=True)

    assert gc.get_threshold() == gc_tuning.INGEST_THRESHOLDS
    assert gc.get_threshold()[2] >= 10 * 10  # CPython's 10: the oldest pass cost 24 % of ingest


def test_a_web_process_keeps_collecting_what_closed_pages_leave(restored_gc):
    gc_tuning.tune(ingest_only=False)

    assert gc.get_threshold() == (700, 10, 10)  # 131 MB held after 10 rounds of 1,000 pages


def test_a_web_process_freezes_what_each_full_collection_leaves(restored_gc):
    gc_tuning.tune(ingest_only=False)
    open_pages = [Node() for _ in range(1000)]  # connected after startup

    gc.collect()

    # The next full collection does not look at them again.
    seen_by_collector = {id(o) for o in gc.get_objects()}
    assert not any(id(o) in seen_by_collector for o in open_pages)


def test_a_closed_pages_cycles_are_freed_by_the_next_full_collection(restored_gc):
    gc_tuning.tune(ingest_only=False)
    left = Node()
    left.peer = Node()
    left.peer.peer = left  # a cycle: only the collector frees it
    closed = weakref.ref(left)
    gc.collect()  # frozen with the rest

    del left
    gc.collect()
    assert closed() is not None  # hidden while frozen

    gc_tuning.page_closed()
    gc.collect()
    assert closed() is None


def test_what_dies_just_after_a_page_closed_is_not_frozen_first(restored_gc):
    gc_tuning.tune(ingest_only=False)
    gc_tuning.page_closed()
    closing = Node()  # the closed page's connection, still winding down
    closing.peer = closing
    gone = weakref.ref(closing)

    gc.collect()  # within QUIET_AFTER_CLOSE: nothing frozen
    assert gc.get_freeze_count() == 0
    del closing
    gc.collect()
    assert gone() is None


def test_cycles_hidden_by_a_freeze_are_freed_within_the_unfreeze_period(restored_gc):
    gc_tuning.tune(ingest_only=False)
    died = Node()
    died.peer = died
    dead = weakref.ref(died)
    gc.collect()
    del died
    gc.collect()
    assert dead() is not None  # hidden while frozen

    gc_tuning._refreeze.thaw_at = time.monotonic()  # UNFREEZE_EVERY has passed
    gc.collect()  # sees only what came since the freeze, then thaws
    gc.collect()  # sees everything
    assert dead() is None


@pytest.mark.django_db(transaction=True)
async def test_a_page_that_closes_in_a_web_process_unfreezes_it(restored_gc, hq, people, page):
    gc_tuning.tune(ingest_only=False)
    socket, connected, _ = await page(people.viewer, hq[Scope.BUILDING])
    assert connected
    frozen_at_startup = gc.get_freeze_count()
    gc.collect()
    assert gc.get_freeze_count() > frozen_at_startup  # the open page's objects too

    await socket.disconnect()

    assert gc.get_freeze_count() == 0
