"""The access package on the request's page: the README of a package held for release, opened in a
sandboxed tab (its own inline styles, nothing else), audited like every look at a person's data."""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from typing import BinaryIO

from flask import Response, abort, current_app
from flask_login import current_user

from app.admin.guard import bp, requires
from app.admin.views import get_request_or_404
from app.audit import Actor, record_event
from app.dsr import packages
from app.exports import store
from app.extensions import db

README_MAX_BYTES = 8 * 1024 * 1024  # README.html is bounded by design (samples, not rows); this is a guard


def _readme_of(package: store.Package) -> bytes | None:
    """README.html out of a stored package: read in place from a directory, or (an object store's stream
    cannot seek to the zip's central directory) through a temporary file on disk, never into memory."""
    source: BinaryIO = package.file
    spool = None
    if not (hasattr(source, "seekable") and source.seekable()):
        spool = tempfile.TemporaryFile()
        shutil.copyfileobj(source, spool, 1 << 20)
        spool.seek(0)
        source = spool
    try:
        with zipfile.ZipFile(source) as zf:
            try:
                info = zf.getinfo("README.html")
            except KeyError:
                return None
            if info.file_size > README_MAX_BYTES:
                return None
            return zf.read(info)
    finally:
        if spool is not None:
            spool.close()


@bp.route("/requests/<reference>/package/readme")
@requires("auditor")
def package_readme(reference: str) -> Response:
    dsr = get_request_or_404(reference)
    export = packages.held_export(dsr)
    package = store.current().open(export.filename) if export is not None else None
    if export is None or package is None:
        abort(404)
    try:
        html = _readme_of(package)
    finally:
        package.close()
    if html is None:
        abort(404)
    record_event("export.previewed", Actor.staff(current_user), dsr=dsr, data={"export_id": export.id})
    db.session.commit()
    response = current_app.response_class(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
    response.headers["Cache-Control"] = "no-store"
    return response
