"""Benchmark the convex solves: this project's paths against cvxpy + SCS and cvxpy + Clarabel.

    python benchmarks/bench_solvers.py                      # S, M, L and the warm-start run
    python benchmarks/bench_solvers.py --instances S --no-sequence --json out.json

Instances (seed 0): ``X``, ``y`` standard Gaussian, patterns of P Gaussian directions
(deduplicated), ``beta = 0.1 * max_i ||X^T D_i y||``, squared loss, no biases.

- S: n=500, d=10, P=64;  M: n=1000, d=20, P=50;  L: n=5000, d=50, P=200.

Every method runs in its own subprocess under an address-space limit (``--mem-gb``, 16)
and a wall-clock limit (``--time-limit``, 600 s); one that does not finish is reported as
such. Columns: wall time (the solve, in the subprocess, without data generation),
iterations, objective, maximum cone violation over all ``2Pn`` rows (relative, as
``ConvexSolution.max_violation``), the duality gap the solver certifies, the relative
difference to the reference (cvxpy + Clarabel at 1e-8 when it ran), and the subprocess's
peak resident memory.

``firstorder`` (the PyTorch augmented-Lagrangian solver, on a GPU when torch sees one)
runs until its certified gap is within 1e-6 or ``--firstorder-time-limit`` (120 s), and
reports the certified bracket it reached either way.

The warm-start run trains a two-layer ReLU network (full-batch gradient descent on
``1/2||yhat - y||^2 + beta/2 ||theta||^2``), takes snapshots, and solves each snapshot's
program (own patterns plus 50 sampled) cold and seeded with the previous snapshot's
solution, in ``--sequence-repeats`` passes (default 3; the speedup is their median).

Prints one JSON document, then a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

INSTANCES = {
    "XS": (100, 5, 16),  # smoke test only
    "S": (500, 10, 64),
    "M": (1000, 20, 50),
    "L": (5000, 50, 200),
}
METHODS = ("workset", "workset-scs", "scs-full", "firstorder", "cvxpy-scs", "cvxpy-clarabel")
REFERENCE = "cvxpy-clarabel"


def make_instance(n: int, d: int, P: int, seed: int = 0):
    """The benchmark problem and its pattern set."""
    from lightning_relucvx import patterns as pt
    from lightning_relucvx.problem import Problem

    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = rng.standard_normal(n)
    pats = pt.unique(pt.pattern_of(X, rng.standard_normal((P, d))))
    beta = 0.1 * float(np.max(np.linalg.norm((pats * y[None, :]) @ X, axis=1)))
    return Problem.create(X, y, beta), pats


def _solver(method: str):
    from lightning_relucvx.solvers import make_solver

    if method == "workset":
        return make_solver("workset", inner="clarabel"), 1e-6
    if method == "workset-scs":
        return make_solver("workset", inner="scs"), 1e-6
    if method == "scs-full":
        return make_solver("scs"), 1e-6
    if method == "firstorder":  # a GPU when torch sees one; runs to its gap or the limit
        return make_solver("firstorder", device="auto"), 1e-6
    if method == "cvxpy-scs":
        return make_solver("cvxpy", solver="SCS"), 1e-6
    if method == "cvxpy-clarabel":
        return make_solver("cvxpy", solver="CLARABEL"), 1e-8
    raise ValueError(f"method: unknown {method!r}")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_worker(method: str, instance: str, time_limit: float) -> dict:
    """One solve, in this process; returns the row of the table."""
    n, d, P = INSTANCES[instance]
    problem, pats = make_instance(n, d, P)
    solver, eps = _solver(method)
    t0 = time.perf_counter()
    res = solver.solve(problem, pats, eps=eps, time_limit=time_limit)
    wall = time.perf_counter() - t0
    return {
        "instance": instance,
        "method": method,
        "backend": res.backend,
        "status": res.status,
        "wall_s": wall,
        "iterations": res.iterations,
        "objective": res.objective,
        "max_violation": res.solution.max_violation(problem.Xa),
        "duality_gap": res.duality_gap,
        "peak_mb": _peak_mb(),
        "P": int(pats.shape[0]),
        "rounds": res.info.get("rounds"),
        "working_blocks": res.info.get("working_blocks"),
        "working_rows": res.info.get("working_rows"),
    }


def _snapshots(n=1000, d=20, width=50, steps=400, every=40, first=200, seed=1):
    """Weights of a real training run: full-batch GD on the exact objective."""
    import torch

    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = np.sin(X @ rng.standard_normal(d) / np.sqrt(d) * 2) + 0.1 * rng.standard_normal(n)
    from lightning_relucvx import patterns as pt

    pats = pt.unique(pt.pattern_of(X, rng.standard_normal((200, d))))
    beta = 0.1 * float(np.max(np.linalg.norm((pats * y[None, :]) @ X, axis=1)))
    torch.manual_seed(seed)
    Xt, yt = torch.tensor(X), torch.tensor(y)
    W1 = torch.nn.Parameter(torch.randn(width, d, dtype=torch.float64) / np.sqrt(d))
    w2 = torch.nn.Parameter(torch.randn(width, dtype=torch.float64) / np.sqrt(width))
    opt = torch.optim.SGD([W1, w2], lr=2e-4)
    snaps = []
    for step in range(1, steps + 1):
        opt.zero_grad()
        yhat = torch.relu(Xt @ W1.T) @ w2
        loss = 0.5 * ((yhat - yt) ** 2).sum() + 0.5 * beta * (W1.pow(2).sum() + w2.pow(2).sum())
        loss.backward()
        opt.step()
        if step >= first and step % every == 0:
            snaps.append((step, W1.detach().numpy().copy(), w2.detach().numpy().copy()))
    return X, y, beta, snaps


def run_sequence(method: str, repeats: int = 1) -> dict:
    """Solve the snapshots of one training run cold and warm (seeded by the previous one),
    ``repeats`` times; the speedup is the median of the repeats' ratios (the machine is
    shared, so one pass can be disturbed)."""
    passes = [_sequence_pass(method) for _ in range(repeats)]
    return {
        "method": method,
        "snapshots": passes[0]["snapshots"],
        "cold_total_s": passes[0]["cold_total_s"],
        "warm_total_s": passes[0]["warm_total_s"],
        "passes": [{k: p[k] for k in ("cold_total_s", "warm_total_s", "speedup")} for p in passes],
        "speedup": float(np.median([p["speedup"] for p in passes])),
        "peak_mb": _peak_mb(),
    }


def _sequence_pass(method: str) -> dict:
    """One pass over the snapshots: each solved cold, then seeded."""
    from lightning_relucvx import patterns as pt
    from lightning_relucvx.problem import Problem

    X, y, beta, snaps = _snapshots()
    solver, eps = _solver(method)
    # the working-set solver ignores seeds unless asked (they did not pay off; see README)
    seeded = solver
    if hasattr(solver, "use_warm_start"):
        seeded = _solver(method)[0]
        seeded.use_warm_start = True
    sampled = pt.sample(X, 50, seed=0)
    rows = []
    prev = None
    cold_total = warm_total = 0.0
    for step, W1, w2 in snaps:
        problem = Problem.create(X, y, beta, W1=W1, w2=w2)
        pats = pt.combine(pt.from_weights(problem.Xa, W1, w2), sampled)
        t0 = time.perf_counter()
        cold = solver.solve(problem, pats, eps=eps)
        t_cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        warm = seeded.solve(problem, pats, eps=eps, warm_start=prev) if prev else cold
        t_warm = time.perf_counter() - t0 if prev else t_cold
        prev = warm.solution
        if len(rows) > 0:  # the first snapshot has nothing to start from
            cold_total += t_cold
            warm_total += t_warm
        rows.append(
            {
                "step": step,
                "P": int(pats.shape[0]),
                "cold_s": t_cold,
                "warm_s": t_warm,
                "cold_iterations": cold.iterations,
                "warm_iterations": warm.iterations,
                "cold_objective": cold.objective,
                "warm_objective": warm.objective,
                "warm_status": warm.status,
                "warm_max_violation": warm.solution.max_violation(problem.Xa),
            }
        )
    return {
        "snapshots": rows,
        "cold_total_s": cold_total,
        "warm_total_s": warm_total,
        "speedup": cold_total / warm_total if warm_total > 0 else float("nan"),
    }


def _limits(mem_gb: float):
    def apply() -> None:
        cap = int(mem_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    return apply


def run_isolated(args: list[str], time_limit: float, mem_gb: float) -> dict:
    """Run this script as a worker in a subprocess under memory and time limits."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "out.json")
        cmd = [sys.executable, os.path.abspath(__file__), "--worker", *args, "--out", out]
        cmd += ["--time-limit", str(time_limit)]
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(
                cmd,
                preexec_fn=_limits(mem_gb),
                timeout=time_limit + 30,
                capture_output=True,
                text=True,
            )
        except subprocess.TimeoutExpired:
            return {"status": f"not finished in {time_limit:.0f} s", "wall_s": None}
        wall = time.perf_counter() - t0
        if proc.returncode != 0 or not os.path.exists(out):
            err = (proc.stderr or "").strip().splitlines()
            last = err[-1] if err else f"exit {proc.returncode}"
            mem = "MemoryError" in (proc.stderr or "") or proc.returncode in (-9, 137)
            why = f"out of memory (> {mem_gb:g} GB)" if mem else "failed"
            return {"status": why, "error": last[:300], "wall_s": wall}
        with open(out) as fh:
            return json.load(fh)


