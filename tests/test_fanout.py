"""Coalesced fan-out: the latest value per tile, once per window, and always the final one."""

from __future__ import annotations

import asyncio
import itertools
import statistics
import uuid

from dashboard.bridge.fanout import Fanout
from dashboard.live import tiles

BUILDING = uuid.uuid4()
DEVICE = uuid.uuid4()


def make_fanout(window: float = 0.05) -> tuple[Fanout, list[tuple[str, str]], dict[str, int]]:
    sent: list[tuple[str, str]] = []
    value = {"temperature": 0}

    def render(tile: tiles.Tile) -> str:
        return f"<{tile.kind}:{value['temperature']}>"

    async def send(building_id: uuid.UUID, html: str, audience: str, stream: str, seq: int) -> None:
        assert building_id == BUILDING
        sent.append((audience, html))

    return Fanout(BUILDING, render, send, window), sent, value


async def test_a_burst_goes_out_as_its_first_value_at_once_then_the_final_one():
    fanout, sent, value = make_fanout(window=0.2)
    task = asyncio.create_task(fanout.run())
    for n in range(1, 101):  # 100 changes over about 0.1 s
        value["temperature"] = n
        fanout.changed(tiles.meta(DEVICE, "temperature"))
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.4)
    task.cancel()
    assert sent[-1] == ("all", "<meta:100>")
    assert len(sent) == 2  # the first at once, everything after it coalesced


