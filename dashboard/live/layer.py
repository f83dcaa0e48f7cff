"""The building's live groups on the channel layer, and the messages that cross it.

Bridge → pages: ``live.fragments`` to a building's group (one per audience), each with a
sequence number so a page that missed one (its channel was full) knows to resync, and
``live.snapshot`` straight to one page's channel with every tile of the building.
Each carries a ``frame``: the HTML, or above ``COMPRESS_ABOVE`` bytes the HTML deflated
once here for all pages (live.js inflates binary frames before htmx swaps them).
Pages → bridge: ``snapshot.request`` to the building's bridge group, on every (re)connect
and resync, answered by whichever bridge process holds the building; the requests a process's
pages make at the same moment go as one message listing their channels (``reply_to``); ``action.publish`` from the action
form's view with its ``attempts`` (one, or up to a few hundred of an action's spaces),
answered with one ``action.result`` whose ``results`` say, for each attempt, whether the
broker acknowledged it (or why not). An ``action.publish`` carries a ``deadline`` (wall clock,
``time.time()``): the view gives up on it then, so a bridge that gets to an attempt later
drops it unpublished and says so.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
import zlib
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from channels.layers import get_channel_layer

from dashboard.live.tiles import EVERYONE

logger = logging.getLogger(__name__)

# Small frames gain nothing from compression; a window of a busy building's values shrinks
# to about a tenth (docs/benchmarks.md, "Bandwidth").
COMPRESS_ABOVE = 1024

# Channel layers forget group members after a day (group_expiry); rejoin well before.
REJOIN_EVERY = 3600.0
# How often each process checks that Redis still holds its groups (see Membership).
MEMBERSHIP_CHECK_EVERY = 2.0

Rejoin = Callable[[], Awaitable[None]]


def pack(html: str) -> str | bytes:
    """The frame pages receive: the HTML itself, or raw deflate of it when that pays."""
    data = html.encode()
    if len(data) <= COMPRESS_ABOVE:
        return html
    deflate = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return deflate.compress(data) + deflate.flush()


def unpack(frame: str | bytes) -> str:
    """The HTML in a frame made by ``pack``."""
    if isinstance(frame, str):
        return frame
    return zlib.decompress(frame, -zlib.MAX_WBITS).decode()


# A cancelled channels_redis receive was seen to lose the cancellation and start its next
# blocking read (the page hub's at shutdown, about one Ctrl-C in five on Redis; the bridge's
# inbox): tasks that read the layer are cancelled again until they end.
CANCEL_ROUNDS = 5
CANCEL_WAIT = 2.0  # seconds each round waits for them


async def cancel_until_done(tasks: Iterable[asyncio.Task[Any]]) -> set[asyncio.Task[Any]]:
    """Cancel ``tasks`` again every ``CANCEL_WAIT`` seconds until they end, ``CANCEL_ROUNDS``
    times at most; returns those still not done."""
    pending = {task for task in tasks if not task.done()}
    for _ in range(CANCEL_ROUNDS):
        if not pending:
            break
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=CANCEL_WAIT)
    return pending


def group_name(building_id: uuid.UUID | str, audience: str = EVERYONE) -> str:
    """Channel-layer group of a building's pages; support-only content has its own group."""
    suffix = "" if audience == EVERYONE else f".{audience}"
    return f"building.{uuid.UUID(str(building_id)).hex}{suffix}"


def bridge_group(building_id: uuid.UUID | str) -> str:
    """Channel-layer group of the bridge process that holds the building's session."""
    return f"bridge.{uuid.UUID(str(building_id)).hex}"


async def broadcast(
    building_id: uuid.UUID, html: str, audience: str = EVERYONE, stream: str = "", seq: int = 0
) -> None:
    """Send pre-rendered fragments to every page of the building (of that audience).

    ``stream`` names the sending fan-out and ``seq`` counts its messages per audience.
    """
    layer = get_channel_layer()
    await layer.group_send(
        group_name(building_id, audience),
        {
            "type": "live.fragments",
            "building": str(building_id),
            "audience": audience,
            "frame": pack(html),
            "stream": stream,
            "seq": seq,
        },
    )


