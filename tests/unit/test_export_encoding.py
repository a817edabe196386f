"""The access package's fast batch encoders give exactly what the per-cell / per-row versions give."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite

from app.csvsafe import DANGEROUS_PREFIXES, _isoformats, safe_row, safe_rows
from app.exports.members import json_default as _json_default
from app.exports.members import json_lines as _json_lines
from app.models_base import UTCDateTime

texts = st.one_of(
    st.text(max_size=12),
    st.sampled_from(DANGEROUS_PREFIXES).flatmap(lambda p: st.text(max_size=8).map(lambda t: p + t)),
    st.sampled_from(['},{"a":1', "}", "{", ",", '"', "\r\n", "-1", "=1+1"]),
)
aware = st.datetimes(timezones=st.sampled_from([UTC, timezone(timedelta(hours=2))]))
zoned = st.datetimes(
    timezones=st.sampled_from(
        [None, UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(seconds=-10817))]
    )
)
cell = st.one_of(
    st.none(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.booleans(),
    st.floats(allow_nan=False),
    st.decimals(allow_nan=False, allow_infinity=False, places=2),
    texts,
    aware,
    st.dates(),
)


def _csv(rows) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\r\n").writerows(rows)
    return buf.getvalue()


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=1, max_value=5).flatmap(lambda w: st.lists(st.tuples(*[cell] * w), max_size=20)))
def test_safe_rows_writes_the_same_csv_as_safe_row_per_row(rows):
    assert _csv(safe_rows(rows)) == _csv([safe_row(r) for r in rows])


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=1, max_value=4).flatmap(lambda w: st.lists(st.tuples(*[texts] * w), max_size=20)))
def test_safe_rows_neutralises_every_text_column(rows):
    for out in csv.reader(io.StringIO(_csv(safe_rows(rows)), newline="")):
        assert not any(v.startswith(DANGEROUS_PREFIXES) for v in out)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.lists(zoned, max_size=30), st.lists(st.datetimes(timezones=st.just(UTC)), max_size=30)))
def test_isoformats_is_isoformat(values):
    assert _isoformats(values) == [v.isoformat() for v in values]


def test_safe_rows_typical_usage_batch():
    now = datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=UTC)
    rows = [(1, now, "gpt", -3, None, "req_1", "sk-a"), (2, now, "=cmd", 4, 5, "@x", "sk-b")]
    assert [list(r) for r in csv.reader(io.StringIO(_csv(safe_rows(rows))))] == [
        ["1", now.isoformat(), "gpt", "-3", "", "req_1", "sk-a"],
        ["2", now.isoformat(), "'=cmd", "4", "5", "'@x", "sk-b"],
    ]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(cell, texts, st.one_of(st.none(), st.integers(min_value=-(2**63), max_value=2**63 - 1))),
        min_size=1,
        max_size=20,
    )
)
def test_json_lines_is_the_rows_as_objects_one_per_line_when_safe(rows):
    fields = ("a", "b", "c")
    blob = _json_lines(rows, fields)
    expected = [dict(zip(fields, r, strict=True)) for r in rows]
    assert json.loads(b"[" + blob + b"]") == json.loads(orjson.dumps(expected, default=_json_default))
    lines = blob.split(b",\n  ")
    if not any("},{" in r[1] for r in rows):
        assert len(lines) == len(rows)  # one object per line
        assert [json.loads(line) for line in lines] == json.loads(orjson.dumps(expected, default=_json_default))


def test_json_lines_falls_back_when_a_string_contains_the_boundary():
    rows = [(1, '},{"injected":1'), (2, "plain")]
    blob = _json_lines(rows, ("id", "text"))
    assert blob == b'{"id":1,"text":"},{\\"injected\\":1"},\n  {"id":2,"text":"plain"}'
    assert json.loads(b"[" + blob + b"]") == [{"id": 1, "text": '},{"injected":1'}, {"id": 2, "text": "plain"}]


def test_json_lines_values_as_before():
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    blob = _json_lines([(when, Decimal("1.50"), date(2026, 1, 2))], ("t", "d", "day"))
    assert json.loads(blob) == {"t": when.isoformat(), "d": "1.50", "day": "2026-01-02"}


def test_utc_datetime_sqlite_fast_path_matches_the_general_one():
    col = UTCDateTime()
    dialect = sqlite.dialect()
    fast = col._cached_result_processor(dialect, None)
    for raw in [
        "2026-11-27 12:38:16.968698",
        "2026-11-27 12:38:16",
        "2026-11-27T12:38:16.000001",
        "2026-11-27 12:38:16+02:00",
        "2026-11-27 12:38:16Z",
        "2026-11-27",
        "20261127",
        None,
    ]:
        general = None if raw is None else col.process_result_value(datetime.fromisoformat(raw), dialect)
        got = fast(raw)
        assert got == general, raw
        assert raw is None or got.tzinfo is UTC, raw
