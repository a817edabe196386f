"""CSV formula-injection neutraliser.

Spreadsheet programs execute a cell that begins with ``=``, ``+``, ``-``, ``@`` (and treat a leading
tab or carriage return the same way), so any value a person could have typed is prefixed with a
single quote before it reaches a CSV file we hand out (OWASP "CSV Injection").
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime
from itertools import repeat
from operator import attrgetter
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from flask import Response

DANGEROUS_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
_TZINFO = attrgetter("tzinfo")
_UTC_OR_NAIVE = frozenset({UTC, None})


def safe_cell(value: Any) -> str:
    """Render ``value`` as a CSV cell that no spreadsheet will evaluate."""
    kind = type(value)
    if kind is str:  # the common case first: exports call this for millions of cells
        return "'" + value if value.startswith(DANGEROUS_PREFIXES) else value
    if kind is int:
        return str(value)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        # Numbers are data, not formulas; a negative number stays a number.
        return str(value)
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    text = str(value)
    if text.startswith(DANGEROUS_PREFIXES):
        return "'" + text
    return text


def safe_row(values: Iterable[Any]) -> list[str]:
    return [safe_cell(v) for v in values]


# Column types the csv module already writes exactly as ``safe_cell`` would: ``str(int)``, and "" for None.
# (bool is a subclass of int but its own type, so it is not here: it is written "true"/"false".)
_AS_IS = frozenset({int, type(None)})


def _isoformats(column: Sequence[datetime]) -> list[str]:
    """``isoformat()`` of each datetime. orjson writes the same text for UTC and naive datetimes
    five times faster (a timestamp holds no quote, so the array splits on ``","``); any other zone
    (whose offset might have seconds) goes through ``isoformat``."""
    if set(map(_TZINFO, column)) <= _UTC_OR_NAIVE:
        texts = orjson.dumps(column).decode()[2:-2].split('","')
        if len(texts) == len(column):
            return texts
    return list(map(datetime.isoformat, column))


def safe_rows(rows: Sequence[Sequence[Any]]) -> Iterable[Sequence[Any]]:
    """``safe_row`` for a batch of rows of equal width, a column at a time, for ``csv.writer.writerows``.

    The same cells as ``map(safe_row, rows)`` (the csv module renders ints and None as ``safe_cell``
    does), without a Python call per cell in the common columns: int/None columns pass through, a
    datetime column is ``isoformat``-ed in one call, a text column is checked with one C-level
    ``startswith`` scan and neutralised cell by cell only in a batch where some cell needs it; any
    other column (bool, float, Decimal, date, mixed) goes through ``safe_cell``.
    """
    if not rows:
        return ()
    columns: list[Sequence[Any]] = []
    for column in zip(*rows, strict=True):
        kinds = set(map(type, column))
        if kinds <= _AS_IS:
            columns.append(column)
        elif kinds == {str}:
            risky = any(map(str.startswith, column, repeat(DANGEROUS_PREFIXES)))
            columns.append([safe_cell(v) for v in column] if risky else column)
        elif kinds == {datetime}:
            columns.append(_isoformats(column))
        else:
            columns.append([safe_cell(v) for v in column])
    return zip(*columns, strict=True)


def csv_line(values: Iterable[Any]) -> str:
    """One neutralised CSV line (with its line terminator), for streaming writers."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerow(safe_row(values))
    return buf.getvalue()


def csv_download(lines: Iterable[str], filename: str) -> Response:
    """A streamed CSV attachment that no browser or proxy keeps a copy of (``Cache-Control: no-store``):
    the audit log and the request register are personal data."""
    from flask import Response, stream_with_context

    # ``stream_with_context`` calls ``iter()`` on what it is given; its stubs accept an iterator only.

    return Response(
        stream_with_context(iter(lines)),
        mimetype="text/csv",
        headers={"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"},
    )
