"""Coalesced fan-out: the latest value per tile, once per window, and always the final one."""

from __future__ import annotations

import asyncio
import uuid

from dashboard.bridge import tiles
from dashboard.bridge.fanout import Fanout

BUILDING = uuid.uuid4()
DEVICE = uuid.uuid4()


def make_fanout(window: float = 0.05) -> tuple[Fanout, list[tuple[str, str]], dict[str, int]]:
    sent: list[tuple[str, str]] = []
    value = {"temperature": 0}

    def render(tile: tiles.Tile) -> str:
        return f"<{tile[0]}:{value['temperature']}>"

    async def send(building_id: uuid.UUID, html: str, audience: str, stream: str, seq: int) -> None:
        assert building_id == BUILDING
        sent.append((audience, html))

    return Fanout(BUILDING, render, send, window), sent, value


async def test_a_burst_within_one_window_is_sent_once_with_the_final_value():
    fanout, sent, value = make_fanout()
    task = asyncio.create_task(fanout.run())
    for n in range(1, 101):
        value["temperature"] = n
        fanout.changed(tiles.meta(DEVICE, "temperature"))
    await asyncio.sleep(0.2)
    task.cancel()
    assert sent == [("all", "<meta:100>")]


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


async def test_a_change_during_a_slow_flush_waits_one_window_from_when_it_came():
    window, flush_takes = 0.2, 0.15
    sent_at: list[float] = []
    fanout: Fanout

    async def slow_send(building_id, html, audience, stream, seq) -> None:
        sent_at.append(loop.time())
        if len(sent_at) == 1:
            fanout.changed(tiles.meta(DEVICE, "temperature"))  # arrives during the flush
            changed_at.append(loop.time())
            await asyncio.sleep(flush_takes)  # e.g. a thousand tiles to render and send

    loop = asyncio.get_running_loop()
    changed_at: list[float] = []
    fanout = Fanout(BUILDING, lambda tile: "<meta>", slow_send, window)
    task = asyncio.create_task(fanout.run())
    fanout.changed(tiles.meta(DEVICE, "temperature"))
    await asyncio.sleep(window * 3)
    task.cancel()
    assert len(sent_at) == 2
    # Not a window after the slow flush ended: a window after the change itself.
    assert sent_at[1] - changed_at[0] < window + 0.05
