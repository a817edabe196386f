"""Where access packages live: one small interface, a directory or an S3 bucket chosen by config.

The one place that knows where a package is. The writer assembles a package on this process's own
disk (``staging_dir``) and hands the finished file to ``publish``; the download view streams it back
through ``open`` (so every download is counted and audited by the app, never served around it); expiry,
purge and erasure remove it through ``delete``.

``EXPORT_STORAGE_URL`` picks the backend: unset or a path, a directory (``EXPORT_DIR``, INTERFACE.md's
name, is the default), where a finished package is ``os.replace``d from its hidden ``.part`` name, so a
crash never leaves a file that could be served; ``s3://bucket/prefix``, an S3 bucket through boto3
(region and credentials from the usual ``AWS_*`` variables, ``S3_ENDPOINT_URL`` for an S3-compatible
store), where the package is uploaded from the finished local file in parts (``upload_file`` reads each
part from disk as it goes: memory stays flat whatever the size), with server-side encryption, and the
object exists only once the upload is complete (S3 makes a multipart upload visible on completion only).
With S3, web and workers need no shared disk: ``EXPORT_DIR`` is then only each worker's scratch space.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol, cast

from flask import current_app

from app.config import parse_storage_url

if TYPE_CHECKING:
    from boto3.s3.transfer import TransferConfig
    from botocore.exceptions import ClientError
    from botocore.response import StreamingBody
    from typing_extensions import TypeIs

# A boto3 S3 client (boto3 ships no type information, so this is what mypy can know of it).
S3Client = Any

# Multipart uploads: parts of 8 MiB (S3 wants at least 5 MiB but the last), four in flight at once.
PART_BYTES = 8 * 1024 * 1024
PART_CONCURRENCY = 4
SERVER_SIDE_ENCRYPTION = "AES256"


class StoreError(Exception):
    """The export store could not do what was asked; ``transient`` when trying again later may work
    (the store unreachable, slow or failing), not when it never will (no such bucket, access denied)."""

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass
class Package:
    """A stored package opened for reading: its size and a binary stream of its bytes (close it); ``path``
    is the file's real path inside the export directory (a directory store only), which a front server
    may send instead (``DOWNLOAD_ACCEL``)."""

    file: BinaryIO
    size: int
    path: Path | None = None

    def close(self) -> None:
        self.file.close()


class ExportStore(Protocol):
    """What the writer, the download view and the cleanup jobs need from wherever packages live."""

    description: str  # for the start-up line: never a secret

    def staging_dir(self) -> Path:
        """The local directory where this process assembles a package before ``publish``."""

    def publish(self, staged: Path, filename: str, sha256: str) -> int:
        """Make the finished file ``staged`` the package ``filename``, complete or not at all; the
        staged file is gone afterwards. Returns the stored size in bytes."""

    def size(self, filename: str | None) -> int | None:
        """The package's size, or None when there is none by that name."""

    def open(self, filename: str | None) -> Package | None:
        """The package for streaming, or None when there is none by that name."""

    def delete(self, filename: str | None) -> bool:
        """Remove the package and any half-made part of it; True when a package was there."""

    def discard_partial(self, filename: str) -> None:
        """Remove what a killed writer or upload left of ``filename``."""

    def check(self) -> str | None:
        """For ``/readyz``: None when the store can take a package now, else a short code (never a
        secret: no bucket, path or credential)."""


def valid_name(filename: str | None) -> TypeIs[str]:
    """Only plain file names of ours: no path, nothing hidden (``.part`` names are never packages)."""
    return bool(filename and Path(filename).name == filename and not filename.startswith("."))


class DirectoryStore:
    """Packages as files in one directory, private to this service (0600)."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.description = f"directory {self.directory}"

    def staging_dir(self) -> Path:
        self.directory.mkdir(parents=True, exist_ok=True)
        return self.directory  # the same file system: the rename below is atomic

    def path_of(self, filename: str | None) -> Path | None:
        return self.directory / filename if valid_name(filename) else None

    def publish(self, staged: Path, filename: str, sha256: str) -> int:
        final = self.path_of(filename)
        if final is None:
            raise StoreError(f"not a package name: {filename!r}", transient=False)
        os.replace(staged, final)
        return final.stat().st_size

    def size(self, filename: str | None) -> int | None:
        path = self.path_of(filename)
        return path.stat().st_size if path is not None and path.is_file() else None

    def open(self, filename: str | None) -> Package | None:
        path = self.path_of(filename)
        if path is None:
            return None
        real = Path(os.path.realpath(path))
        if real.parent != Path(os.path.realpath(self.directory)):
            return None  # a link out of the directory is never a package of ours
        try:
            fh = open(real, "rb")  # noqa: SIM115 - closed by the response that streams it
        except FileNotFoundError:
            return None
        return Package(file=fh, size=os.fstat(fh.fileno()).st_size, path=real)

    def delete(self, filename: str | None) -> bool:
        path = self.path_of(filename)
        if path is None:
            return False
        self.discard_partial(path.name)  # the name itself: path_of only answers for a valid one
        existed = path.exists()
        path.unlink(missing_ok=True)
        return existed

    def discard_partial(self, filename: str) -> None:
        (self.directory / f".{filename}.part").unlink(missing_ok=True)

    def check(self) -> str | None:
        """The directory is there (or made, as the first export would make it) and takes a file."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError:
            return "missing"
        try:
            with tempfile.NamedTemporaryFile(dir=self.directory, prefix=".ready-"):
                pass  # a hidden name: never a package, and removed on close
        except OSError:
            return "not_writable"
        return None


