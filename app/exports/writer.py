"""The access package's zip: each category streamed in (``categories``), then README.html rendered from
the inventory and the categories' bounded digests (``readme``), then ``manifest.json``.

The zip is written under a hidden ``.part`` name in the store's local staging directory, created
private (0600), and handed to the store (``app.exports.store``) only when complete: a directory renames
it into place, S3 uploads it; a crash never leaves a package that could be served. Every entry is dated
at the generation time (``members.entry``).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from app.exports.categories import Digest, write_category
from app.exports.members import COMPRESSLEVEL, entry, write_member
from app.exports.readme import render_readme
from app.exports.store import DirectoryStore, ExportStore, StoreError
from app.models_base import utcnow
from app.sources import EXPORTED, EXPORTERS, Subject

SCHEMA_VERSION = 1


@dataclass
class PackageResult:
    path: Path | None  # the file, when the store is a directory
    filename: str
    size: int
    sha256: str
    manifest: dict[str, Any]
    rows: int
    notes: dict[str, str] = field(default_factory=dict)
    withheld: list[dict[str, Any]] = field(default_factory=list)


def _open_private(path: Path) -> BinaryIO:
    # Created private (0600): the package is the person's data, readable by this service alone.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "wb")


def _sha256(path: Path) -> str:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())
        digest = hashlib.sha256()
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


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
    notes: dict[str, str] = {}
    withheld: list[dict[str, Any]] = []
    done = 0

    def on_rows(n: int) -> None:
        nonlocal done
        done += n
        if progress:
            progress(done, expected_rows or 0)

    try:
        manifest = _write_zip(
            tmp, subject, reference, generated_at, jurisdiction, directory, files, notes, withheld, on_rows
        )
    except BaseException as exc:
        # A half-written package holds personal data and disk space: it goes now, not at the next run.
        tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            # Space comes back (expired packages are purged, the volume grows): the job tries again.
            raise StoreError("the export store is full", transient=True) from exc
        raise
    sha = _sha256(tmp)
    size = store.publish(tmp, filename, sha)
    return PackageResult(
        path=store.path_of(filename) if isinstance(store, DirectoryStore) else None,
        filename=filename,
        size=size,
        sha256=sha,
        manifest=manifest,
        rows=done,
        notes=notes,
        withheld=withheld,
    )


def _write_zip(
    tmp: Path,
    subject: Subject,
    reference: str,
    generated_at: datetime,
    jurisdiction: str,
    directory: Path,
    files: list[dict[str, Any]],
    notes: dict[str, str],
    withheld: list[dict[str, Any]],
    on_rows: Callable[[int], None],
) -> dict[str, Any]:
    """The package's zip at ``tmp``: every category, README.html and manifest.json; returns the manifest
    (``files``, ``notes`` and ``withheld`` are filled in as it goes)."""
    digests: dict[str, Digest] = {}
    with (
        _open_private(tmp) as raw_file,
        zipfile.ZipFile(
            raw_file, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=COMPRESSLEVEL, allowZip64=True
        ) as zf,
    ):
        for cat in EXPORTED:
            source = EXPORTERS[cat.name]
            if not source.configured():
                notes[cat.name] = "Not checked: this source is not configured on this installation."
            digests[cat.name] = write_category(
                zf, cat, source, subject, spool_dir=directory, generated_at=generated_at, files=files, on_rows=on_rows
            )
            if source.configured():
                withheld += source.withheld(subject)
            on_rows(0)
        readme = render_readme(
            reference=reference,
            generated_at=generated_at,
            digests=digests,
            notes=notes,
            withheld=withheld,
            jurisdiction=jurisdiction,
        )
        write_member(zf, "README.html", readme.encode("utf-8"), files, None, generated_at)
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "request_reference": reference,
            "generated_at": generated_at.isoformat(),
            "files": files,
            "notes": notes,
            # What was found and left out (another person's data), without its content.
            "withheld": [{"category": w["category"], "id": w["id"], "reason": w["reason"]} for w in withheld],
        }
        manifest_bytes = json.dumps(manifest, indent=2, ensure_ascii=False).encode("utf-8")
        with zf.open(entry("manifest.json", generated_at), "w") as member:
            member.write(manifest_bytes)
    return manifest


def discard_partial(export_dir: str | os.PathLike, filename: str) -> None:
    """Remove a half-written package left by a killed worker (``ExportStore.discard_partial`` also
    clears what a store keeps of an unfinished upload)."""
    DirectoryStore(export_dir).discard_partial(filename)
