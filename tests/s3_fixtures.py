"""A real S3 API for the tests: moto's server mode on a free loopback port, a fresh bucket per test, and a
TCP proxy in front of it that can cut uploads mid-way (the export store failing mid-upload).

boto3 talks HTTP to it exactly as to AWS (signing, multipart, server-side encryption headers); the
credentials are moto's dummies, set for this process and passed on to the processes tests start.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import threading

import pytest

S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",  # moto accepts any; never a real key
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_endpoint():
    """The base URL of a moto S3 server for the session (``S3_ENDPOINT_URL``)."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        pytest.skip("moto[server] is not installed (pip install -e '.[test]')")
    saved = {k: os.environ.get(k) for k in (*S3_ENV, "AWS_PROFILE", "AWS_SESSION_TOKEN")}
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ.update(S3_ENV)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def s3_client(endpoint: str):
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=S3_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=S3_ENV["AWS_SECRET_ACCESS_KEY"],
        region_name=S3_ENV["AWS_DEFAULT_REGION"],
        config=Config(s3={"addressing_style": "path"}),
    )


@pytest.fixture
def s3_bucket(s3_endpoint):
    """A new, empty bucket for one test: ``(client, bucket name)``."""
    client = s3_client(s3_endpoint)
    name = f"exports-{secrets.token_hex(6)}"
    client.create_bucket(Bucket=name)
    return client, name


def objects(client, bucket: str, prefix: str = "") -> dict[str, int]:
    listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"]: o["Size"] for o in listed}


class CuttingProxy:
    """A TCP proxy to the S3 server that, while ``cut_after`` is set, drops every connection once the
    client has sent that many bytes on it: an upload that dies mid-body, as when a store fails.
    ``cuts_left`` (None: no limit) stops it by itself after that many cuts."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.cut_after: int | None = None
        self.cuts_left: int | None = None
        self.cuts = 0
        self.lock = threading.Lock()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.closed:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=30)
        except OSError:
            conn.close()
            return
        budget = [self.cut_after]

        def pump(src: socket.socket, dst: socket.socket, counted: bool) -> None:
            with contextlib.suppress(OSError):
                while data := src.recv(65536):
                    if counted and budget[0] is not None:
                        if len(data) >= budget[0]:
                            if self._take_cut():
                                dst.sendall(data[: budget[0]])
                                break
                            budget[0] = None  # no cuts left: this connection is healthy again
                        else:
                            budget[0] -= len(data)
                    dst.sendall(data)
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    s.close()

        threading.Thread(target=pump, args=(upstream, conn, False), daemon=True).start()
        pump(conn, upstream, True)

    def _take_cut(self) -> bool:
        with self.lock:
            if self.cut_after is None or self.cuts_left == 0:
                return False
            if self.cuts_left is not None:
                self.cuts_left -= 1
            self.cuts += 1
            return True

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(OSError):
            self.sock.close()


@pytest.fixture
def cutting_proxy(s3_endpoint):
    proxy = CuttingProxy(int(s3_endpoint.rsplit(":", 1)[1]))
    yield proxy
    proxy.close()
