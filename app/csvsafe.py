"""CSV formula-injection neutraliser.

Spreadsheet programs execute a cell that begins with ``=``, ``+``, ``-``, ``@`` (and treat a leading
tab or carriage return the same way), so any value a person could have typed is prefixed with a
single quote before it reaches a CSV file we hand out (OWASP "CSV Injection").
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

DANGEROUS_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


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


def csv_line(values: Iterable[Any]) -> str:
    """One neutralised CSV line (with its line terminator), for streaming writers."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerow(safe_row(values))
    return buf.getvalue()
