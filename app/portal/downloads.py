"""The response that carries a counted download's bytes: streamed by the app, or sent by the front server.

By the time this runs the view has opened the package (so it is there) and committed the count and the
``export.downloaded`` event, exactly as for streaming: the front server only ever sends what was
counted. ``DOWNLOAD_ACCEL`` hands a directory store's file to nginx (``X-Accel-Redirect`` to the
``internal`` location ``DOWNLOAD_ACCEL_PREFIX``) or to Apache / lighttpd (``X-Sendfile`` with the file's
path), so a slow reader ties up the front server's event loop instead of a gunicorn worker. A package
from S3 has no local file and always streams. The header names only a file the store opened inside the
export directory under a name ``valid_name`` accepted (no slash, nothing hidden): never another path.
"""

from __future__ import annotations

from urllib.parse import quote

from flask import Response, current_app, request
from werkzeug.wsgi import wrap_file

from app.exports.store import Package


def package_response(package: Package, attachment_name: str, headers: dict[str, str]) -> Response:
    """The 200 for ``package`` as the attachment ``attachment_name``, with ``headers`` added."""
    mode = current_app.config.get("DOWNLOAD_ACCEL", "none")
    if mode != "none" and package.path is not None:
        path = package.path
        package.close()  # the front server opens the file itself; this response has no body
        response = current_app.response_class(b"", mimetype="application/zip")
        if mode == "x-accel-redirect":
            response.headers["X-Accel-Redirect"] = current_app.config["DOWNLOAD_ACCEL_PREFIX"] + quote(path.name)
        else:
            response.headers["X-Sendfile"] = str(path)
    else:
        response = current_app.response_class(
            wrap_file(request.environ, package.file, buffer_size=1 << 16),
            mimetype="application/zip",
            direct_passthrough=True,
        )
        response.content_length = package.size
    response.headers.set("Content-Disposition", "attachment", filename=attachment_name)
    response.headers.update(headers)
    return response