class S3Store:
    """Packages as objects under ``s3://bucket/prefix/``, encrypted at rest by the store."""

    def __init__(
        self,
        bucket: str,
        prefix: str,
        *,
        client: S3Client,
        staging: str | os.PathLike[str],
        transfer: TransferConfig | None = None,
        endpoint_url: str | None = None,
    ) -> None:
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.client = client
        self.endpoint_url = endpoint_url
        self.staging = Path(staging)
        self.transfer = transfer
        self.description = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"

    def key(self, filename: str) -> str:
        return f"{self.prefix}/{filename}" if self.prefix else filename

    def staging_dir(self) -> Path:
        self.staging.mkdir(parents=True, exist_ok=True)
        return self.staging

    def publish(self, staged: Path, filename: str, sha256: str) -> int:
        from boto3.s3.transfer import TransferConfig

        if not valid_name(filename):
            raise StoreError(f"not a package name: {filename!r}", transient=False)
        config = self.transfer or TransferConfig(
            multipart_threshold=PART_BYTES, multipart_chunksize=PART_BYTES, max_concurrency=PART_CONCURRENCY
        )
        extra = {
            "ServerSideEncryption": SERVER_SIDE_ENCRYPTION,
            "ContentType": "application/zip",
            "Metadata": {"sha256": sha256},
        }
        size = staged.stat().st_size
        # upload_file returns once S3 has acknowledged the whole object (PutObject, or the completed
        # multipart upload): from then on every reader sees all of it (S3 reads after writes).
        with _s3_errors("upload"):
            self.client.upload_file(str(staged), self.bucket, self.key(filename), ExtraArgs=extra, Config=config)
        staged.unlink(missing_ok=True)
        return size

    def _head(self, filename: str | None) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        if not valid_name(filename):
            return None
        try:
            with _s3_errors("look up"):
                return self.client.head_object(Bucket=self.bucket, Key=self.key(filename))
        except StoreError as exc:
            cause = exc.__cause__
            if isinstance(cause, ClientError) and _status(cause) == 404:
                return None
            raise

    def size(self, filename: str | None) -> int | None:
        head = self._head(filename)
        return int(head["ContentLength"]) if head is not None else None

    def open(self, filename: str | None) -> Package | None:
        from botocore.exceptions import ClientError

        if not valid_name(filename):
            return None
        try:
            with _s3_errors("download"):
                got = self.client.get_object(Bucket=self.bucket, Key=self.key(filename))
        except StoreError as exc:
            cause = exc.__cause__
            if isinstance(cause, ClientError) and _status(cause) == 404:
                return None
            raise
        # _Body reads like a binary file (read, close, iteration): all that streaming and copying use.
        return Package(file=cast(BinaryIO, _Body(got["Body"])), size=int(got["ContentLength"]))

    def delete(self, filename: str | None) -> bool:
        if not valid_name(filename):
            return False
        self.discard_partial(filename)
        existed = self._head(filename) is not None
        with _s3_errors("delete"):
            self.client.delete_object(Bucket=self.bucket, Key=self.key(filename))
        return existed

    def discard_partial(self, filename: str) -> None:
        """The local part, and any multipart upload a killed worker left open (invisible, but stored)."""
        (self.staging / f".{filename}.part").unlink(missing_ok=True)
        key = self.key(filename)
        with _s3_errors("list uploads"):
            found = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=key).get("Uploads", [])
        for upload in found:
            if upload.get("Key") == key:
                with _s3_errors("abort upload"):
                    self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload["UploadId"])

    def check(self) -> str | None:
        """A HeadBucket through a client that gives up after one attempt of ``PROBE_TIMEOUT`` seconds
        (``/readyz`` must answer before the load balancer's own timeout, whatever the store does)."""
        from botocore.exceptions import ClientError

        try:
            with _s3_errors("check"):
                s3_client(self.endpoint_url, probe=True).head_bucket(Bucket=self.bucket)
        except StoreError as exc:
            cause = exc.__cause__
            if isinstance(cause, ClientError):
                return {404: "bucket_missing", 403: "access_denied"}.get(_status(cause), "store_error")
            return "unreachable" if exc.transient else "misconfigured"
        return None

    def list_uploads(self) -> list[str]:
        """Keys of open multipart uploads under the prefix (for tests and operators)."""
        with _s3_errors("list uploads"):
            found = self.client.list_multipart_uploads(Bucket=self.bucket, Prefix=self.prefix).get("Uploads", [])
        return [u["Key"] for u in found]


