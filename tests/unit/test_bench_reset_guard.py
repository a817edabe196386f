"""A benchmark empties the databases it is given; never the operator's own (bench/common.py)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import bench.common as common

ROOT = Path(__file__).resolve().parents[2]


def test_the_operators_databases_are_read_from_the_environment_before_any_bench_sets_its_own():
    env = dict(
        os.environ,
        DATABASE_URL="postgresql://dsr@db.internal/dsr",
        PLATFORM_DATABASE_URL="postgresql://platform@db.internal/platform",
    )
    out = subprocess.run(
        [sys.executable, "-c", "import json, bench.common as c; print(json.dumps(sorted(c.OPERATOR_DATABASES)))"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert json.loads(out) == ["postgresql://dsr@db.internal/dsr", "postgresql://platform@db.internal/platform"]


def test_a_bench_refuses_to_delete_the_operators_sqlite_file(tmp_path, monkeypatch):
    operator = tmp_path / "portal.db"
    operator.write_bytes(b"the operator's data")
    monkeypatch.setattr(common, "OPERATOR_DATABASES", {f"sqlite:///{operator}"})
    env = {"DATABASE_URL": f"sqlite:///{operator}", "PLATFORM_DATABASE_URL": f"sqlite:///{tmp_path / 'p.db'}"}

    with pytest.raises(SystemExit, match="refusing to empty"):
        common.reset_database(env)
    assert operator.read_bytes() == b"the operator's data"


@pytest.mark.parametrize("which", ["DATABASE_URL", "PLATFORM_DATABASE_URL"])
def test_a_bench_refuses_to_drop_the_schema_of_the_operators_postgresql_database(monkeypatch, which):
    # Port 9 (discard) on loopback: were the guard to let it through, the connection would fail with a
    # driver error, not the refusal.
    operator = "postgresql://postgres@127.0.0.1:9/operator"
    monkeypatch.setattr(common, "OPERATOR_DATABASES", {operator})
    env = {"DATABASE_URL": "postgresql://postgres@127.0.0.1:9/bench", which: operator}

    with pytest.raises(SystemExit, match="refusing to empty"):
        common.reset_database(env)
