"""Streaming zip writer for the access package.

Rows come from each source as a generator and go straight into ``ZipFile.open(name, "w",
force_zip64=True)`` members while being hashed, so memory does not grow with the number of rows.
A category's CSV is spooled to a temporary file on disk while its JSON is written (a zip accepts
one open member at a time), then copied in. The zip is written under a hidden ``.part`` name in
``EXPORT_DIR`` and ``os.replace``d to its final name only when complete: a crash never leaves a
file that could be served.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson

from app.csvsafe import safe_row
from app.exports.readme import render_readme
from app.models_base import utcnow
from app.sources import BY_CATEGORY, EXPORTED, Subject

SCHEMA_VERSION = 1
PROGRESS_EVERY = 2000
WRITE_BATCH = 1000


@dataclass
class PackageResult:
    path: Path
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


def _encode(row: dict[str, Any]) -> bytes:
    # orjson: the same JSON as the standard library (datetimes as RFC 3339), several times faster.
    return orjson.dumps(row, default=_json_default)


class _Batch:
    """One category's JSON and CSV, encoded and written a batch of rows at a time: per-row writes into
    the deflate stream and the hash cost more than the encoding itself."""

    def __init__(self, out: _HashingMember, writer) -> None:
        self.out, self.writer = out, writer
        self.parts: list[bytes] = []
        self.cells: list[list[str]] = []
        self.written = 0

    def add(self, row: dict[str, Any], fields) -> bool:
        """Queue one row; returns True when that filled a batch and it was written."""
        self.parts.append(_encode(row))
        self.cells.append(safe_row([row.get(f) for f in fields]))
        if len(self.parts) >= WRITE_BATCH:
            self.flush()
            return True
        return False

    def flush(self) -> None:
        if not self.parts:
            return
        lead = b",\n  " if self.written else b"\n  "
        self.out.write(lead + b",\n  ".join(self.parts))
        self.writer.writerows(self.cells)
        self.written += len(self.parts)
        self.parts.clear()
        self.cells.clear()


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
    export_dir: str | os.PathLike,
    filename: str,
    progress: Callable[[int, int], None] | None = None,
    expected_rows: int | None = None,
) -> PackageResult:
    """Write the package for ``subject``; ``progress(rows_done, expected)`` is called as rows stream."""
    directory = Path(export_dir)
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / filename
    tmp = directory / f".{filename}.part"
    generated_at = utcnow()
    files: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    notes: dict[str, str] = {}
    done = 0

    def tick() -> None:
        if progress:
            progress(done, expected_rows or 0)

    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as zf:
        for cat in EXPORTED:
            source = BY_CATEGORY[cat.name]
            if not source.configured():
                notes[cat.name] = "Not checked: this source is not configured on this installation."
            rows = 0
            with tempfile.TemporaryFile(dir=directory) as spool:
                spool_text = io.TextIOWrapper(spool, encoding="utf-8", newline="")
                writer = csv.writer(spool_text, lineterminator="\r\n")
                writer.writerow(safe_row(cat.fields))
                with zf.open(f"{cat.name}.json", "w", force_zip64=True) as raw:
                    out = _HashingMember(raw)
                    out.write(b"[")
                    batch = _Batch(out, writer)
                    if source.configured():
                        fields = cat.fields
                        for row in source.records(subject):
                            rows += 1
                            done += 1
                            if batch.add(row, fields) and done % PROGRESS_EVERY < WRITE_BATCH:
                                tick()
                        batch.flush()
                    out.write(b"\n]\n" if rows else b"]\n")
                files.append({"name": f"{cat.name}.json", "rows": rows, "sha256": out.digest.hexdigest()})
                spool_text.flush()
                spool_text.detach()
                spool.seek(0)
                with zf.open(f"{cat.name}.csv", "w", force_zip64=True) as raw:
                    out = _HashingMember(raw)
                    while chunk := spool.read(1 << 16):
                        out.write(chunk)
                files.append({"name": f"{cat.name}.csv", "rows": rows, "sha256": out.digest.hexdigest()})
            counts[cat.name] = rows
            tick()
        readme = render_readme(reference=reference, generated_at=generated_at, counts=counts, notes=notes)
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
    os.replace(tmp, final)
    return PackageResult(
        path=final,
        filename=filename,
        size=final.stat().st_size,
        sha256=digest.hexdigest(),
        manifest=manifest,
        rows=done,
        notes=notes,
    )


def discard_partial(export_dir: str | os.PathLike, filename: str) -> None:
    """Remove a half-written package left by a killed worker."""
    for path in (Path(export_dir) / f".{filename}.part",):
        path.unlink(missing_ok=True)
