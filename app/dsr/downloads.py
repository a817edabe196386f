"""An access package served by its emailed link: which package a link reaches, whether it can be served
now, and the count of a complete download (``DOWNLOAD_MAX`` per link, each one audited).

The download view calls one of these: ``check_link`` for the link's first hop, ``peek`` for a HEAD or a
``Range`` request (headers only, nothing counted), ``take`` for a complete GET. ``take`` opens the package
before it counts, so a store that cannot be read costs the subject none of their downloads. Each leaves
the commit (or the rollback, on a ``DownloadProblem`` or ``services.TokenProblem``) to its caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update

from app.audit import Actor, record_event
from app.dsr import services
from app.dsr.models import DsrRequest, Export, Token
from app.exports import store
from app.extensions import db
from app.models_base import rows_changed, utcnow


class DownloadProblem(Exception):
    """Why a package cannot be served: ``invalid`` (404), ``building`` (404), ``expired`` or ``used`` (410),
    ``unavailable`` (503: the export store cannot be reached)."""

    def __init__(self, kind: str, status: int) -> None:
        self.kind, self.status = kind, status
        super().__init__(kind)


@dataclass(frozen=True)
class Download:
    """A counted download, opened for streaming: the caller sends ``package`` and closes it."""

    package: store.Package
    filename: str  # what the subject's browser saves it as
    use: int  # which of the link's downloads this is


@dataclass(frozen=True)
class PackageLink:
    """A ready package as the status page lists it: until when, and how many downloads are left."""

    expires_at: datetime | None
    left: int | None  # None: no limit (or no link)


def downloadable(token: Token) -> Export:
    """The export behind a download token, if it can be served now (nothing is counted)."""
    export = db.session.get(Export, token.export_id) if token.export_id else None
    if export is None:
        raise DownloadProblem("invalid", 404)
    if export.status == "building":
        raise DownloadProblem("building", 404)
    if export.status != "ready" or package_size(export) is None:
        raise DownloadProblem("expired", 410)
    return export


def package_size(export: Export) -> int | None:
    """The stored package's size (None: it is gone); 503 while the export store cannot be reached."""
    try:
        return store.current().size(export.filename)
    except store.StoreError as exc:
        raise DownloadProblem("unavailable", 503) from exc


def check_link(raw: str) -> Export:
    """The link's first hop: it reaches a package that can be served now (nothing is counted)."""
    return downloadable(services.find_token(raw, "download"))


def peek(raw: str) -> int:
    """The package's size, for a HEAD or a refused ``Range`` request (nothing is counted)."""
    size = package_size(check_link(raw))
    if size is None:  # gone between the check and now
        raise DownloadProblem("expired", 410)
    return size


def take(raw: str) -> Download:
    """One complete download: the package opened, then counted and audited (the token row locked)."""
    token = services.find_token(raw, "download", lock=True)
    export = downloadable(token)
    package = _open_package(export)
    try:
        use = count_download(token, export)
    except DownloadProblem:
        package.close()
        raise
    return Download(package=package, filename=f"{token.dsr.reference}-data.zip", use=use)


def _open_package(export: Export) -> store.Package:
    try:
        package = store.current().open(export.filename)
    except store.StoreError as exc:
        raise DownloadProblem("unavailable", 503) from exc
    if package is None:
        raise DownloadProblem("expired", 410)
    return package


def count_download(token: Token, export: Export) -> int:
    """Count one complete download, in the statement that checks the limit (concurrent downloads cannot
    pass it); returns the use number. Audited."""
    use = (token.use_count or 0) + 1  # read under the row lock (find_token(lock=True)) before the update
    counted = db.session.execute(
        update(Token)
        .where(Token.id == token.id, (Token.max_uses.is_(None)) | (Token.use_count < Token.max_uses))
        .values(use_count=Token.use_count + 1, used_at=utcnow())
    )
    if rows_changed(counted) != 1:
        raise DownloadProblem("used", 410)
    db.session.execute(update(Export).where(Export.id == export.id).values(download_count=Export.download_count + 1))
    record_event(
        "export.downloaded",
        Actor.subject(),
        dsr=token.dsr,
        public=True,
        message="Your data was downloaded.",
        data={"export_id": export.id, "use": use},
    )
    return use


def package_links(dsr: DsrRequest) -> list[PackageLink]:
    """The request's ready packages with the downloads their links have left (the status page)."""
    if dsr.request_type != "access":
        return []
    links = []
    for export in db.session.execute(
        select(Export).where(Export.request_id == dsr.id, Export.status == "ready").order_by(Export.id)
    ).scalars():
        token = (
            db.session.execute(
                select(Token).where(Token.export_id == export.id, Token.purpose == "download").order_by(Token.id)
            )
            .scalars()
            .first()
        )
        left = None if token is None or token.max_uses is None else max(0, token.max_uses - token.use_count)
        links.append(PackageLink(expires_at=export.expires_at, left=left))
    return links
