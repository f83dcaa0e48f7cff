"""The long-running processes' collector settings (dashboard/live/gc_tuning.py)."""

from __future__ import annotations

import gc

import pytest

from dashboard.live import gc_tuning


@pytest.fixture
def restored_gc():
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_what_startup_made_is_out_of_the_collectors_sight(restored_gc):
    kept_for_life = [{"template": n} for n in range(1000)]

    gc_tuning.tune()

    assert gc.get_freeze_count() >= len(kept_for_life)
    seen_by_collector = {id(o) for o in gc.get_objects()}
    assert not any(id(o) in seen_by_collector for o in kept_for_life)


def test_older_generations_are_collected_less_often_than_by_default(restored_gc):
    gc_tuning.tune()

    young, middle, old = gc.get_threshold()
    assert (young, middle, old) == gc_tuning.THRESHOLDS
    assert old >= 10 * 10  # CPython's default is 10: the oldest pass cost 24 % of ingest
