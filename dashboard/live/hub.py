"""One channel-layer member per web process for each building audience its pages follow.

Each page used to join the building's groups itself, so every frame crossed the channel
layer once per page (with Redis, one push of the whole frame per page). The hub joins a
group when the first local page of that building and audience connects and leaves it when
the last one goes; it receives each ``live.fragments`` once, on a channel of its own, and
hands the same message object to each local page. What stays per page: its own channel for
snapshots and replies, its sequence check and resync, and its cut-off (dashboard/consumers.py).

One hub per event loop (daphne runs one per process), alive while it has pages.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from channels.layers import get_channel_layer

from dashboard.live import metrics
from dashboard.live.layer import Membership, group_name
from dashboard.live.wire import server_frame

logger = logging.getLogger(__name__)

# A failed read of the hub's channel (Redis down) is retried after this long.
RETRY_RECEIVE_AFTER = 1.0
# How long a stopping hub waits for its receiving task to end.
STOP_WAIT = 5.0


class Page(Protocol):
    """A local page, as the hub sees it."""

    def deliver(self, message: dict[str, Any]) -> bool:
        """Take a group message; must not block (the hub serves every page in turn).

        True when the page wrote its frame at once; a page that writes it later counts it.
        """


class Hub:
    """Joins groups for the process's pages and hands each group message to them."""

    _running: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Hub] = (
        weakref.WeakKeyDictionary()
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.layer = get_channel_layer()
        self.channel = ""  # made by the first join (new_channel is a coroutine)
        self.pages: dict[str, set[Page]] = {}  # group -> local pages that follow it
        self.joined: set[str] = set()  # groups the hub's channel is a member of
        self.lock = asyncio.Lock()  # one change of membership at a time
        self.task: asyncio.Task[None] | None = None
        self._unwatch: Callable[[], None] | None = None

    @classmethod
    async def subscribe(cls, page: Page, groups: Iterable[str]) -> Hub:
        """Hand ``page`` the messages of ``groups``; returns once the hub is a member of each."""
        loop = asyncio.get_running_loop()
        hub = cls._running.get(loop)
        if hub is None:
            hub = cls._running[loop] = cls(loop)
        groups = list(groups)
        for group in groups:  # at once, so a hub that is winding down sees the page
            hub.pages.setdefault(group, set()).add(page)
        try:
            await hub._settle(groups)
        except BaseException:
            hub._forget(page, groups)  # a page that never connected is not kept
            raise
        return hub

    async def unsubscribe(self, page: Page, groups: Iterable[str]) -> None:
        """Stop handing ``page`` anything; the hub leaves each group its last page left."""
        groups = list(groups)
        self._forget(page, groups)
        await self._settle(groups)

    def _forget(self, page: Page, groups: list[str]) -> None:
        for group in groups:
            members = self.pages.get(group)
            if members is not None:
                members.discard(page)
                if not members:
                    del self.pages[group]

    async def _settle(self, groups: list[str]) -> None:
        """Make the hub a member of exactly the groups that have local pages."""
        async with self.lock:
            if not self.channel:
                # A process-local channel under the layer's default prefix (see
                # layer.new_channel), named so that settings can give it a capacity of its own.
                local, _, name = (await self.layer.new_channel()).partition("!")
                self.channel = f"{local}!hub.{name}"
            for group in groups:
                if group in self.pages and group not in self.joined:
                    await self.layer.group_add(group, self.channel)
                    self.joined.add(group)
                elif group not in self.pages and group in self.joined:
                    self.joined.discard(group)
                    await self.layer.group_discard(group, self.channel)
            if self.joined and self.task is None:
                self.task = self.loop.create_task(self._receive(), name="hub")
                self._unwatch = Membership.watch(self._rejoin)
            elif not self.pages and not self.joined:
                await self._stop()

    async def _stop(self) -> None:
        if self._running.get(self.loop) is self:
            del self._running[self.loop]  # the next page makes a new hub
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        if self.task is not None:
            task, self.task = self.task, None
            task.cancel()
            # Waited for, not awaited: a receive the channel layer cannot wind down (Redis
            # gone) must not hold the hub's lock, and every page's connect, forever; and this
            # task's own cancellation still goes on up.
            _, pending = await asyncio.wait({task}, timeout=STOP_WAIT)
            if pending:
                logger.warning("the hub's receiving task did not end within %s s", STOP_WAIT)

    async def _rejoin(self) -> None:
        """The channel layer lost its groups (Redis flushed): join them again, once each."""
        async with self.lock:
            for group in self.joined:
                await self.layer.group_add(group, self.channel)

    async def _receive(self) -> None:
        while True:
            try:
                message = await self.layer.receive(self.channel)
            except Exception as exc:  # Redis down: pages resync once frames come again
                logger.warning("could not read the pages' groups: %s", exc)
                await asyncio.sleep(RETRY_RECEIVE_AFTER)
                continue
            self.hand_out(message)

    def hand_out(self, message: dict[str, Any]) -> None:
        """The same message object to every local page of its group, never a copy each."""
        try:
            group = group_name(message["building"], message["audience"])
        except (KeyError, ValueError):
            logger.warning("group message of type %r without its group", message.get("type"))
            return
        pages = tuple(self.pages.get(group, ()))
        if pages and "frame" in message:
            # Its wire bytes, made once here for every page (dashboard/live/wire.py).
            message["wire"] = server_frame(message["frame"])
        written = 0
        for page in pages:
            if page.deliver(message):
                written += 1
        if written:
            # Counted once per frame, not per page: two locked counters per page-frame were
            # about 3 % of the server's samples at 1,000 pages.
            metrics.count_page_frames(written, len(message["frame"]))


def running() -> Hub | None:
    """This event loop's hub, if it has pages (for tests and the health of the process)."""
    return Hub._running.get(asyncio.get_running_loop())
