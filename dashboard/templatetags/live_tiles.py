"""``{% tile "headcount" space.id %}``: a live fragment in a page, rendered as pushes are."""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.safestring import SafeString, mark_safe

from dashboard.live import fragments, tiles

register = template.Library()


@register.simple_tag(takes_context=True)
def tile(context: template.Context, kind: str, *key: Any) -> SafeString:
    """The tile's fragment for the page's ``state`` and ``inventory``; ``key`` is its entity."""
    # render_tile goes through the (autoescaping) fragment template, as every push does.
    html = fragments.render_tile(tiles.Tile(kind, *key), context["state"], context["inventory"])
    return mark_safe(html)
