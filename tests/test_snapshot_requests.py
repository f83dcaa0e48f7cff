"""Every page of a web process resyncs at once (a bridge restarted): their snapshot requests
cross the channel layer together, and each page still gets its own snapshot."""

from __future__ import annotations

import asyncio
import uuid

from channels.layers import get_channel_layer

from dashboard.live import layer, tiles

PAGES = 300  # three times redis-py's default pool of 100 connections


async def bridge_of(channel_layer, building: uuid.UUID) -> str:
    channel = await channel_layer.new_channel("bridge.")
    await channel_layer.group_add(layer.bridge_group(building), channel)
    return channel


async def test_pages_resyncing_at_once_on_redis_ask_together_and_each_gets_its_snapshot(
    redis_layer,
):
    channel_layer = get_channel_layer()
    building = uuid.uuid4()
    bridge = await bridge_of(channel_layer, building)
    pages = [await layer.new_channel() for _ in range(PAGES)]

    # Each page on its own, at the same moment: a group_send each exhausted the pool.
    await asyncio.gather(
        *(layer.request_snapshot(building, page, [tiles.EVERYONE]) for page in pages)
    )

    asked: list[str] = []
    messages = 0
    while len(asked) < PAGES:
        request = await asyncio.wait_for(channel_layer.receive(bridge), 5)
        assert request["type"] == "snapshot.request"
        assert request["building"] == str(building) and request["audiences"] == [tiles.EVERYONE]
        asked += request["reply_to"]
        messages += 1
    assert sorted(asked) == sorted(pages) and messages == 1

    async def page_reads(page: str) -> dict:
        return await asyncio.wait_for(channel_layer.receive(page), 10)

    # The pages read as the bridge answers each on its own channel (they share the process's
    # queue in Redis, of 100 messages).
    reading = [asyncio.create_task(page_reads(page)) for page in pages]
    for page in pages:
        await layer.send_snapshot(page, building, "<p>snapshot</p>", {tiles.EVERYONE: ("s", 1)})
    for answer in await asyncio.gather(*reading):
        assert answer["type"] == "live.snapshot" and answer["frame"] == "<p>snapshot</p>"


async def test_requests_of_other_buildings_or_audiences_are_not_mixed():
    channel_layer = get_channel_layer()
    first, second = uuid.uuid4(), uuid.uuid4()
    bridges = {b: await bridge_of(channel_layer, b) for b in (first, second)}
    await asyncio.gather(
        layer.request_snapshot(first, "viewer-page", [tiles.EVERYONE]),
        layer.request_snapshot(first, "support-page", [tiles.SUPPORT, tiles.EVERYONE]),
        layer.request_snapshot(second, "elsewhere", [tiles.EVERYONE]),
    )
    heard = [await channel_layer.receive(bridges[first]) for _ in range(2)]
    assert sorted((m["reply_to"], m["audiences"]) for m in heard) == [
        (["support-page"], [tiles.EVERYONE, tiles.SUPPORT]),
        (["viewer-page"], [tiles.EVERYONE]),
    ]
    assert (await channel_layer.receive(bridges[second]))["reply_to"] == ["elsewhere"]


async def test_a_channel_layer_that_refuses_fails_every_page_that_asked(monkeypatch):
    async def refuse(group: str, message: dict) -> None:
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(get_channel_layer(), "group_send", refuse)
    outcomes = await asyncio.gather(
        *(layer.request_snapshot(uuid.uuid4(), f"page-{n}", [tiles.EVERYONE]) for n in range(3)),
        return_exceptions=True,
    )
    assert [str(outcome) for outcome in outcomes] == ["Redis is down"] * 3