async def send_snapshot(
    channel: str, building_id: uuid.UUID, html: str, positions: dict[str, tuple[str, int]]
) -> None:
    """Every tile of the building, to one page; ``positions`` is (stream, seq) per audience."""
    layer = get_channel_layer()
    await layer.send(
        channel,
        {
            "type": "live.snapshot",
            "building": str(building_id),
            "frame": pack(html),
            "positions": {audience: list(pos) for audience, pos in positions.items()},
        },
    )


# Channels named in one snapshot request at most (each name is about 60 bytes).
SNAPSHOT_REPLIES_PER_REQUEST = 500


class _SnapshotRequests:
    """The snapshot requests of one event loop's pages, sent together.

    When every page of a process resyncs at once (a bridge restarted), a ``group_send``
    each took one Redis connection each at the same moment: 500 pages exhausted redis-py's
    pool ("Too many connections") and were closed. Queued here, the requests of the same
    building and audiences go as one message, one message at a time.
    """

    _running: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _SnapshotRequests] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self) -> None:
        self.waiting: dict[tuple[str, tuple[str, ...]], list[tuple[str, asyncio.Future[None]]]]
        self.waiting = {}
        self.task: asyncio.Task[None] | None = None

    @classmethod
    def of_this_loop(cls) -> _SnapshotRequests:
        loop = asyncio.get_running_loop()
        requests = cls._running.get(loop)
        if requests is None:
            requests = cls._running[loop] = cls()
        return requests

    async def ask(self, building_id: str, reply_to: str, audiences: tuple[str, ...]) -> None:
        sent = asyncio.get_running_loop().create_future()
        self.waiting.setdefault((building_id, audiences), []).append((reply_to, sent))
        if self.task is None:
            self.task = asyncio.create_task(self._send_all(), name="snapshot requests")
        await sent  # raises what sending raised: the page sees the channel layer fail

    async def _send_all(self) -> None:
        batch: list[tuple[str, asyncio.Future[None]]] = []
        try:
            await asyncio.sleep(0)  # the rest of a burst queues up behind the first
            while self.waiting:
                (building_id, audiences), waiting = next(iter(self.waiting.items()))
                batch = waiting[:SNAPSHOT_REPLIES_PER_REQUEST]
                del waiting[: len(batch)]
                if not waiting:
                    del self.waiting[(building_id, audiences)]
                try:
                    await get_channel_layer().group_send(
                        bridge_group(building_id),
                        {
                            "type": "snapshot.request",
                            "building": building_id,
                            "reply_to": [reply_to for reply_to, _ in batch],
                            "audiences": list(audiences),
                        },
                    )
                except Exception as exc:
                    _settle(batch, exc)
                else:
                    _settle(batch, None)
        except BaseException as exc:  # cancelled with the loop: nobody is left waiting
            _settle(batch, exc)
            for left in self.waiting.values():
                _settle(left, exc)
            self.waiting.clear()
            raise
        finally:
            self.task = None


def _settle(batch: list[tuple[str, asyncio.Future[None]]], error: BaseException | None) -> None:
    for _, sent in batch:
        if not sent.done():  # a page that left meanwhile stopped waiting
            if error is None:
                sent.set_result(None)
            else:
                sent.set_exception(error)


async def request_snapshot(
    building_id: uuid.UUID | str, reply_to: str, audiences: Iterable[str]
) -> None:
    """Ask the building's bridge for every tile the page's audiences may see; returns once
    the request is on the channel layer (with the other pages' of the same moment)."""
    await _SnapshotRequests.of_this_loop().ask(str(building_id), reply_to, tuple(sorted(audiences)))


async def new_channel() -> str:
    """A channel of this process's own, for replies: always under the layer's default prefix.

    channels_redis's core layer reads every process-local channel of one prefix through one
    blocking pop, and lets only one such read run at a time: with a second prefix in the same
    process (the bridge's inbox next to the pages in ``serve``), the read waiting on one
    prefix starves the other until a message for it happens to arrive.
    """
    return await get_channel_layer().new_channel()


