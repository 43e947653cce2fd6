"""The first-order solver (augmented Lagrangian + FISTA in PyTorch): every certificate it
reports brackets the optimum, and it agrees with SCS on the full conic form."""

from __future__ import annotations

import numpy as np
import pytest
from test_workset import small

from lightning_relucvx import core
from lightning_relucvx.problem import Problem
from lightning_relucvx.solvers import make_solver


def reference(problem, pats) -> float:
    return make_solver("cvxpy", solver="CLARABEL").solve(problem, pats, eps=1e-9).objective


@pytest.mark.parametrize(
    ("loss", "output_bias"), [("squared", False), ("squared", True), ("logistic", True)]
)
def test_every_certificate_brackets_the_optimum(loss, output_bias):
    """After each multiplier update the point is exactly feasible and its dual bound is
    valid, long before the method has converged."""
    problem, pats = small(60, 4, 12, seed=3, loss=loss, output_bias=output_bias)
    ref = reference(problem, pats)
    res = make_solver("firstorder", device="cpu", max_iters=3000, check_every=300).solve(
        problem, pats, eps=1e-9
    )
    hist = res.info["history"]
    assert len(hist) >= 5
    tol = 1e-9 * max(1.0, abs(ref))
    for h in hist:
        assert h["lower_bound"] - tol <= ref <= h["objective"] + tol, h
    assert hist[0]["relative_gap"] > 10 * hist[-1]["relative_gap"]  # it converges
    assert res.solution.max_violation(problem.Xa) <= 1e-12
    assert res.objective == pytest.approx(res.solution.objective(problem), rel=1e-12)
    assert res.duality_gap == pytest.approx(res.objective - res.dual_objective)
    assert res.status == "max_iters"  # 1e-9 is out of reach in 3,000 iterations: said so


def test_reaches_its_gap_tolerance_and_agrees_with_scs():
    problem, pats = small(120, 6, 24)
    full = make_solver("scs").solve(problem, pats, eps=1e-7)
    res = make_solver("firstorder", device="cpu", gap_tol=1e-3).solve(problem, pats)
    assert res.status == "optimal"
    assert res.duality_gap <= 1e-3 * res.objective
    tol = 1e-6 * full.objective  # SCS's own accuracy
    assert res.dual_objective - tol <= full.objective <= res.objective + tol


def test_a_warm_start_is_used_and_the_bracket_still_holds():
    problem, pats = small(80, 5, 16, seed=2)
    ref = reference(problem, pats)
    opt = make_solver("workset").solve(problem, pats, eps=1e-8).solution
    solver = make_solver("firstorder", device="cpu", max_iters=1, check_every=1)
    cold = solver.solve(problem, pats, eps=1e-9)
    warm = solver.solve(problem, pats, eps=1e-9, warm_start=opt)
    # one step from the optimum stays close to it; one step from zero does not
    assert abs(warm.objective - ref) < 0.1 * abs(cold.objective - ref)
    assert warm.dual_objective <= ref * (1 + 1e-9) <= warm.objective * (1 + 2e-9)


def test_time_limit_returns_a_certified_bracket():
    problem, pats = small(120, 6, 24)
    ref = reference(problem, pats)
    res = make_solver("firstorder", device="cpu").solve(problem, pats, eps=1e-9, time_limit=0.5)
    assert res.status == "time_limit"
    assert res.wall_seconds < 5.0
    assert res.dual_objective <= ref * (1 + 1e-9) <= res.objective * (1 + 2e-9)


def test_bad_input_is_refused_clearly():
    problem, pats = small(40, 3, 8, loss="hinge")
    with pytest.raises(ValueError, match="smooth loss"):
        make_solver("firstorder", device="cpu").solve(problem, pats)
    with pytest.raises(ValueError, match="device"):
        make_solver("firstorder", device="not-a-device")
    with pytest.raises(ValueError, match="max_iters"):
        make_solver("firstorder", device="cpu", max_iters=0)
    with pytest.raises(ValueError, match="device"):
        core.SolveOptions(solver="firstorder", device="gpu0")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no GPU"):
            make_solver("firstorder", device="cuda")


def test_core_solve_with_the_first_order_solver_brackets_the_network():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((60, 3))
    y = np.sin(X[:, 0]) + 0.1 * rng.standard_normal(60)
    W1, w2 = rng.standard_normal((6, 3)), rng.standard_normal(6) / 3
    problem = Problem.create(X, y, 0.05, W1=W1, w2=w2)
    opts = core.SolveOptions(solver="firstorder", device="cpu", eps=1e-4, patterns="sample:20")
    rep = core.solve(problem, opts)
    assert rep.solver == "firstorder-torch-cpu"
    assert rep.ok, rep.status
    ref = core.solve(problem, core.SolveOptions(solver="cvxpy", patterns="sample:20"))
    tol = 1e-4 * abs(ref.convex_objective)
    assert abs(rep.convex_objective - ref.convex_objective) <= tol
    assert rep.lower_bound <= rep.convex_objective <= rep.nonconvex_objective


@pytest.mark.slow
def test_cross_check_against_scs_on_instance_s():
    """Benchmark instance S (n=500, d=10, P=64; ``small`` draws it the same way): the
    certified bracket holds SCS's answer (SCS inside the working set: SCS on the full conic
    form takes about 2 minutes here; the benchmark compares the two)."""
    problem, pats = small(500, 10, 64)
    full = make_solver("workset", inner="scs").solve(problem, pats, eps=1e-7)
    res = make_solver("firstorder", device="cpu", gap_tol=2e-3).solve(problem, pats)
    assert res.status == "optimal"
    tol = 1e-6 * full.objective
    assert res.dual_objective - tol <= full.objective <= res.objective + tol
    assert res.objective - full.objective <= 2e-3 * full.objective


@pytest.mark.slow
def test_cross_check_against_scs_on_instance_m():
    """Benchmark instance M (n=1000, d=20, P=50), against SCS on the full conic form (at
    1e-5: about 30 s here, 1e-6 takes about 90 s)."""
    problem, pats = small(1000, 20, 50)
    full = make_solver("scs").solve(problem, pats, eps=1e-5)
    assert full.status == "optimal"
    res = make_solver("firstorder", device="cpu", gap_tol=1e-3).solve(problem, pats)
    assert res.status == "optimal"
    tol = 1e-5 * full.objective
    assert res.dual_objective - tol <= full.objective <= res.objective + tol
    assert res.solution.max_violation(problem.Xa) <= 1e-12
