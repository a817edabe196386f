"""Where access packages live: a directory (``EXPORT_DIR``), written privately (0600).

The one place that knows where a package's file is: the writer creates it here, the download view
serves it from here, and expiry, purge and erasure delete it through ``delete``.
"""

from __future__ import annotations

from pathlib import Path

from flask import current_app


def export_dir() -> Path:
    return Path(current_app.config["EXPORT_DIR"])


def path_of(filename: str | None) -> Path | None:
    """The package's path, or None for a name that is not a plain file name of ours."""
    if not filename or Path(filename).name != filename or filename.startswith("."):
        return None
    return export_dir() / filename


def delete(filename: str | None) -> bool:
    """Remove a package file (and any half-written part of it); True when one was there."""
    path = path_of(filename)
    if path is None:
        return False
    (path.parent / f".{filename}.part").unlink(missing_ok=True)
    existed = path.exists()
    path.unlink(missing_ok=True)
    return existed
