"""The benchmark script end to end on its smoke instance (real subprocesses, real limits)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_solvers.py"


@pytest.mark.slow
def test_bench_smoke_prints_json_and_table(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--instances",
            "XS",
            "--methods",
            "workset,cvxpy-clarabel",
            "--no-sequence",
            "--time-limit",
            "120",
            "--mem-gb",
            "8",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out.read_text())
    rows = {r["method"]: r for r in doc["results"]}
    assert set(rows) == {"workset", "cvxpy-clarabel"}
    ws = rows["workset"]
    assert ws["status"] == "optimal"
    assert ws["rel_diff"] <= 1e-6
    assert ws["max_violation"] <= 1e-6
    assert ws["peak_mb"] > 0 and ws["wall_s"] > 0
    assert "| XS | workset | optimal |" in proc.stdout


def test_a_worker_over_its_memory_limit_is_reported_not_fatal(tmp_path):
    sys.path.insert(0, str(SCRIPT.parent))
    import bench_solvers

    row = bench_solvers.run_isolated(["workset", "XS"], time_limit=60, mem_gb=0.05)
    assert row["status"].startswith(("out of memory", "failed"))
