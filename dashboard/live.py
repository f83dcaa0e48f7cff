"""The building's live groups on the channel layer, and the one way to broadcast to them."""

from __future__ import annotations

import uuid

from channels.layers import get_channel_layer

from dashboard.bridge.tiles import EVERYONE


def group_name(building_id: uuid.UUID | str, audience: str = EVERYONE) -> str:
    """Channel-layer group of a building's pages; support-only content has its own group."""
    suffix = "" if audience == EVERYONE else f".{audience}"
    return f"building.{uuid.UUID(str(building_id)).hex}{suffix}"


async def broadcast(building_id: uuid.UUID, html: str, audience: str = EVERYONE) -> None:
    """Send pre-rendered fragments to every page of the building (of that audience)."""
    layer = get_channel_layer()
    await layer.group_send(
        group_name(building_id, audience), {"type": "live.fragments", "html": html}
    )
