"""WebSocket consumers: forward a building's pre-rendered fragments to one page.

The bridge renders each fragment once for all pages; a consumer only checks access
when it connects, has the process's hub (dashboard/live/hub.py) follow its groups, and
passes HTML through. A page that misses a message (its queue or the hub's channel was
full, or the bridge restarted) asks for a fresh snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from channels.layers import get_channel_layer

from dashboard.access import roles_on, visible_buildings
from dashboard.live import gc_tuning, layer, metrics, tiles, wire
from dashboard.live.hub import Hub
from dashboard.models import Building, Role

logger = logging.getLogger(__name__)

# Refusals, in the 4000 range: autobahn (under daphne) refuses 1008 with a traceback and
# closes with 1011, which pages retry forever. live.js retries neither of these.
NOT_LOGGED_IN = 4001  # no session, or it ended: the page goes to the login page
NO_ACCESS = 4003  # logged in, but no role on the building (any more)
# Close code for a page that fell behind; it reconnects and resyncs. Not 1013: autobahn (under
# daphne) refuses every code but 1000 and 3000-4999, and raising there left the consumer's
# groups and rejoin task behind (docs/reliability.md).
TRY_AGAIN_LATER = 4013
# Frames a page may have unacknowledged before it is cut off: a page that stops reading
# must not grow the server's send buffers without bound.
MAX_UNACKED = 200
# And bytes: a snapshot of a large building is one big frame, so a count alone lets a page
# that stopped reading hold 200 of them.
MAX_UNACKED_BYTES = 8 * 1024 * 1024
ACK = wire.ACK  # what live.js sends back for each frame it has applied
# Group messages the hub may have queued for a page before it drops the next ones (the page
# then sees a gap and resyncs): what the channel layer's default capacity was per page.
PAGE_BACKLOG = 100


class LiveConsumer(AsyncWebsocketConsumer):
    """Follows groups chosen at connect time and forwards what the bridge sends to them.

    The process's hub is the groups' member; it hands this page each of their messages.
    The page's own channel gets what is for it alone: snapshots.
    """

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """As channels' AsyncConsumer.__call__, with a third source: the hub's messages.

        One inbox and one dispatch loop for the socket, the page's channel and the hub keep
        a snapshot, the frames around it and the page's acks in order. Two long-lived tasks
        feed the inbox from the socket and the channel; the hub puts frames straight in, or,
        when the page has nothing waiting, forwards them at once (``deliver``). Channels'
        await_many_dispatch made a task and an asyncio.wait per message per page instead.
        """
        self.inbox: asyncio.Queue[tuple[dict[str, Any], bool]] = asyncio.Queue()
        self.from_hub = 0  # hub messages in the inbox
        self.backlog = PAGE_BACKLOG  # ...at most
        self.busy = True  # the dispatch loop is handling a message (or not started)
        self.scope = scope
        self.channel_layer = get_channel_layer(self.channel_layer_alias)
        self.channel_name = await self.channel_layer.new_channel()
        self.base_send = send
        # Under `serve`, prepared frames go straight to the connection, and acks come straight
        # from it (dashboard/live/wire.py).
        server = wire.extension(scope)
        self.write_wire = None if server is None else server["write"]
        self.hub: Hub | None = None
        self.counted = False  # in the pages-connected gauge
        pumps = [
            asyncio.create_task(self._pump(receive), name="page socket"),
            asyncio.create_task(
                self._pump(functools.partial(self.channel_layer.receive, self.channel_name)),
                name="page channel",
            ),
        ]
        if server is not None:
            server["take_acks"](self._ack_at_once)
        try:
            with contextlib.suppress(StopConsumer):
                while True:
                    self.busy = False
                    message, from_hub = await self.inbox.get()
                    self.busy = True
                    if from_hub:
                        self.from_hub -= 1
                    await self.dispatch(message)
                    # Not kept while waiting: an idle page held its last snapshot otherwise.
                    del message
        finally:
            if server is not None:
                server["take_acks"](None)
            for pump in pumps:
                pump.cancel()
            for pump in pumps:
                with contextlib.suppress(asyncio.CancelledError):
                    await pump
            # A consumer that ended on an error never ran disconnect(): it must not stay on
            # the hub (which would keep its groups and queue frames for it), nor be counted.
            await self._leave()

    async def _pump(self, source: Callable[[], Awaitable[dict[str, Any]]]) -> None:
        """Feed the inbox from the socket or the page's channel until the consumer ends."""
        try:
            while True:
                message = await source()
                if not self._is_ack(message) or not self._ack_at_once():
                    self.inbox.put_nowait((message, False))
                # An idle page's pump must not hold the last message (a snapshot: tens of KB
                # a page) until the next one comes.
                del message
        except Exception as exc:  # ends the consumer, as await_many_dispatch did
            self._fail(exc)

    def _fail(self, error: Exception) -> None:
        """End this consumer on ``error``, from its dispatch loop (which then leaves cleanly)."""
        self.inbox.put_nowait(({"type": "consumer.failed", "error": error}, False))

    async def consumer_failed(self, message: dict[str, Any]) -> None:
        raise message["error"]

    def deliver(self, message: dict[str, Any]) -> bool:
        """A group message from the hub, shared with the process's other pages: read only.

        True when its frame went to the connection at once (the hub counts those).
        """
        if not self.busy and not self.inbox.qsize():
            try:
                if self._fragments_now(message):
                    return True
            except Exception as exc:  # this page's error, not the hub's: the others go on
                self._fail(exc)
                return False
        # When this page is too busy, the message is dropped: the next one shows it the gap
        # and it resyncs.
        if self.from_hub < self.backlog:
            self.from_hub += 1
            self.inbox.put_nowait((message, True))
        return False

    async def connect(self) -> None:
        self.subscriptions: dict[uuid.UUID, list[str]] = {}  # building -> audiences
        self.positions: dict[tuple[str, str], tuple[str, int]] = {}
        self.unacked = 0
        self.unacked_sizes: deque[int] = deque()  # bytes of each unacknowledged frame
        self.unacked_bytes = 0
        self.cut_off = False
        user = self.scope.get("user")
        subscriptions = None
        logged_in = user is not None and user.is_authenticated
        if logged_in:
            subscriptions = await database_sync_to_async(self.choose)(user)
        await self.accept()
        if subscriptions is None:
            # One line per refused socket, and no traceback: a page left open after its
            # session ended is ordinary.
            logger.info(
                "websocket %s refused: %s",
                self.scope.get("path"),
                f"no access for {user.get_username()}" if logged_in else "not logged in",
            )
            await self.close(code=NO_ACCESS if logged_in else NOT_LOGGED_IN)
            return
        self.subscriptions = subscriptions
        self.counted = True
        metrics.PAGES_CONNECTED.inc()
        # The hub rejoins when Redis lost the groups, or they are about to expire (a wall
        # screen stays a week): one member and one check per process, not per page.
        self.hub = await Hub.subscribe(self, self._groups())
        for building_id, audiences in subscriptions.items():
            await layer.request_snapshot(building_id, self.channel_name, audiences)

    def choose(self, user: Any) -> dict[uuid.UUID, list[str]] | None:
        """The buildings and audiences this page follows; None when it is refused."""
        raise NotImplementedError

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Handle a message without Channels' per-message hop to the database thread.

        Only ``connect`` reads the database, through database_sync_to_async, which closes
        stale connections itself; every frame and every ack stays on the event loop.
        """
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"no handler for message type {message['type']}")
        await handler(message)

    async def disconnect(self, code: int) -> None:
        await self._leave()

    async def _leave(self) -> None:
        """Off the gauge and the hub, once, however the consumer ends."""
        if self.counted:
            self.counted = False
            metrics.PAGES_CONNECTED.dec()
            gc_tuning.page_closed()
        hub, self.hub = self.hub, None
        if hub is not None:
            await hub.unsubscribe(self, self._groups())

    def _groups(self) -> list[str]:
        return [
            layer.group_name(building_id, audience)
            for building_id, audiences in self.subscriptions.items()
            for audience in audiences
        ]

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Pages only acknowledge frames; anything else is ignored."""
        if text_data == ACK:
            self._acknowledged()

    @staticmethod
    def _is_ack(message: dict[str, Any]) -> bool:
        return message["type"] == "websocket.receive" and message.get("text") == ACK

    def _ack_at_once(self) -> bool:
        """Take an ack without the inbox when nothing waits there; False: it must wait."""
        if self.busy or self.inbox.qsize():
            return False
        self._acknowledged()
        return True

    def _acknowledged(self) -> None:
        self.unacked = max(0, self.unacked - 1)
        if self.unacked_sizes:  # live.js acknowledges frames in the order it got them
            self.unacked_bytes -= self.unacked_sizes.popleft()

    def _behind(self, size: int) -> bool:
        """Too far behind to catch up by frames: it must be cut off rather than sent this."""
        behind = self.unacked_bytes + size > MAX_UNACKED_BYTES and self.unacked > 0
        return self.unacked >= MAX_UNACKED or behind

    def _sent(self, size: int) -> None:
        self.unacked += 1
        self.unacked_sizes.append(size)
        self.unacked_bytes += size

    async def forward(self, frame: str | bytes, prepared: bytes | None = None) -> None:
        """Send a frame, or cut the page off when it is too far behind to catch up by frames.

        ``prepared``: the frame's wire bytes, when the hub made them for every page.
        """
        if self.cut_off:
            return
        if self._behind(len(frame)):
            self.cut_off = True
            metrics.PAGES_CUT_OFF.inc()
            logger.warning(
                "page %s is %d frames (%d bytes) behind; cut off",
                self.channel_name,
                self.unacked,
                self.unacked_bytes,
            )
            await self.close(code=TRY_AGAIN_LATER)
            return
        self._sent(len(frame))
        metrics.count_page_frames(1, len(frame))
        if self.write_wire is not None:
            self.write_wire(wire.server_frame(frame) if prepared is None else prepared)
        elif isinstance(frame, bytes):
            await self.send(bytes_data=frame)
        else:
            await self.send(text_data=frame)

    def _fragments_now(self, event: dict[str, Any]) -> bool:
        """``live_fragments`` at once, when it has nothing to wait for; False: it has.

        The next frame of a page that keeps up and has nothing waiting is written straight
        to its connection; a first frame, a gap (resync) or a cut-off go through the inbox.
        """
        prepared = event.get("wire")
        if (
            self.write_wire is None
            or prepared is None
            or self.cut_off
            or event["type"] != "live.fragments"
        ):
            return False
        key = (event["building"], event["audience"])
        known = self.positions.get(key)
        if known is None or known[0] != event["stream"] or event["seq"] != known[1] + 1:
            return False
        frame = event["frame"]
        if self._behind(len(frame)):
            return False
        self.positions[key] = (known[0], event["seq"])
        self._sent(len(frame))
        self.write_wire(prepared)
        return True

    async def live_fragments(self, event: dict[str, Any]) -> None:
        key = (event["building"], event["audience"])
        known = self.positions.get(key)
        position = (event["stream"], event["seq"])
        if known is not None and known[0] == position[0] and position[1] <= known[1]:
            return  # already part of the snapshot this page has
        self.positions[key] = position
        await self.forward(event["frame"], event.get("wire"))
        if known is not None and (known[0] != position[0] or position[1] != known[1] + 1):
            # Missed a message, or the bridge restarted: catch up on everything.
            logger.info("page %s resyncs building %s", self.channel_name, event["building"])
            await layer.request_snapshot(event["building"], self.channel_name, [event["audience"]])

    async def live_snapshot(self, event: dict[str, Any]) -> None:
        for audience, (stream, seq) in event["positions"].items():
            self.positions[(event["building"], audience)] = (stream, seq)
        await self.forward(event["frame"])


class BuildingConsumer(LiveConsumer):
    """One building's dashboard page: everything, plus support details for support staff."""

    def choose(self, user: Any) -> dict[uuid.UUID, list[str]] | None:
        building_id = self.scope["url_route"]["kwargs"]["building_id"]
        roles = roles_on(user, building_id)
        # A superuser holds every role on any id: an unknown building is refused all the same.
        if not roles or not Building.objects.filter(id=building_id).exists():
            return None
        audiences = [tiles.EVERYONE]
        if Role.SUPPORT in roles:
            audiences.append(tiles.SUPPORT)
        return {building_id: audiences}


class OverviewConsumer(LiveConsumer):
    """The buildings list: one summary line per building the user may see."""

    def choose(self, user: Any) -> dict[uuid.UUID, list[str]] | None:
        # Someone with no building yet gets an empty overview (possibly {}), not a refusal.
        ids = visible_buildings(user).values_list("id", flat=True)
        return {building_id: [tiles.SUMMARY] for building_id in ids}
