"""A page's live fragments, rendered by the engine that renders every push of them.

``{% tile "headcount" space.id %}``: a tile from the page's live state.
``{% fragment "dashboard/fragments/summary.html" summary %}``: a fragment from a context the
view made (the same function makes it for a push: ``fragments.summary_card`` and the like).
"""

from __future__ import annotations

from typing import Any

from django import template
from django.utils.safestring import SafeString, mark_safe

from dashboard.live import fragment_engine, fragments, tiles

register = template.Library()


@register.simple_tag(takes_context=True)
def tile(context: template.Context, kind: str, *key: Any) -> SafeString:
    """The tile's fragment for the page's ``state`` and ``inventory``; ``key`` is its entity."""
    # render_tile goes through the (autoescaping) fragment template, as every push does.
    html = fragments.render_tile(tiles.Tile(kind, *key), context["state"], context["inventory"])
    return mark_safe(html)


@register.simple_tag
def fragment(name: str, values: dict[str, Any] | None = None, **more: Any) -> SafeString:
    """The fragment ``name`` for ``values`` and ``more``; escaped by its own (Jinja2) engine."""
    return mark_safe(fragment_engine.render(name, {**(values or {}), **more}))
