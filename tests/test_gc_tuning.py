"""The long-running processes' collector settings (dashboard/live/gc_tuning.py)."""

from __future__ import annotations

import gc

import pytest

from dashboard.live import gc_tuning


@pytest.fixture
def restored_gc():
    thresholds = gc.get_threshold()
    gc.set_threshold(700, 10, 10)  # CPython's own, whatever the test process runs with
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


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
