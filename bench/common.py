"""Benchmark harness: an isolated database and Redis, measured child processes, and RESULTS.md rows.

Every figure is measured in a fresh child process (``python -m bench.child ...``) so that its peak
resident memory (``ru_maxrss`` from ``wait4``) is that process's own, and each product figure is printed
beside a baseline measured in the same run on the same database.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
RESULTS = ROOT / "bench" / "RESULTS.md"


# The operator's own databases, as this process found them before any bench set its own: reset_database
# drops a PostgreSQL schema outright, and refuses these.
OPERATOR_DATABASES = {os.environ[k] for k in ("DATABASE_URL", "PLATFORM_DATABASE_URL") if os.environ.get(k)}


def bench_env() -> dict[str, str]:
    """Environment for the app under benchmark (never the developer's own database)."""
    OUT.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    for key in list(env):
        if key.startswith(("DATABASE_URL", "PLATFORM_DATABASE_URL", "MAIL_", "STRIPE_")):
            env.pop(key)
    env["APP_ENV"] = "development"
    env["SECRET_KEY"] = "bench-secret-key"  # noqa: S105 - throwaway key for a local benchmark
    env["DATABASE_URL"] = os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{OUT / 'bench.db'}"
    if database_kind(env) == "sqlite":
        # The platform's data lives in its own database (PRODUCT.md): on SQLite its own file, so the
        # portal's writes (intake) and the platform's (erasure, the sweep) do not share one writer lock.
        env["PLATFORM_DATABASE_URL"] = f"sqlite:///{OUT / 'platform.db'}"
    elif os.environ.get("BENCH_PLATFORM_DATABASE_URL"):
        # PostgreSQL: by default one server holds both, as PLATFORM_DATABASE_URL's default does; a real
        # platform's database is a server of its own (its own WAL), which this sets.
        env["PLATFORM_DATABASE_URL"] = os.environ["BENCH_PLATFORM_DATABASE_URL"]
    env["EXPORT_DIR"] = str(OUT / "exports")
    env["RATELIMIT_ENABLED"] = "false"
    env["PYTHONPATH"] = str(ROOT)
    return env


def apply_env(env: dict[str, str]) -> None:
    os.environ.update(env)


def database_kind(env: dict[str, str]) -> str:
    return "postgresql" if env["DATABASE_URL"].startswith("postgres") else "sqlite"


def reset_database(env: dict[str, str]) -> None:
    """Empty schema at head: delete the SQLite files, or empty PostgreSQL's schemas; then migrate.
    Never the operator's own (``OPERATOR_DATABASES``)."""
    flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
    urls = {env["DATABASE_URL"], env.get("PLATFORM_DATABASE_URL", env["DATABASE_URL"])}
    if urls & OPERATOR_DATABASES:
        raise SystemExit(
            "refusing to empty a database named by DATABASE_URL or PLATFORM_DATABASE_URL: "
            "BENCH_DATABASE_URL and BENCH_PLATFORM_DATABASE_URL must name databases of the benchmark's own"
        )
    if database_kind(env) == "sqlite":
        for url in (env["DATABASE_URL"], env["PLATFORM_DATABASE_URL"]):
            path = url.removeprefix("sqlite:///")
            for suffix in ("", "-wal", "-shm"):  # WAL mode leaves two companions beside the file
                Path(path + suffix).unlink(missing_ok=True)
    else:
        # The benchmark's own database: emptied outright (a downgrade cannot undo what minimisation
        # removed, e.g. a mail body that 0005 made nullable).
        import psycopg

        for url in urls:
            with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
                conn.execute("DROP SCHEMA public CASCADE")
                conn.execute("CREATE SCHEMA public")
    subprocess.run([*flask, "db", "upgrade"], env=env, cwd=ROOT, check=True, capture_output=True)


def run_child(env: dict[str, str], *args: str) -> dict:
    """Run ``python -m bench.child ARGS``; return its JSON result plus its own ``peak_mb`` (wait4).

    The harness's own session transaction ends first: a read of an expired attribute after a commit
    begins one, and idle across the child it held PostgreSQL's xmin horizon back, so what a raw DELETE
    left could not be pruned until the erasure timed next did it (2026-12-04: 10-17 s idle, the
    erasure's count 3.0 s against 0.6 s)."""
    import tempfile

    from flask import has_app_context

    if has_app_context():
        from app.extensions import db

        db.session.commit()

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen([sys.executable, "-m", "bench.child", *args], env=env, cwd=ROOT, stdout=out, stderr=err)
        _pid, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise RuntimeError(f"bench child {args} failed:\n{err.read().decode()[-3000:]}")
        result = json.loads(out.read().decode().strip().splitlines()[-1])
    # The child's own peak unless it measured one itself (a forked work horse's: the child's ru_maxrss
    # starts at this harness's peak, carried over by execve).
    result.setdefault("peak_mb", round(usage.ru_maxrss / 1024, 1))
    return result


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    mem = ""
    try:
        with open("/proc/meminfo") as fh:
            mem = f", {int(fh.readline().split()[1]) // 1024 // 1024} GiB"
    except OSError:
        pass
    return f"{os.cpu_count()} cores {cpu}{mem}, Python {platform.python_version()}"


def databases(env: dict[str, str]) -> str:
    """The database kind, and where the platform's data is when that is not the portal's own server."""
    from sqlalchemy.engine import make_url

    kind = database_kind(env)
    portal, plat = make_url(env["DATABASE_URL"]), make_url(env.get("PLATFORM_DATABASE_URL", env["DATABASE_URL"]))
    if kind != "postgresql" or plat == portal:
        return kind
    if plat.host != portal.host:
        return f"{kind}, the platform on a server of its own"
    if plat.port != portal.port:
        return f"{kind}, the platform on a second server on the same host"
    return f"{kind}, the platform in a database of its own"


def ratio(value: float, base: float) -> str:
    return f"{value / base:.2f}x" if base else "n/a"


def table(headers: list[str], rows: list[list]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows, strict=False)]
    line = " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=False))
    sep = "-+-".join("-" * w for w in widths)
    body = "\n".join(" | ".join(str(x).ljust(w) for x, w in zip(r, widths, strict=False)) for r in rows)
    return f"{line}\n{sep}\n{body}"


def record(name: str, env: dict[str, str], headers: list[str], rows: list[list], verdict: str) -> None:
    """Print the table and append a dated section to RESULTS.md."""
    print(f"\n== {name} ({databases(env)}) ==")
    print(table(headers, rows))
    print(verdict)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    md = [
        f"\n### {name} — {stamp} — {databases(env)} — {machine()}\n",
        "| " + " | ".join(headers) + " |",
        "|" + "---|" * len(headers),
    ]
    md += ["| " + " | ".join(str(x) for x in r) + " |" for r in rows]
    md.append(f"\n{verdict}\n")
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n\nAppended by `make bench` / `make bench-quick`.\n")
    with RESULTS.open("a") as fh:
        fh.write("\n".join(md))


class Timer:
    def __enter__(self):
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.start


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


@contextlib.contextmanager
def gunicorn(env: dict[str, str], workers: int, extra: tuple[str, ...] = ()):
    """``gunicorn wsgi:app`` on a free loopback port (``extra``: more options, e.g. a worker class);
    yields its base URL once /healthz answers."""
    import requests

    port = free_port()
    proc = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "gunicorn"), "-w", str(workers), *extra, "-b", f"127.0.0.1:{port}", "wsgi:app"],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                requests.get(base + "/healthz", timeout=1)
                break
            except requests.RequestException:
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        proc.wait(20)
