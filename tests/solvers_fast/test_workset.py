"""The working-set solver reaches the full program's optimum, cross-checked against SCS on
the full conic form and cvxpy + Clarabel, and certifies it (violation, duality gap)."""

from __future__ import annotations

import numpy as np
import pytest
from cases import CASE_C_OPT, case_c

from lightning_relucvx import patterns as pt
from lightning_relucvx.core import SolveOptions, solve
from lightning_relucvx.problem import Problem
from lightning_relucvx.solvers import make_solver


def small(n, d, P, seed=0, loss="squared", output_bias=False):
    """A small variant of the benchmark instances (Gaussian data, Gaussian directions)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = rng.standard_normal(n)
    if loss != "squared":
        y = np.where(y > 0, 1.0, -1.0)
    pats = pt.unique(pt.pattern_of(X, rng.standard_normal((P, d))))
    beta = 0.1 * float(np.max(np.linalg.norm((pats * y[None, :]) @ X, axis=1)))
    return Problem.create(X, y, beta, loss=loss, output_bias=output_bias), pats


def check_certified(problem, res, eps=1e-6):
    assert res.status == "optimal", res.info
    assert res.solution.max_violation(problem.Xa) <= 10 * eps
    assert res.duality_gap <= 1e-5 * max(1.0, abs(res.objective))
    assert res.info["dual_infeasibility"] <= 10 * eps


@pytest.mark.parametrize("inner", ["clarabel", "scs"])
def test_matches_full_scs_and_clarabel_on_small_s(inner):
    problem, pats = small(120, 6, 24)  # S-like: n=500, d=10, P=64 scaled down
    # full_rows=0: grow a working set even though this program is small enough to solve whole
    ws = make_solver("workset", inner=inner, full_rows=0).solve(problem, pats, eps=1e-6)
    full = make_solver("scs").solve(problem, pats, eps=1e-7)
    ref = make_solver("cvxpy", solver="CLARABEL").solve(problem, pats, eps=1e-9)
    check_certified(problem, ws)
    assert abs(ws.objective - ref.objective) <= 1e-6 * abs(ref.objective)
    assert abs(full.objective - ref.objective) <= 1e-5 * abs(ref.objective)
    # fewer rows than the full program: the point of the strategy
    assert ws.info["working_rows"] < ws.info["total_rows"]


def test_a_small_program_is_solved_whole_in_one_round():
    problem, pats = small(120, 6, 24)
    assert 2 * pats.shape[0] * problem.n <= 40_000
    whole = make_solver("workset").solve(problem, pats, eps=1e-6)
    grown = make_solver("workset", full_rows=0).solve(problem, pats, eps=1e-6)
    check_certified(problem, whole)
    assert whole.info["rounds"] == 1 < grown.info["rounds"]
    assert whole.info["working_rows"] == whole.info["total_rows"]
    assert whole.objective == pytest.approx(grown.objective, rel=1e-6)


@pytest.mark.parametrize(
    ("loss", "output_bias"), [("squared", False), ("squared", True), ("logistic", True)]
)
def test_every_round_certifies_a_bracket_of_the_full_optimum(loss, output_bias):
    """Stopped after each round, the solver still returns an exactly feasible point and a
    dual bound of the full program that bracket the reference optimum."""
    problem, pats = small(100, 5, 20, seed=3, loss=loss, output_bias=output_bias)
    ref = make_solver("cvxpy", solver="CLARABEL").solve(problem, pats, eps=1e-9).objective
    full = make_solver("workset", full_rows=0).solve(problem, pats, eps=1e-6)
    rounds = full.info["rounds"]
    assert rounds >= 2  # so the early stops below are really incomplete working sets
    gaps = []
    for r in range(1, rounds + 1):
        res = make_solver("workset", full_rows=0, max_rounds=r).solve(problem, pats, eps=1e-6)
        assert res.solution.max_violation(problem.Xa) <= 1e-12
        assert res.objective == pytest.approx(res.solution.objective(problem), rel=1e-12)
        tol = 1e-7 * max(1.0, abs(ref))
        assert res.dual_objective - tol <= ref <= res.objective + tol, r
        assert res.duality_gap == pytest.approx(res.objective - res.dual_objective)
        gaps.append(res.duality_gap / abs(res.objective))
    assert gaps[0] > 1e-6 >= gaps[-1]  # the first round is far from certified, the last is


def test_a_loose_gap_tolerance_stops_early_and_says_how_far_it_is():
    problem, pats = small(100, 5, 20, seed=3)
    ref = make_solver("cvxpy", solver="CLARABEL").solve(problem, pats, eps=1e-9).objective
    tight = make_solver("workset", full_rows=0).solve(problem, pats, eps=1e-6)
    loose = make_solver("workset", full_rows=0, gap_tol=0.5).solve(problem, pats, eps=1e-6)
    assert loose.status == "optimal"
    assert loose.info["rounds"] < tight.info["rounds"]
    assert loose.duality_gap <= 0.5 * loose.objective
    assert loose.dual_objective <= ref <= loose.objective


@pytest.mark.slow
def test_matches_clarabel_on_small_m():
    problem, pats = small(300, 12, 40, seed=1)  # M-like, scaled down
    ws = make_solver("workset").solve(problem, pats, eps=1e-6)
    ref = make_solver("cvxpy", solver="CLARABEL").solve(problem, pats, eps=1e-9)
    check_certified(problem, ws)
    assert abs(ws.objective - ref.objective) <= 1e-6 * abs(ref.objective)


@pytest.mark.parametrize("loss", ["hinge", "logistic"])
def test_other_losses_and_output_bias(loss):
    problem, pats = small(60, 4, 12, seed=2, loss=loss, output_bias=True)
    ws = make_solver("workset").solve(problem, pats, eps=1e-7)
    ref = make_solver("cvxpy", solver="CLARABEL").solve(problem, pats, eps=1e-9)
    assert ws.status == "optimal"
    assert ws.solution.max_violation(problem.Xa) <= 1e-6
    assert abs(ws.objective - ref.objective) <= 1e-5 * max(1.0, abs(ref.objective))


@pytest.mark.slow
def test_case_c_all_patterns_through_core():
    rep = solve(case_c(), SolveOptions(patterns="all", solver="workset"))
    assert rep.ok
    assert rep.convex_objective == pytest.approx(CASE_C_OPT, abs=1e-5)
    assert rep.max_violation <= 1e-6
    assert rep.solver == "workset-clarabel"


def test_warm_start_needs_fewer_rounds_and_iterations():
    problem, pats = small(150, 5, 30, seed=4)
    solver = make_solver("workset", full_rows=0, use_warm_start=True)
    cold = solver.solve(problem, pats, eps=1e-6)
    # a neighbouring snapshot: the same data, the pattern set reordered and partly new;
    # blocks of the previous solution are matched by pattern
    others = pt.sample(problem.Xa, 10, seed=9)
    nxt = pt.combine(pats[::-1], others)
    warm = solver.solve(problem, nxt, eps=1e-6, warm_start=cold.solution)
    again = solver.solve(problem, nxt, eps=1e-6)
    assert warm.objective == pytest.approx(again.objective, rel=1e-6)
    assert warm.info["rounds"] < again.info["rounds"]
    assert warm.iterations < again.iterations
    check_certified(problem, warm)


def test_a_seed_is_ignored_when_asked_to():
    problem, pats = small(150, 5, 30, seed=4)
    cold = make_solver("workset", full_rows=0).solve(problem, pats, eps=1e-6)
    seeded = make_solver("workset", full_rows=0, use_warm_start=False).solve(
        problem, pats, eps=1e-6, warm_start=cold.solution
    )
    assert seeded.info["history"][0]["blocks"] == cold.info["history"][0]["blocks"]
    assert seeded.iterations == cold.iterations
    assert seeded.objective == cold.objective


def test_interior_point_residue_is_not_carried_into_the_next_working_set():
    """Blocks an interior-point solve leaves at 1e-10 are zero: a seed with such residue on
    every block starts from its significant blocks only (carrying all of them made seeded
    solves up to 30x slower)."""
    problem, pats = small(150, 5, 30, seed=4)
    solver = make_solver("workset", full_rows=0, use_warm_start=True)
    cold = solver.solve(problem, pats, eps=1e-6)
    W = np.vstack([cold.solution.U, cold.solution.V])
    live = int((np.linalg.norm(W, axis=1) > 0).sum())
    assert 0 < live < len(W) // 2
    rng = np.random.default_rng(0)
    residue = np.where(W == 0, 1e-10 * rng.standard_normal(W.shape), W)
    P = pats.shape[0]
    seed = cold.solution.__class__(pats, residue[:P], residue[P:], cold.solution.b)
    warm = solver.solve(problem, pats, eps=1e-6, warm_start=seed)
    assert warm.info["history"][0]["blocks"] <= live + solver.warm_blocks
    assert warm.objective == pytest.approx(cold.objective, rel=1e-6)
    # and the solver's own answers carry no such residue
    for res in (cold, warm):
        norms = np.linalg.norm(np.vstack([res.solution.U, res.solution.V]), axis=1)
        assert np.all((norms == 0) | (norms > 1e-6 * norms.max()))


def test_a_seed_carries_its_largest_blocks_only_and_reaches_the_same_optimum():
    """``carry_blocks``: a seed with many nonzero blocks starts the working set with its
    largest few; the dual check brings back the others that the optimum needs."""
    problem, pats = small(150, 5, 30, seed=4)
    ref = make_solver("cvxpy", solver="CLARABEL").solve(problem, pats, eps=1e-9).objective
    cold = make_solver("workset", full_rows=0).solve(problem, pats, eps=1e-6)
    W = np.vstack([cold.solution.U, cold.solution.V])
    live = int((np.linalg.norm(W, axis=1) > 0).sum())
    assert live > 4
    solver = make_solver("workset", full_rows=0, carry_blocks=3, warm_blocks=0)
    warm = solver.solve(problem, pats, eps=1e-6, warm_start=cold.solution)
    assert warm.info["history"][0]["blocks"] <= 3
    assert warm.status == "optimal"
    tol = 1e-8 * abs(ref)  # the reference's own accuracy
    assert warm.dual_objective - tol <= ref <= warm.objective + tol
    assert warm.objective == pytest.approx(ref, rel=1e-6)
    with pytest.raises(ValueError, match="carry_blocks"):
        make_solver("workset", carry_blocks=-1)


def test_zero_is_optimal_when_beta_is_large():
    problem, pats = small(40, 3, 8, seed=5)
    big = Problem.create(problem.X, problem.y, 1e3 * problem.beta)
    res = make_solver("workset").solve(big, pats, eps=1e-6)
    assert res.status == "optimal"
    assert np.allclose(res.solution.U, 0, atol=1e-6) and np.allclose(res.solution.V, 0, atol=1e-6)
    assert res.objective == pytest.approx(0.5 * float(problem.y @ problem.y), rel=1e-6)


def test_held_rows_are_eliminated_without_changing_the_optimum():
    """Holding the optimum's active rows at equality (and eliminating them) gives the same
    restricted optimum, with far fewer variables."""
    from lightning_relucvx.solvers.scs import block_weights, build
    from lightning_relucvx.solvers.workset import (
        HOLD_MARGIN,
        Reduction,
        _held_mask,
        _solve_clarabel,
    )

    problem, pats = small(150, 5, 30, seed=4)
    ref = make_solver("workset", hold_active=False).solve(problem, pats, eps=1e-6)
    P, n = pats.shape[0], problem.n
    W = np.vstack([ref.solution.U, ref.solution.V])
    blocks = np.nonzero(np.linalg.norm(W, axis=1) > 0)[0]
    form = build(problem, pats, blocks, [np.arange(n)] * len(blocks))
    free = _solve_clarabel(form, problem, 1e-9, None)
    Wf = block_weights(form, free["x"])
    S = np.where(pats, 1.0, -1.0)
    xn = np.linalg.norm(problem.Xa, axis=1)
    held = {}
    for k in blocks:
        m = S[k % P] * (problem.Xa @ Wf[k]) / (xn * np.linalg.norm(Wf[k]))
        held[int(k)] = np.nonzero(np.abs(m) <= HOLD_MARGIN)[0]
    mask = _held_mask(form, held, n)
    assert mask.sum() >= len(blocks)  # the blocks lie on faces of their cones
    red = Reduction.of(form, problem.Xa, mask)
    assert red.n_w < len(blocks) * problem.d
    out = _solve_clarabel(form, problem, 1e-9, None, mask)
    assert out["dobj"] == pytest.approx(free["dobj"], rel=1e-8)
    Wh = block_weights(form, out["x"])
    assert np.abs(Wh - Wf).max() <= 1e-5 * np.abs(Wf).max()
    assert np.all(out["y"][form.cone["z"] + np.nonzero(mask)[0]] == 0)  # left to the caller


@pytest.mark.parametrize("margin", [None, 0.05])
def test_holding_rows_reaches_the_same_certified_optimum(margin, monkeypatch):
    """With rows held at equality the solver reaches the reference optimum; held rows that
    are not active (a hold margin of 0.05 holds many such) are released on the way."""
    from lightning_relucvx.solvers import workset

    if margin is not None:
        monkeypatch.setattr(workset, "HOLD_MARGIN", margin)
    problem, pats = small(200, 6, 40, seed=2)
    ref = make_solver("cvxpy", solver="CLARABEL").solve(problem, pats, eps=1e-9).objective
    res = make_solver("workset", full_rows=0).solve(problem, pats, eps=1e-6)
    check_certified(problem, res)
    assert res.objective == pytest.approx(ref, rel=1e-6)
    assert res.dual_objective <= ref * (1 + 1e-9) and res.objective >= ref * (1 - 1e-9)
    hist = res.info["history"]
    assert max(h["held_rows"] for h in hist) > 0
    if margin is not None:
        assert sum(h["released_rows"] for h in hist) > 0


def test_a_seed_from_the_previous_snapshot_needs_less_work():
    """Consecutive snapshots share most patterns: seeded with the previous optimum, the
    next solve needs fewer rounds than from scratch and reaches the same optimum."""
    rng = np.random.default_rng(7)
    n, d, m = 200, 6, 12
    X = rng.standard_normal((n, d))
    y = np.maximum(X @ rng.standard_normal(d), 0) + 0.1 * rng.standard_normal(n)
    W1 = rng.standard_normal((m, d))
    moved = W1 + 0.02 * rng.standard_normal((m, d))  # the next snapshot's first layer
    sampled = pt.sample(X, 20, seed=0)
    first = pt.combine(pt.pattern_of(X, W1), sampled)
    second = pt.combine(pt.pattern_of(X, moved), sampled)
    beta = 0.05 * float(np.max(np.linalg.norm((second * y[None, :]) @ X, axis=1)))
    problem = Problem.create(X, y, beta)
    solver = make_solver("workset", full_rows=0)
    prev = solver.solve(problem, first, eps=1e-6)
    cold = solver.solve(problem, second, eps=1e-6)
    warm = solver.solve(problem, second, eps=1e-6, warm_start=prev.solution)
    check_certified(problem, warm)
    assert warm.objective == pytest.approx(cold.objective, rel=1e-6)
    assert warm.info["rounds"] < cold.info["rounds"]
