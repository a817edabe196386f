"""One category of the access package: its rows streamed into ``<name>.json`` and ``<name>.csv``, and a
bounded digest of them for README.html (the first rows, totals and tallies; never every row).

Rows come from the source as batches of tuples (``Source.batches``) and go straight into a zip member
while being hashed, so memory does not grow with the number of rows. The CSV is spooled to a temporary
file on disk while the JSON is written (a zip accepts one open member at a time), then copied in.
"""

from __future__ import annotations

import csv
import tempfile
import zipfile
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter
from pathlib import Path
from typing import Any

from app.csvsafe import safe_row, safe_rows
from app.exports.members import HashingMember, entry, json_lines
from app.sources import Subject
from app.sources.base import Source
from app.sources.inventory import Category

# Rows of each category shown in full in README.html; the rest are in the CSV and JSON files.
SAMPLE_ROWS = 10


@dataclass
class Digest:
    """What README.html shows of a category: bounded whatever the row count."""

    rows: int = 0
    sample: list[tuple[Any, ...]] = field(default_factory=list)
    last: tuple[Any, ...] | None = None
    totals: dict[str, int] = field(default_factory=dict)
    tallies: dict[str, Counter] = field(default_factory=dict)

    def add(self, cat: Category, batch: Sequence[Sequence[Any]]) -> None:
        if len(self.sample) < SAMPLE_ROWS:
            self.sample.extend(tuple(r) for r in batch[: SAMPLE_ROWS - len(self.sample)])
        self.last = tuple(batch[-1])
        self.rows += len(batch)
        for i, f in enumerate(cat.field_info):
            # C-speed per batch (sum over itemgetter, Counter over a map): about 1% of the export's time.
            if f.total:
                self.totals[f.name] = self.totals.get(f.name, 0) + sum(v or 0 for v in map(itemgetter(i), batch))
            if f.tally:
                self.tallies.setdefault(f.name, Counter()).update(map(itemgetter(i), batch))

    def span(self, cat: Category) -> tuple[datetime, datetime] | None:
        """Earliest and latest time among the first and last rows of the first datetime field (rows
        stream in id order, which is time order for logs)."""
        kinds = [i for i, f in enumerate(cat.field_info) if f.kind == "datetime"]
        if not kinds or not self.sample or self.last is None:
            return None
        i = kinds[0]
        seen = [v for v in (*(r[i] for r in self.sample), self.last[i]) if isinstance(v, datetime)]
        return (min(seen), max(seen)) if seen else None


def write_category(
    zf: zipfile.ZipFile,
    cat: Category,
    source: Source,
    subject: Subject,
    *,
    spool_dir: Path,
    generated_at: datetime,
    files: list[dict[str, Any]],
    on_rows: Callable[[int], None] | None = None,
) -> Digest:
    """Stream the category into its two members (listed in ``files``); returns its digest."""
    digest = Digest()
    with tempfile.TemporaryFile(dir=spool_dir) as spool:
        # The CSV goes through a write-only handle of its own (a text wrapper over the read/write spool
        # resets a decoder on each of the csv writer's per-row writes), closed before the spool.
        with open(spool.fileno(), "w", encoding="utf-8", newline="", closefd=False) as spool_text:
            writer = csv.writer(spool_text, lineterminator="\r\n")
            writer.writerow(safe_row(cat.fields))
            with zf.open(entry(f"{cat.name}.json", generated_at), "w", force_zip64=True) as raw:
                out = HashingMember(raw)
                out.write(b"[")
                if source.configured():
                    for batch in source.batches(subject):
                        if not batch:
                            continue
                        # Whole batches go to the deflate stream, the hash and the csv writer: per-row
                        # writes cost more than the encoding itself.
                        out.write((b",\n  " if digest.rows else b"\n  ") + json_lines(batch, cat.fields))
                        writer.writerows(safe_rows(batch))
                        digest.add(cat, batch)
                        if on_rows:
                            on_rows(len(batch))
                out.write(b"\n]\n" if digest.rows else b"]\n")
            files.append({"name": f"{cat.name}.json", "rows": digest.rows, "sha256": out.digest.hexdigest()})
        spool.seek(0)
        with zf.open(entry(f"{cat.name}.csv", generated_at), "w", force_zip64=True) as raw:
            out = HashingMember(raw)
            while chunk := spool.read(1 << 16):
                out.write(chunk)
        files.append({"name": f"{cat.name}.csv", "rows": digest.rows, "sha256": out.digest.hexdigest()})
    return digest
