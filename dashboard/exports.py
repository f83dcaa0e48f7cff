"""Exports of a list page as CSV or JSON, streamed row by row: one implementation for all.

A page describes a row as a record (field name → value) and picks a format; this module
writes the lines, neutralises spreadsheet formulas, and streams the response. Times are on the
building's clock, ISO 8601 with their offset, and each record names the zone (``time_zone``).
"""

from __future__ import annotations

import csv
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, tzinfo
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from django.core.handlers.asgi import ASGIRequest
from django.db.models import Model, QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

CHUNK = 2000  # rows fetched from the database at a time

# Spreadsheets run a cell starting with one of these as a formula (CSV injection): anything
# from MQTT or a user may be crafted to. A leading apostrophe is what spreadsheet users expect:
# it makes the cell plain text and is not shown. Scripts reading the file see it; that is
# the trade-off.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
ZONE_FIELD = "time_zone"  # the last field of every record: the zone its times are in

Record = dict[str, Any]
M = TypeVar("M", bound=Model)


def csv_cell(value: Any) -> str:
    """A CSV cell: text as is, compact JSON for structures, formula starts neutralised."""
    if value is None:
        return ""
    if isinstance(value, str | uuid.UUID):
        text = str(value)
    else:
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


class _Line:
    """A file-like object whose write() returns the line, for csv.writer in a generator."""

    def write(self, value: str) -> str:
        return value


@dataclass(frozen=True)
class Format:
    """How an export starts, writes each record (knowing whether it is the first), and ends."""

    extension: str
    head: str
    line: Callable[[Record, bool], str]
    tail: str
    content_type: str


def csv_format(fields: list[str]) -> Format:
    """CSV with a header row of ``fields`` and ``time_zone``, then one row per record."""
    writer = csv.writer(_Line())
    columns = [*fields, ZONE_FIELD]

    def line(record: Record, first: bool) -> str:
        return writer.writerow([csv_cell(record[name]) for name in columns])

    return Format("csv", writer.writerow(columns), line, "", "text/csv; charset=utf-8")


def on_clock(record: Callable[[M], Record], zone: tzinfo, name: str) -> Callable[[M], Record]:
    """``record`` with its times in ``zone`` (ISO 8601, offset included) and the zone named."""

    def local(row: M) -> Record:
        return _local(record(row), zone, name)

    return local


def _local(record: Record, zone: tzinfo, name: str) -> Record:
    out = {
        k: v.astimezone(zone).isoformat() if isinstance(v, datetime) else v
        for k, v in record.items()
    }
    out[ZONE_FIELD] = name
    return out


def text(records: Iterable[Record], out: Format, zone: ZoneInfo) -> str:
    """Records already computed (a report's, not a table's rows), times in ``zone``."""
    body = [out.line(_local(record, zone, zone.key), i == 0) for i, record in enumerate(records)]
    return "".join([out.head, *body, out.tail])


def attachment(body: str, out: Format, name: str) -> HttpResponse:
    """``body`` (from ``text``) as the attachment ``<name>.<extension>``."""
    response = HttpResponse(body, content_type=out.content_type)
    response["Content-Disposition"] = f'attachment; filename="{name}.{out.extension}"'
    return response


def _json_line(record: Record, first: bool) -> str:
    return ("\n" if first else ",\n") + json.dumps(record)


JSON = Format("json", "[", _json_line, "\n]\n", "application/json")


def _lines(out: Format, rows: QuerySet[Any], record: Callable[[Any], Record]) -> Iterator[str]:
    yield out.head
    for i, row in enumerate(rows.iterator(chunk_size=CHUNK)):
        yield out.line(record(row), i == 0)
    yield out.tail


async def _lines_async(
    out: Format, rows: QuerySet[Any], record: Callable[[Any], Record]
) -> AsyncIterator[str]:
    yield out.head
    first = True
    async for row in rows.aiterator(chunk_size=CHUNK):
        yield out.line(record(row), first)
        first = False
    yield out.tail


def stream(
    request: HttpRequest,
    rows: QuerySet[M],
    record: Callable[[M], Record],
    out: Format,
    name: str,
    zone: ZoneInfo,
) -> StreamingHttpResponse:
    """``rows`` as an attachment ``<name>.<extension>``, streamed as they are read, times in
    ``zone`` (the building's: the lines are written after the request's zone is gone)."""
    record = on_clock(record, zone, zone.key)
    # Served by daphne, Django would read a synchronous iterator to the end before sending
    # (and warn); an asynchronous one streams there. The test client and WSGI take this one.
    lines: Iterator[str] | AsyncIterator[str] = (
        _lines_async(out, rows, record)
        if isinstance(request, ASGIRequest)
        else _lines(out, rows, record)
    )
    response = StreamingHttpResponse(lines, content_type=out.content_type)
    response["Content-Disposition"] = f'attachment; filename="{name}.{out.extension}"'
    return response