def _fmt(v, spec: str) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "-"
    return format(v, spec)


def table(rows: list[dict], sequence: list[dict]) -> str:
    lines = [
        "| inst | method | status | wall s | iters | objective | max viol | gap | rel diff "
        "| peak MB |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['instance']} | {r['method']} | {r['status']} | {_fmt(r.get('wall_s'), '.2f')} "
            f"| {_fmt(r.get('iterations'), 'd')} | {_fmt(r.get('objective'), '.8g')} "
            f"| {_fmt(r.get('max_violation'), '.1e')} | {_fmt(r.get('duality_gap'), '.1e')} "
            f"| {_fmt(r.get('rel_diff'), '.1e')} | {_fmt(r.get('peak_mb'), '.0f')} |"
        )
    for s in sequence:
        if "snapshots" not in s:
            lines.append(f"\nwarm-start run ({s.get('method')}): {s.get('status')}")
            continue
        passes = s.get("passes") or [s]
        lines.append(
            f"\nwarm-start run ({s['method']}, {len(s['snapshots'])} snapshots, first excluded, "
            f"{len(passes)} pass(es)): speedup {s['speedup']:.2f}x (median); "
            + "; ".join(
                f"cold {p['cold_total_s']:.2f} s, warm {p['warm_total_s']:.2f} s, "
                f"{p['speedup']:.2f}x"
                for p in passes
            )
        )
        lines.append("\nfirst pass:")
        lines.append("\n| step | P | cold s | warm s | cold iters | warm iters | objective diff |")
        lines.append("|---:|---:|---:|---:|---:|---:|---:|")
        for r in s["snapshots"]:
            diff = abs(r["warm_objective"] - r["cold_objective"]) / abs(r["cold_objective"])
            lines.append(
                f"| {r['step']} | {r['P']} | {r['cold_s']:.2f} | {r['warm_s']:.2f} "
                f"| {r['cold_iterations']} | {r['warm_iterations']} | {diff:.1e} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--instances", default="S,M,L")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--time-limit", type=float, default=600.0)
    ap.add_argument("--mem-gb", type=float, default=16.0)
    ap.add_argument("--firstorder-time-limit", type=float, default=120.0)
    ap.add_argument("--no-sequence", action="store_true")
    ap.add_argument("--sequence-method", default="workset")
    ap.add_argument("--sequence-repeats", type=int, default=3)
    ap.add_argument("--json", help="also write the JSON document here")
    ap.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)

    if a.worker:
        if a.worker[0] == "sequence":
            row = run_sequence(a.worker[1], int(a.worker[2]) if len(a.worker) > 2 else 1)
        else:
            row = run_worker(a.worker[0], a.worker[1], a.time_limit)
        with open(a.out, "w") as fh:
            json.dump(row, fh)
        return 0

    rows = []
    for inst in a.instances.split(","):
        inst_rows = []
        for method in a.methods.split(","):
            limit = a.time_limit
            if method == "firstorder":  # it reports its certified bracket at the limit
                limit = min(limit, a.firstorder_time_limit)
            r = run_isolated([method, inst], limit, a.mem_gb)
            r.setdefault("instance", inst)
            r.setdefault("method", method)
            inst_rows.append(r)
            print(f"# {inst} {method}: {r['status']} {r.get('wall_s')}", file=sys.stderr)
        ref = next((r for r in inst_rows if r["method"] == REFERENCE and "objective" in r), None)
        for r in inst_rows:
            if ref is not None and "objective" in r:
                r["rel_diff"] = abs(r["objective"] - ref["objective"]) / abs(ref["objective"])
        rows += inst_rows
    sequence = []
    if not a.no_sequence:
        s = run_isolated(
            ["sequence", a.sequence_method, str(a.sequence_repeats)], a.time_limit, a.mem_gb
        )
        s.setdefault("method", a.sequence_method)
        sequence.append(s)
    doc = {
        "command": " ".join([os.path.basename(sys.executable), *sys.argv]),
        "reference": REFERENCE,
        "results": rows,
        "sequence": sequence,
    }
    text = json.dumps(doc, indent=1, default=float)
    if a.json:
        with open(a.json, "w") as fh:
            fh.write(text)
    print(text)
    print()
    print(table(rows, sequence))
    return 0


if __name__ == "__main__":
    sys.exit(main())
