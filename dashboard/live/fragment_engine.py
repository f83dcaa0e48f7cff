"""The live fragments' template engine: Jinja2, autoescaping, compiled once per process.

Every live fragment (``templates/dashboard/fragments/``) is a Jinja2 template, rendered here
for the first render of a page (``{% tile %}`` and ``{% fragment %}`` in
dashboard/templatetags/live_tiles.py) and for every push (``fragments.render_tile``): one
template per fragment, one engine. Jinja2 compiles a template to Python, so a tile costs a
few function calls where a Django template walks its node tree and resolves every variable
through its lookup chain (docs/benchmarks.md, "Tile render").

The filters the fragments use are Django's own functions, so a fragment shows what the Django
template showed: ``date`` converts to the current time zone first, as a Django template does
with ``{% localtime on %}``; ``dateformat`` formats the time as given.
"""

from __future__ import annotations

import functools
from datetime import datetime, tzinfo
from typing import Any

import jinja2
from django.conf import settings
from django.template import defaultfilters
from django.urls import reverse
from django.utils import timezone


def _date(value: Any, fmt: str) -> str:
    # As Django's engine does before its date filter (USE_TZ is on): the current zone's time.
    if isinstance(value, datetime) and timezone.is_aware(value):
        value = timezone.localtime(value)
    return defaultfilters.date(value, fmt)


def _iso(value: Any) -> str:
    # What ``date("c")`` writes (Django's "c" is the isoformat() of the current zone's time),
    # without parsing a format each time: the occupancy table has one a row.
    if isinstance(value, datetime) and timezone.is_aware(value):
        return timezone.localtime(value).isoformat()
    return _date(value, "c")


def clock(at: datetime, zone: tzinfo | None) -> str:
    """``at`` as the building's clock reads it: ``HH:MM:SS`` in its ``zone``."""
    return (at.astimezone(zone) if zone else at).time().isoformat("seconds")


def _url(name: str, *args: Any) -> str:
    return reverse(name, args=args)


class _Environment(jinja2.Environment):
    def getattr(self, obj: Any, attribute: str) -> Any:
        # ``a.b`` looks ``b`` up as Django does, a dictionary's key first: the contexts are
        # dictionaries, and Jinja2's attribute-first order pays a raised AttributeError for
        # each of their values (a third of a tile's render).
        if type(obj) is dict:
            try:
                return obj[attribute]
            except KeyError:
                pass
        return super().getattr(obj, attribute)


@functools.cache
def environment() -> jinja2.Environment:
    """The fragments' environment, made at first use (settings are read then)."""
    directories: list[Any] = settings.TEMPLATES[0]["DIRS"]  # type: ignore[assignment]
    env = _Environment(
        loader=jinja2.FileSystemLoader([str(d) for d in directories]),
        # Every value is escaped unless it is markup already (Django's SafeString too, which
        # has __html__): a fragment never shows a payload's text as HTML.
        autoescape=True,
        # A compiled template is kept for the process's life; DEBUG re-reads edited files.
        auto_reload=settings.DEBUG,
        keep_trailing_newline=True,  # as Django's engine: the fragment's bytes as written
        undefined=jinja2.Undefined,  # a missing attribute shows nothing, as in Django
    )
    env.filters.update(
        date=_date,
        iso=_iso,
        dateformat=defaultfilters.date,
        clock=clock,
        slugify=defaultfilters.slugify,
        pluralize=defaultfilters.pluralize,
        truncatechars=defaultfilters.truncatechars,
    )
    env.filters["url"] = _url  # {{ "alarms"|url(building_id) }}
    # No globals: every render copies them into its context, and no fragment uses Jinja2's
    # (range, cycler...). A filter is looked up once, when the template is compiled.
    env.globals.clear()
    return env


@functools.cache
def _compiled(name: str) -> jinja2.Template:
    return environment().get_template(name)


def render(template: str, context: dict[str, Any]) -> str:
    """The fragment ``template`` (a path under the template directories) for ``context``."""
    env = environment()
    # Without DEBUG a template is looked up once: Jinja2's own cache takes a lock each time.
    found = env.get_template(template) if env.auto_reload else _compiled(template)
    # Template.render, less its copy of the context with the globals merged in: a context is
    # made for this one render, and environment() clears the globals (a global added there
    # would not reach the fragments). Made directly: Template.new_context's two calls before
    # it were a sixth of a value tile's render.
    try:
        ctx = env.context_class(env, context, found.name, found.blocks)
        return env.concat(found.root_render_func(ctx))
    except Exception:
        env.handle_exception()
