"""The embedded Redis requires a generated password, kept 0600 beside it, that every process finds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from app.redis_server import ensure_embedded_redis, redis_binary, stop_embedded_redis

ROOT = Path(__file__).resolve().parents[2]
ONCE = Retry(NoBackoff(), 0)  # redis-py retries a refused AUTH for seconds otherwise


@pytest.fixture
def redis_dir(tmp_path):
    directory = tmp_path / "redis"
    try:
        yield directory
    finally:
        stop_embedded_redis(directory)


def test_embedded_redis_refuses_clients_without_the_generated_password(redis_dir):
    url = ensure_embedded_redis(redis_dir)
    parts = urlsplit(url)
    password_file = redis_dir / "password"
    assert parts.password and parts.password == password_file.read_text().strip()
    assert len(parts.password) >= 32
    assert password_file.stat().st_mode & 0o077 == 0
    assert redis_dir.stat().st_mode & 0o077 == 0  # the dump holds every job: only this user reads it
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host=parts.hostname, port=parts.port, retry=ONCE).ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host=parts.hostname, port=parts.port, password="guess", retry=ONCE).ping()
    assert redis.Redis.from_url(url).ping()
    # The password is not on the server's command line, where any local user could read it.
    pid = (redis_dir / "redis.pid").read_text().strip()
    assert parts.password not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")


def test_another_process_finds_the_same_server_and_password(redis_dir):
    url = ensure_embedded_redis(redis_dir)
    code = (
        "import sys; from pathlib import Path; from app.redis_server import ensure_embedded_redis; "
        "print(ensure_embedded_redis(Path(sys.argv[1])))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(redis_dir)], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == url


def test_an_embedded_redis_started_without_a_password_is_replaced(redis_dir):
    """A server left running by an older version (no requirepass) is shut down, not reused."""
    import socket

    redis_dir.mkdir(parents=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    subprocess.run(
        [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--daemonize", "yes"],
        cwd=redis_dir,
        check=True,
    )
    old = redis.Redis(port=port, retry=ONCE)
    for _ in range(100):
        try:
            old.ping()
            break
        except redis.ConnectionError:
            import time

            time.sleep(0.05)
    (redis_dir / "port").write_text(str(port))
    url = ensure_embedded_redis(redis_dir)
    assert urlsplit(url).password
    with pytest.raises(redis.ConnectionError):
        old.ping()  # the password-less server is gone
    assert redis.Redis.from_url(url).ping()
