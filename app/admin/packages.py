"""The access package on the request's page: the README of a package held for release, opened in a
sandboxed tab (its own inline styles, nothing else), audited like every look at a person's data."""

from __future__ import annotations

import zipfile

from flask import Response, abort, current_app
from flask_login import current_user

from app.admin.guard import bp, requires
from app.admin.views import get_request_or_404
from app.audit import Actor, record_event
from app.dsr import packages
from app.exports import store
from app.extensions import db

README_MAX_BYTES = 8 * 1024 * 1024  # README.html is bounded by design (samples, not rows); this is a guard


@bp.route("/requests/<reference>/package/readme")
@requires("auditor")
def package_readme(reference: str) -> Response:
    dsr = get_request_or_404(reference)
    export = packages.held_export(dsr)
    path = store.path_of(export.filename) if export is not None else None
    if export is None or path is None or not path.is_file():
        abort(404)
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo("README.html")
        if info.file_size > README_MAX_BYTES:
            abort(404)
        html = zf.read(info)
    record_event("export.previewed", Actor.staff(current_user), dsr=dsr, data={"export_id": export.id})
    db.session.commit()
    response = current_app.response_class(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; sandbox"
    response.headers["Cache-Control"] = "no-store"
    return response
