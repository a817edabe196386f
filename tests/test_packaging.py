"""The wheel runs on its own: built from the checkout, installed in a fresh venv outside it, it migrates
an empty database and answers /readyz (templates, static files and migrations travel inside it)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_the_wheel_migrates_and_serves_outside_the_checkout(tmp_path, redis_url):
    dist, venv, work = tmp_path / "dist", tmp_path / "venv", tmp_path / "elsewhere"
    work.mkdir()
    pip = [sys.executable, "-m", "pip"]
    source = tmp_path / "source"  # a copy: setuptools builds in the tree it is given
    ignore = shutil.ignore_patterns(".venv", ".git", "instance", "build", "*.egg-info", "__pycache__", "test-artifacts")
    shutil.copytree(ROOT, source, ignore=ignore)
    subprocess.run([*pip, "wheel", "--no-deps", "-q", "-w", str(dist), str(source)], check=True, timeout=300)
    [wheel] = dist.glob("dsr_portal-*.whl")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], check=True, timeout=900)
    env = {
        "PATH": f"{venv / 'bin'}:{os.environ['PATH']}",
        "APP_ENV": "development",
        "SECRET_KEY": "wheel-test-" + "k" * 32,
        "DATABASE_URL": f"sqlite:///{work}/portal.db",
        "REDIS_URL": redis_url,
        "HOME": str(work),
    }
    flask = [str(venv / "bin" / "flask"), "--app", "wsgi"]
    upgraded = subprocess.run([*flask, "db", "upgrade"], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert upgraded.returncode == 0, upgraded.stderr[-3000:]
    port = _free_port()
    web = subprocess.Popen(
        [str(venv / "bin" / "gunicorn"), "-b", f"127.0.0.1:{port}", "-w", "1", "wsgi:app"], cwd=work, env=env
    )
    try:
        body, home = None, None
        for _ in range(100):
            try:
                body = urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2).read()
                home = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read()
                css = urllib.request.urlopen(f"http://127.0.0.1:{port}/static/css/site.css", timeout=2).read()
                break
            except OSError:
                time.sleep(0.2)
        assert body is not None and b'"ready"' in body, body
        assert b"/requests/new" in home and b":root" in css
        assert (work / "instance").is_dir() and not (ROOT / "elsewhere").exists()
    finally:
        web.terminate()
        web.wait(10)