async def test_a_failing_send_is_logged_once_and_the_fanout_goes_on(caplog):
    fanout, sent, value = make_fanout()
    original = fanout._send
    down = True

    async def send(*args) -> None:
        if down:
            raise ConnectionError("channel layer unavailable")
        await original(*args)

    fanout._send = send
    task = asyncio.create_task(fanout.run())
    for _ in range(5):
        fanout.changed(tiles.meta(DEVICE, "temperature"))
        await asyncio.sleep(0.06)
    down = False
    value["temperature"] = 3
    fanout.changed(tiles.meta(DEVICE, "temperature"))
    await asyncio.sleep(0.15)
    task.cancel()
    assert sent == [("all", "<meta:3>")]
    failures = [r for r in caplog.records if "failing" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info is not None
    assert any("works again" in r.getMessage() for r in caplog.records)
    # The lost frames' numbers stay used, so pages see the gap and ask for a snapshot.
    assert fanout.seq["all"] > 1


async def test_a_change_during_a_flush_goes_out_in_the_next_window():
    fanout, sent, value = make_fanout()
    task = asyncio.create_task(fanout.run())
    fanout.changed(tiles.meta(DEVICE, "temperature"))
    await asyncio.sleep(0.15)
    value["temperature"] = 7
    fanout.changed(tiles.meta(DEVICE, "temperature"))
    await asyncio.sleep(0.15)
    task.cancel()
    assert sent == [("all", "<meta:0>"), ("all", "<meta:7>")]


async def test_support_tiles_go_to_the_support_group_only_and_device_lists_supersede_values():
    fanout, sent, _ = make_fanout()
    fanout.changed(tiles.meta(DEVICE, "temperature"))
    fanout.changed(tiles.device(DEVICE))
    fanout.changed(tiles.REJECTIONS)
    await fanout.flush()
    assert sorted(sent) == [("all", "<device:0>"), ("support", "<rejections:0>")]


async def test_a_change_during_a_slow_flush_goes_out_a_window_after_that_flush_began():
    window, flush_takes = 0.2, 0.15
    sent_at: list[float] = []
    fanout: Fanout

    async def slow_send(building_id, html, audience, stream, seq) -> None:
        sent_at.append(loop.time())
        if len(sent_at) == 1:
            fanout.changed(tiles.meta(DEVICE, "temperature"))  # arrives during the flush
            await asyncio.sleep(flush_takes)  # e.g. a thousand tiles to render and send

    loop = asyncio.get_running_loop()
    fanout = Fanout(BUILDING, lambda tile: "<meta>", slow_send, window)
    task = asyncio.create_task(fanout.run())
    fanout.changed(tiles.meta(DEVICE, "temperature"))
    await asyncio.sleep(window * 3)
    task.cancel()
    assert len(sent_at) == 2
    # Not a window after the slow flush ended: flushes begin once a window.
    assert window - 0.01 < sent_at[1] - sent_at[0] < window + 0.05


async def test_a_lone_change_in_a_quiet_building_goes_out_at_once():
    window = 1.0
    fanout, sent, _ = make_fanout(window)
    loop = asyncio.get_running_loop()
    task = asyncio.create_task(fanout.run())
    started = loop.time()
    fanout.changed(tiles.meta(DEVICE, "temperature"))
    while not sent:
        await asyncio.sleep(0.005)
    assert loop.time() - started < window / 4
    fanout.changed(tiles.meta(DEVICE, "temperature"))  # the next one is coalesced again
    await asyncio.sleep(window / 2)
    assert len(sent) == 1
    task.cancel()


async def test_under_steady_changes_flushes_begin_once_a_window_and_every_final_value_goes_out():
    window = 0.1
    sent_at: list[float] = []
    shown: dict[str, str] = {}
    value = {"n": 0}
    loop = asyncio.get_running_loop()

    def render(tile: tiles.Tile) -> str:
        return f"{tile.kind}={value['n']};"

    async def send(building_id, html, audience, stream, seq) -> None:
        sent_at.append(loop.time())
        for part in filter(None, html.split(";")):
            kind, n = part.split("=")
            shown[kind] = n
        await asyncio.sleep(window / 2)  # a flush that takes a while

    fanout = Fanout(BUILDING, render, send, window)
    task = asyncio.create_task(fanout.run())
    while loop.time() - (sent_at[0] if sent_at else loop.time()) < window * 8:
        value["n"] += 1
        fanout.changed(tiles.meta(DEVICE, "temperature"))
        fanout.changed(tiles.device(DEVICE))
        await asyncio.sleep(window / 20)
    await asyncio.sleep(window * 2)
    task.cancel()
    periods = [b - a for a, b in itertools.pairwise(sent_at)]
    assert len(periods) >= 6
    # A busy machine may be late now and then, never early.
    assert all(p > window * 0.9 for p in periods), periods
    assert statistics.median(periods) < window * 1.3, periods
    # Rendered ahead of each flush, then changed again: still the final value.
    assert shown == {"device": str(value["n"])}


async def test_tiles_are_rendered_ahead_of_the_flush_and_again_only_when_changed_since():
    rendered: list[tiles.Tile] = []
    fanout, sent, value = make_fanout()

    def render(tile: tiles.Tile) -> str:
        rendered.append(tile)
        return f"<{tile.kind}:{value['temperature']}>"

    fanout._render = render
    other = uuid.uuid4()
    fanout.changed(tiles.meta(DEVICE, "temperature"))
    fanout.changed(tiles.meta(other, "temperature"))
    fanout.changed(tiles.REJECTED_NEW)
    fanout.render_ahead()
    # Taking the new rejections is a side effect: that tile waits for the flush.
    assert rendered == [tiles.meta(DEVICE, "temperature"), tiles.meta(other, "temperature")]
    value["temperature"] = 5
    fanout.changed(tiles.meta(other, "temperature"))
    await fanout.flush()
    assert rendered[2:] == [tiles.meta(other, "temperature"), tiles.REJECTED_NEW]
    assert sorted(sent) == [("all", "<meta:0><meta:5>"), ("support", "<rejected_new:5>")]


async def test_a_value_changed_after_its_device_list_was_rendered_ahead_renews_the_list():
    fanout, sent, value = make_fanout()
    fanout.changed(tiles.device(DEVICE))
    fanout.render_ahead()
    value["temperature"] = 9
    fanout.changed(tiles.meta(DEVICE, "temperature"))
    await fanout.flush()
    assert sent == [("all", "<device:9>")]


async def test_a_stopped_fanout_returns_even_when_the_channel_layer_loses_the_cancellation():
    # serve once never stopped: the bridge cancelled its fan-out mid-send on Redis, the
    # cancellation went no further, and the fan-out waited for the next change forever.
    fanout, sent, _ = make_fanout(window=0.05)
    original = fanout._send
    sending = asyncio.Event()

    async def send_losing_cancellation(*args) -> None:
        sending.set()
        try:
            await asyncio.sleep(0.2)
        except asyncio.CancelledError:
            asyncio.current_task().uncancel()  # as a library that swallows it does
        await original(*args)

    fanout._send = send_losing_cancellation
    task = asyncio.create_task(fanout.run())
    fanout.changed(tiles.meta(DEVICE, "temperature"))
    await sending.wait()
    fanout.stop()
    task.cancel()
    await asyncio.wait_for(task, 1.0)  # returns, instead of waiting on the next change
    assert sent == [("all", "<meta:0>")]  # the frame in hand still went out
