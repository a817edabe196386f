"""Streaming zip writer for the access package.

Rows come from each source as batches of tuples (``Source.batches``) and go straight into ``ZipFile.open(name, "w",
force_zip64=True)`` members while being hashed, so memory does not grow with the number of rows.
A category's CSV is spooled to a temporary file on disk while its JSON is written (a zip accepts
one open member at a time), then copied in. The zip is written under a hidden ``.part`` name in
the store's local staging directory and handed to the store (``app.exports.store``) only when complete:
a directory renames it into place, S3 uploads it; a crash never leaves a package that could be served.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from itertools import repeat
from pathlib import Path
from typing import Any

import orjson

from app.csvsafe import safe_row, safe_rows
from app.exports.readme import render_readme
from app.exports.store import DirectoryStore, ExportStore
from app.models_base import utcnow
from app.sources import BY_CATEGORY, EXPORTED, Subject

SCHEMA_VERSION = 1
# Row data members (the big ones) are deflated at level 1: 4-6x less CPU than zlib's default 6 on this
# data for packages about 25% larger (measured on usage logs). README and manifest are tiny either way.
COMPRESSLEVEL = 1


@dataclass
class PackageResult:
    path: Path | None  # the file, when the store is a directory
    filename: str
    size: int
    sha256: str
    manifest: dict[str, Any]
    rows: int
    notes: dict[str, str] = field(default_factory=dict)


def _json_default(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return str(value)


def _json_lines(rows, fields: tuple[str, ...]) -> bytes:
    """A batch of rows as JSON objects joined by ``,\\n  `` (one object per line inside the array).

    orjson: the same JSON as the standard library (datetimes as RFC 3339), several times faster, and
    much faster on a whole list than per object. Compact orjson output of a list of objects has a
    ``},{`` at each of the ``len(rows) - 1`` boundaries; if that is every ``},{`` in it (none inside a
    string), the boundaries are exactly those and become line breaks. Otherwise: one object at a time.
    """
    if len(rows[0]) != len(fields):  # every row of a batch is as wide (safe_rows checks): one check
        raise ValueError(f"rows of {len(rows[0])} values for {len(fields)} fields")
    objects = list(map(dict, map(zip, repeat(fields), rows)))
    blob = orjson.dumps(objects, default=_json_default)
    if blob.count(b"},{") == len(objects) - 1:
        return blob[1:-1].replace(b"},{", b"},\n  {")
    return b",\n  ".join([orjson.dumps(o, default=_json_default) for o in objects])


def _write_batch(out: _HashingMember, writer, rows, fields: tuple[str, ...], first: bool) -> None:
    """One batch of a category's rows: JSON objects (one per line) into the member, neutralised cells
    into the CSV spool. Whole batches go to the deflate stream, the hash and the csv writer: per-row
    writes cost more than the encoding itself."""
    out.write((b"\n  " if first else b",\n  ") + _json_lines(rows, fields))
    writer.writerows(safe_rows(rows))


class _HashingMember:
    """Wraps a zip member: counts and hashes exactly the bytes stored for it."""

    def __init__(self, member):
        self.member = member
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> None:
        self.member.write(data)
        self.digest.update(data)


def _write_member(zf: zipfile.ZipFile, name: str, data: bytes, files: list[dict], rows: int | None) -> None:
    with zf.open(name, "w", force_zip64=True) as raw:
        out = _HashingMember(raw)
        out.write(data)
    files.append({"name": name, "rows": rows, "sha256": out.digest.hexdigest()})


def build_package(
    *,
    reference: str,
    subject: Subject,
    export_dir: str | os.PathLike | None = None,
    filename: str,
    progress: Callable[[int, int], None] | None = None,
    expected_rows: int | None = None,
    jurisdiction: str = "gdpr",
    store: ExportStore | None = None,
) -> PackageResult:
    """Write the package for ``subject`` into ``store`` (or the directory ``export_dir``);
    ``progress(rows_done, expected)`` is called as rows stream."""
    if store is None:
        if export_dir is None:
            raise TypeError("build_package needs a store or an export_dir")
        store = DirectoryStore(export_dir)
    directory = store.staging_dir()
    tmp = directory / f".{filename}.part"
    generated_at = utcnow()
    files: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    notes: dict[str, str] = {}
    done = 0

    def tick() -> None:
        if progress:
            progress(done, expected_rows or 0)

    # Created private (0600): the package is the person's data, readable by this service alone.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with (
        os.fdopen(fd, "wb") as raw_file,
        zipfile.ZipFile(
            raw_file, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=COMPRESSLEVEL, allowZip64=True
        ) as zf,
    ):
        for cat in EXPORTED:
            source = BY_CATEGORY[cat.name]
            if not source.configured():
                notes[cat.name] = "Not checked: this source is not configured on this installation."
            rows = 0
            with tempfile.TemporaryFile(dir=directory) as spool:
                # The CSV goes through a write-only handle of its own (a text wrapper over the
                # read/write spool resets a decoder on each of the csv writer's per-row writes),
                # closed before the spool on every path.
                with open(spool.fileno(), "w", encoding="utf-8", newline="", closefd=False) as spool_text:
                    writer = csv.writer(spool_text, lineterminator="\r\n")
                    writer.writerow(safe_row(cat.fields))
                    with zf.open(f"{cat.name}.json", "w", force_zip64=True) as raw:
                        out = _HashingMember(raw)
                        out.write(b"[")
                        if source.configured():
                            for batch in source.batches(subject):
                                if not batch:
                                    continue
                                _write_batch(out, writer, batch, cat.fields, first=not rows)
                                rows += len(batch)
                                done += len(batch)
                                tick()
                        out.write(b"\n]\n" if rows else b"]\n")
                    files.append({"name": f"{cat.name}.json", "rows": rows, "sha256": out.digest.hexdigest()})
                spool.seek(0)
                with zf.open(f"{cat.name}.csv", "w", force_zip64=True) as raw:
                    out = _HashingMember(raw)
                    while chunk := spool.read(1 << 16):
                        out.write(chunk)
                files.append({"name": f"{cat.name}.csv", "rows": rows, "sha256": out.digest.hexdigest()})
            counts[cat.name] = rows
            tick()
        readme = render_readme(
            reference=reference, generated_at=generated_at, counts=counts, notes=notes, jurisdiction=jurisdiction
        )
        _write_member(zf, "README.html", readme.encode("utf-8"), files, None)
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "request_reference": reference,
            "generated_at": generated_at.isoformat(),
            "files": files,
            "notes": notes,
        }
        zf.writestr("manifest.json", json.dumps(manifest, indent=2, ensure_ascii=False))
    with open(tmp, "rb") as fh:
        os.fsync(fh.fileno())
        digest = hashlib.sha256()
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    size = store.publish(tmp, filename, digest.hexdigest())
    return PackageResult(
        path=store.path_of(filename) if isinstance(store, DirectoryStore) else None,
        filename=filename,
        size=size,
        sha256=digest.hexdigest(),
        manifest=manifest,
        rows=done,
        notes=notes,
    )


def discard_partial(export_dir: str | os.PathLike, filename: str) -> None:
    """Remove a half-written package left by a killed worker (``ExportStore.discard_partial`` also
    clears what a store keeps of an unfinished upload)."""
    DirectoryStore(export_dir).discard_partial(filename)
