"""Staff sign-in against a Redis that answers reads but refuses writes (a demoted master after a
failover: READONLY; a full disk: MISCONF; maxmemory: OOM). Flask-Limiter falls back to memory on any
storage error, so the view runs; the throttle read its counters but could not record a failure, so a
wrong password answered 503 and a right one went on to the code step: an oracle with nothing counted.
A try is now counted before its secret is checked, and refused alike when that cannot be recorded."""

from __future__ import annotations

import subprocess
import time

import pytest
import redis

from tests.chaos.harness import free_port, redis_binary
from tests.factories import PASSWORD, make_staff


@pytest.fixture(scope="module")
def readonly_redis(tmp_path_factory):
    if redis_binary() is None:
        pytest.skip("no redis-server")
    port = free_port()
    proc = subprocess.Popen(
        [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(tmp_path_factory.mktemp("ro")), "--replicaof", "127.0.0.1", str(free_port())],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    conn = redis.Redis(port=port)
    for _ in range(100):
        try:
            conn.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.1)
    with pytest.raises(redis.ReadOnlyError):
        conn.set("x", "1")
    yield f"redis://127.0.0.1:{port}/0"
    proc.kill()
    proc.wait(10)


@pytest.fixture(autouse=True)
def _limiter_alive_again():
    """The limiter is one object per process and stays on its fallback across apps."""
    yield
    from app.extensions import limiter

    limiter._storage_dead = False


@pytest.fixture
def app_config(app_config, readonly_redis):
    return {**app_config, "REDIS_URL": readonly_redis, "RATELIMIT_STORAGE_URI": readonly_redis}


def test_staff_password_step_fails_closed_alike_when_redis_refuses_writes(client, app):
    user = make_staff(role="officer", email="ro.officer@staff.test", totp=True)
    wrong = client.post_form("/admin/login", {"email": user.email, "password": "not-the-password"})
    right = client.post_form("/admin/login", {"email": user.email, "password": PASSWORD})
    # Both fail closed the same way: nothing tells a guesser which password was right.
    assert wrong.status_code == 503
    assert (wrong.status_code, wrong.headers.get("Location")) == (right.status_code, right.headers.get("Location")), (
        f"wrong password: {wrong.status_code} {wrong.headers.get('Location')}; "
        f"right password: {right.status_code} {right.headers.get('Location')}"
    )
