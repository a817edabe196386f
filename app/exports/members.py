"""Zip members of the access package: each entry dated at the package's generation time, private, and
hashed over exactly the bytes stored for it (the manifest's SHA-256)."""

from __future__ import annotations

import hashlib
import zipfile
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from itertools import repeat
from typing import IO, Any

import orjson

# Row data members (the big ones) are deflated at level 1: 4-6x less CPU than zlib's default 6 on this
# data for packages about 25% larger (measured on usage logs). README and manifest are tiny either way.
COMPRESSLEVEL = 1


def entry(name: str, generated_at: datetime) -> zipfile.ZipInfo:
    """A member dated at generation time (zip stores local time without a zone: we store UTC, as the
    manifest's ``generated_at`` says), readable by its owner only when unpacked."""
    info = zipfile.ZipInfo(name, date_time=generated_at.timetuple()[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    # zipfile reads the member's level from ``_compresslevel`` (3.11, 3.12), ``compress_level`` from 3.13.
    setattr(
        info, "compress_level" if "compress_level" in zipfile.ZipInfo.__slots__ else "_compresslevel", COMPRESSLEVEL
    )
    info.external_attr = 0o600 << 16
    return info


class HashingMember:
    """Wraps a zip member: hashes exactly the bytes stored for it."""

    def __init__(self, member: IO[bytes]) -> None:
        self.member = member
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> None:
        self.member.write(data)
        self.digest.update(data)


def write_member(
    zf: zipfile.ZipFile, name: str, data: bytes, files: list[dict], rows: int | None, generated_at: datetime
) -> None:
    with zf.open(entry(name, generated_at), "w", force_zip64=True) as raw:
        out = HashingMember(raw)
        out.write(data)
    files.append({"name": name, "rows": rows, "sha256": out.digest.hexdigest()})


def json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return str(value)


def json_lines(rows: Sequence[Sequence[Any]], fields: tuple[str, ...]) -> bytes:
    """A batch of rows as JSON objects joined by ``,\\n  `` (one object per line inside the array).

    orjson: the same JSON as the standard library (datetimes as RFC 3339), several times faster, and
    much faster on a whole list than per object. Compact orjson output of a list of objects has a
    ``},{`` at each of the ``len(rows) - 1`` boundaries; if that is every ``},{`` in it (none inside a
    string), the boundaries are exactly those and become line breaks. Otherwise: one object at a time.
    """
    if len(rows[0]) != len(fields):  # every row of a batch is as wide (safe_rows checks): one check
        raise ValueError(f"rows of {len(rows[0])} values for {len(fields)} fields")
    objects = list(map(dict, map(zip, repeat(fields), rows)))
    blob = orjson.dumps(objects, default=json_default)
    if blob.count(b"},{") == len(objects) - 1:
        return blob[1:-1].replace(b"},{", b"},\n  {")
    return b",\n  ".join([orjson.dumps(o, default=json_default) for o in objects])
