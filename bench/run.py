"""Run every benchmark: ``python -m bench.run [--quick]`` (``make bench`` / ``make bench-quick``)."""

from __future__ import annotations

import importlib
import sys
import time

BENCHES = [
    "bench.bench_export",
    "bench.bench_queue",
    "bench.bench_dashboard",
    "bench.bench_intake",
    "bench.bench_platform",
    "bench.bench_downloads",
]


def main() -> int:
    quick = "--quick" in sys.argv
    failed = []
    for name in BENCHES:
        start = time.monotonic()
        print(f"\n### {name} {'(quick)' if quick else ''}", flush=True)
        try:
            module = importlib.import_module(name)
            module.main(*module.sizes(quick))
        except Exception as exc:
            print(f"{name} failed: {type(exc).__name__}: {exc}")
            failed.append(name)
        print(f"({name} took {time.monotonic() - start:.0f}s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
