"""Where the time of a request goes while a heavy job runs: the profile beside a latency figure.

``Contention`` samples, in threads of the bench process, for as long as it is open:
- the machine's CPU: busy share of all cores (``/proc/stat``) and the mean run queue (``procs_running``);
- the web tier without the database: ``GET /healthz`` latency on the same gunicorn;
- the database without the web tier: one ``INSERT`` + ``COMMIT`` into a scratch table of the portal's
  database (the WAL flush an intake commit waits for);
- PostgreSQL only: what the active backends wait on (``pg_stat_activity``), the heavy job's backends
  (their query names ``platform_usage``) apart from the others (intake's).
Measured once with the intake load alone and once with the job too, the two profiles say whether a slower
intake is CPU, the web tier, or the database's writes.
"""

from __future__ import annotations

import collections
import threading
import time
import urllib.request

from bench.common import percentile

PERIOD = 0.05  # each probe once per 50 ms: light beside 4 intake clients


def _cpu() -> tuple[int, int]:
    with open("/proc/stat") as fh:
        fields = [int(v) for v in fh.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields), idle


def _running() -> int:
    with open("/proc/stat") as fh:
        for line in fh:
            if line.startswith("procs_running"):
                return int(line.split()[1])
    return 0


class Contention:
    def __init__(self, base_url: str, database_url: str, platform_url: str | None = None) -> None:
        self.base_url = base_url
        self.database_url = database_url
        # The platform's server, when it is not the portal's: its backends' waits are sampled there.
        self.platform_url = platform_url if platform_url and platform_url != database_url else None
        self.stop = threading.Event()
        self.healthz: list[float] = []
        self.commits: list[float] = []
        self.queue: list[int] = []
        self.waits: dict[str, collections.Counter] = {"job": collections.Counter(), "others": collections.Counter()}
        self.threads: list[threading.Thread] = []

    def __enter__(self) -> Contention:
        self.cpu_start = _cpu()
        for target in (self._probe_web, self._probe_commit, self._probe_queue, self._probe_waits):
            t = threading.Thread(target=target, daemon=True)
            t.start()
            self.threads.append(t)
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(30)
        total, idle = _cpu()
        spent = total - self.cpu_start[0]
        self.cpu_busy = 1 - (idle - self.cpu_start[1]) / max(spent, 1)

    def _every(self, work) -> None:
        while not self.stop.is_set():
            began = time.perf_counter()
            work()
            self.stop.wait(max(0.0, PERIOD - (time.perf_counter() - began)))

    def _probe_web(self) -> None:
        def once():
            start = time.perf_counter()
            with urllib.request.urlopen(self.base_url + "/healthz", timeout=30) as r:  # noqa: S310 - loopback
                r.read()
            self.healthz.append(time.perf_counter() - start)

        self._every(once)

    def _probe_queue(self) -> None:
        self._every(lambda: self.queue.append(_running()))

    def _connect(self, url: str | None = None):
        url = url or self.database_url
        if url.startswith("postgres"):
            import psycopg

            return psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://"))
        import sqlite3

        conn = sqlite3.connect(url.removeprefix("sqlite:///"), timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    def _probe_commit(self) -> None:
        conn = self._connect()
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS bench_probe (at REAL)")
            conn.commit()

            def once():
                start = time.perf_counter()
                conn.execute("INSERT INTO bench_probe (at) VALUES (1.0)")
                conn.commit()
                self.commits.append(time.perf_counter() - start)

            self._every(once)
        finally:
            conn.close()

    def _probe_waits(self) -> None:
        if not self.database_url.startswith("postgres"):
            return
        conns = [self._connect(url) for url in (self.database_url, self.platform_url) if url]
        for conn in conns:
            conn.autocommit = True
        try:

            def once():
                for conn in conns:
                    for query, kind, event in conn.execute(
                        "SELECT query, wait_event_type, wait_event FROM pg_stat_activity "
                        "WHERE state = 'active' AND pid <> pg_backend_pid() AND backend_type = 'client backend'"
                    ).fetchall():
                        if "bench_probe" in (query or ""):
                            continue  # the commit probe's own backend
                        who = "job" if "platform_usage" in (query or "") else "others"
                        self.waits[who][f"{kind}:{event}" if kind else "CPU"] += 1

            self._every(once)
        finally:
            for conn in conns:
                conn.close()

    def figures(self) -> dict:
        def ms(values: list[float], p: float) -> str:
            return f"{percentile(values, p) * 1000:.1f}" if values else "-"

        def share(counter: collections.Counter) -> str:
            n = sum(counter.values())
            return ", ".join(f"{k} {v / n:.0%}" for k, v in counter.most_common(4)) if n else "-"

        return {
            "cpu busy": f"{self.cpu_busy:.0%}",
            "run queue": f"{sum(self.queue) / max(len(self.queue), 1):.1f}",
            "healthz p50/p99 ms": f"{ms(self.healthz, 50)}/{ms(self.healthz, 99)}",
            "commit p50/p99 ms": f"{ms(self.commits, 50)}/{ms(self.commits, 99)}",
            "other backends wait": share(self.waits["others"]),
            "job backends wait": share(self.waits["job"]),
        }
