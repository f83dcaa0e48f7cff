"""A page's live fragments, rendered by the engine that renders every push of them.

``{% tile "headcount" space.id %}``: a tile from the page's live state.
``{% fragment "dashboard/fragments/summary.html" summary %}``: a fragment from a context the
view made (the same function makes it for a push: ``fragments.summary_card`` and the like).
"""

from __future__ import annotations

from typing import Any

from django import template
from django.template.loader import render_to_string
from django.utils.safestring import SafeString, mark_safe

from dashboard import actions
from dashboard.live import fragment_engine, fragments, resets, tiles

register = template.Library()


@register.simple_tag(takes_context=True)
def tile(context: template.Context, kind: str, *key: Any) -> SafeString:
    """The tile's fragment for the page's ``state`` and ``inventory``; ``key`` is its entity."""
    # render_tile goes through the (autoescaping) fragment template, as every push does.
    html = fragments.render_tile(tiles.Tile(kind, *key), context["state"], context["inventory"])
    return mark_safe(html)


@register.simple_tag(takes_context=True)
def reset_control(context: template.Context, scope: str, entity_id: Any) -> str:
    """A place's "Reset count" form, for operators only; beside its card, not in it, as the
    card is one fragment rendered for everyone."""
    if not context.get("is_operator"):
        return ""
    place = resets.place_of(context["inventory"], scope, entity_id)
    if place is None:
        return ""
    form = actions.reset_form(place)
    return render_to_string(
        "dashboard/reset_form.html",
        {"form": form, "place": place, "reset_url": context["reset_url"]},
        request=context.get("request"),
    )


@register.simple_tag
def fragment(name: str, values: dict[str, Any] | None = None, **more: Any) -> SafeString:
    """The fragment ``name`` for ``values`` and ``more``; escaped by its own (Jinja2) engine."""
    return mark_safe(fragment_engine.render(name, {**(values or {}), **more}))