class _Body:
    """botocore's StreamingBody as the binary file werkzeug's ``wrap_file`` reads in blocks."""

    def __init__(self, body: StreamingBody) -> None:
        self.body = body

    def read(self, size: int = -1) -> bytes:
        with _s3_errors("download"):
            return self.body.read(None if size is None or size < 0 else size)

    def close(self) -> None:
        self.body.close()

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(1 << 16):
            yield chunk


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)


TRANSIENT_CODES = {
    "SlowDown",
    "RequestTimeout",
    "Throttling",
    "ThrottlingException",
    "InternalError",
    "ServiceUnavailable",
}


@contextlib.contextmanager
def _s3_errors(doing: str) -> Iterator[None]:
    """botocore's and boto3's errors as ``StoreError``, transient when the store may answer later."""
    from boto3.exceptions import S3UploadFailedError
    from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
    from botocore.exceptions import ConnectionError as BotoConnectionError

    try:
        yield
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code") or "")
        transient = _status(exc) >= 500 or code in TRANSIENT_CODES
        raise StoreError(f"S3 {doing} failed: {code or _status(exc)}", transient=transient) from exc
    except S3UploadFailedError as exc:
        cause = exc.__cause__ or exc.__context__
        transient = isinstance(cause, (BotoConnectionError, HTTPClientError)) or (
            isinstance(cause, ClientError) and (_status(cause) >= 500 or _status(cause) == 0)
        )
        raise StoreError(f"S3 {doing} failed: {type(cause or exc).__name__}", transient=transient) from exc
    except (BotoConnectionError, HTTPClientError) as exc:
        raise StoreError(f"S3 {doing} failed: {type(exc).__name__}", transient=True) from exc
    except BotoCoreError as exc:  # no credentials, no region, a bad parameter: trying again will not help
        raise StoreError(f"S3 {doing} failed: {type(exc).__name__}", transient=False) from exc


# --- which store ---------------------------------------------------------------------------------------


# The readiness probe's client: one attempt, a short timeout (the jobs' client waits and retries).
PROBE_TIMEOUT = 2

_clients: dict[tuple[int, str | None, bool], S3Client] = {}


def s3_client(endpoint_url: str | None, *, probe: bool = False) -> S3Client:
    """One boto3 client per process and endpoint (never shared across a fork: rq's work horses and
    gunicorn's workers each make their own). Region and credentials: boto3's usual chain. ``probe``:
    the client ``/readyz`` asks, which gives up after one attempt of ``PROBE_TIMEOUT`` seconds."""
    key = (os.getpid(), endpoint_url, probe)
    client = _clients.get(key)
    if client is None:
        import boto3
        from botocore.config import Config

        config = Config(
            connect_timeout=PROBE_TIMEOUT if probe else 5,
            read_timeout=PROBE_TIMEOUT if probe else 60,
            retries={"total_max_attempts": 1, "mode": "standard"} if probe else {"max_attempts": 3, "mode": "standard"},
            # S3-compatible stores at their own address (MinIO, moto, Ceph) answer path-style requests.
            s3={"addressing_style": "path"} if endpoint_url else {},
        )
        client = boto3.session.Session().client("s3", endpoint_url=endpoint_url or None, config=config)
        _clients[key] = client
    return client


def from_config(cfg: Mapping[str, Any]) -> ExportStore:
    url = cfg.get("EXPORT_STORAGE_URL") or cfg["EXPORT_DIR"]
    kind, where, prefix = parse_storage_url(str(url))
    if kind == "s3":
        endpoint = cfg.get("S3_ENDPOINT_URL")
        return S3Store(where, prefix, client=s3_client(endpoint), staging=cfg["EXPORT_DIR"], endpoint_url=endpoint)
    return DirectoryStore(where)


def current() -> ExportStore:
    """The store the running app is configured with (cheap: the S3 client is made once per process)."""
    return from_config(current_app.config)


def delete(filename: str | None) -> bool:
    """Remove a package (and any half-made part of it) from the configured store."""
    return current().delete(filename)