class NoBridge(Exception):
    """No bridge process answered for the building in time."""


async def request_publish(
    building_id: uuid.UUID | str, request: dict[str, Any], timeout: float
) -> dict[str, Any]:
    """Have the bridge that holds the building publish a request's attempts; its
    ``action.result``.

    The request's ``deadline`` (``time.time()``) is when the publishes and their PUBACKs must
    be done by: the bridge publishes nothing once it has passed, as the audit will say
    "failed". A full bridge channel drops the request without a word: it ends in ``NoBridge``
    as a missing bridge does.
    """
    layer = get_channel_layer()
    reply_to = await new_channel()
    await layer.group_send(
        bridge_group(building_id),
        {**request, "type": "action.publish", "building": str(building_id), "reply_to": reply_to},
    )
    try:
        return await asyncio.wait_for(layer.receive(reply_to), timeout)
    except TimeoutError:
        raise NoBridge(f"no bridge answered for this building within {timeout:g} s") from None


async def send_result(channel: str, result: dict[str, Any]) -> None:
    await get_channel_layer().send(channel, {**result, "type": "action.result"})


async def alarms_changed(building_id: uuid.UUID | str, changes: list[dict[str, Any]]) -> None:
    """Tell the building's bridge that people acknowledged or cleared alarms.

    Each change is ``{"device": "<uuid>" or None, "type": "<alarm type>", "state":
    "acknowledged" or "cleared"}``; the bridge updates its live alarms and pushes them.
    """
    await get_channel_layer().group_send(
        bridge_group(building_id),
        {"type": "alarm.update", "building": str(building_id), "changes": changes},
    )


class Membership:
    """Notices that the channel layer lost its groups, and has their members rejoin.

    Redis flushed, or restarted without persistence, forgets every group while pages keep
    their sockets. One per process and event loop, whatever its number of pages: every
    ``MEMBERSHIP_CHECK_EVERY`` seconds one ``SET NX`` per Redis host of a key of this
    process's own, made with the key; if it was missing (or expired after ``REJOIN_EVERY``,
    which is also the periodic rejoin group expiry needs) every registered member rejoins.
    Layers without Redis groups (in memory; pub/sub resubscribes itself) are never checked.
    """

    _running: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Membership] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self) -> None:
        self.layer = get_channel_layer()
        self.key = f"{getattr(self.layer, 'prefix', 'asgi')}:members-of:{uuid.uuid4().hex}"
        self.rejoins: set[Rejoin] = set()
        self.task: asyncio.Task[None] | None = None

    @classmethod
    def watch(cls, rejoin: Rejoin) -> Callable[[], None]:
        """Have ``rejoin`` called whenever groups were lost; returns the call that stops it."""
        loop = asyncio.get_running_loop()
        membership = cls._running.get(loop)
        if membership is None:
            membership = cls._running[loop] = cls()
        membership.rejoins.add(rejoin)
        if membership.task is None and hasattr(membership.layer, "ring_size"):
            membership.task = loop.create_task(membership.run(), name="membership")
        return lambda: membership.rejoins.discard(rejoin)

    async def run(self) -> None:
        await self._check()  # the first check only makes the key
        while self.rejoins:
            await asyncio.sleep(MEMBERSHIP_CHECK_EVERY)
            try:
                lost = await self._check()
            except Exception as exc:  # Redis down: the next check will tell
                logger.warning("could not check the channel layer's groups: %s", exc)
                continue
            if lost:
                logger.warning("the channel layer lost its groups; %d rejoin", len(self.rejoins))
                for rejoin in list(self.rejoins):
                    try:
                        await rejoin()
                    except Exception:
                        logger.exception("could not rejoin the channel layer's groups")
        self.task = None

    async def _check(self) -> bool:
        lost = False
        for index in range(self.layer.ring_size):
            connection = self.layer.connection(index)
            lost |= bool(await connection.set(self.key, 1, ex=int(REJOIN_EVERY), nx=True))
        return lost
