"""DESIGN.md's reference values, and SCS against cvxpy+Clarabel on unseen instances."""

from __future__ import annotations

import numpy as np
import pytest
from cases import CASE_A_OPT, CASE_B_OPT, CASE_C_OPT, case_a, case_b, case_c

from lightning_relucvx import patterns as pt
from lightning_relucvx.core import SolveOptions, solve
from lightning_relucvx.problem import Problem
from lightning_relucvx.solvers import make_solver

REL = 1e-5


def bracket_ok(report, tol=1e-6):
    scale = max(1.0, abs(report.convex_objective))
    assert report.lower_bound <= report.convex_objective + tol * scale
    assert report.convex_objective <= report.upper_bound + tol * scale


@pytest.mark.parametrize("solver", ["scs", "cvxpy"])
@pytest.mark.parametrize(
    ("make", "ref", "count"),
    [(case_a, CASE_A_OPT, 2), (case_b, CASE_B_OPT, 11), (case_c, CASE_C_OPT, 382)],
    ids=["A", "B", "C"],
)
def test_reference_optimum(solver, make, ref, count):
    report = solve(make(), SolveOptions(patterns="all", solver=solver, eps=1e-8))
    assert report.status == "optimal"
    assert report.num_patterns == count
    assert report.convex_objective == pytest.approx(ref, rel=REL)
    # the explicit optimal network attains it, and the dual certificate closes the bracket
    assert report.upper_bound == pytest.approx(ref, rel=REL)
    assert report.lower_bound == pytest.approx(ref, rel=REL)
    assert report.lower_bound_certified and report.lower_bound_method == "exact_enumeration"
    bracket_ok(report)


def random_instance(seed, loss, output_bias, n=14, d=2):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    if loss == "squared":
        y = np.abs(X[:, 0]) - X[:, 1] + 0.3 * rng.standard_normal(n)
    else:
        y = np.sign(X[:, 0] * X[:, 1] + 0.2 * rng.standard_normal(n))
        y[y == 0] = 1.0
    beta = float(rng.uniform(0.05, 0.5))
    return Problem.create(
        X,
        y,
        beta,
        loss=loss,
        loss_scale=float(rng.uniform(0.5, 2.0)),
        bias=True,
        output_bias=output_bias,
    )


@pytest.mark.parametrize("loss", ["squared", "logistic", "hinge"])
@pytest.mark.parametrize("output_bias", [False, True])
@pytest.mark.parametrize("seed", [11, 12])
def test_scs_agrees_with_clarabel_on_unseen_instances(loss, output_bias, seed):
    problem = random_instance(seed, loss, output_bias)
    pats = pt.combine(pt.sample(problem.Xa, 12, seed=seed))
    ref = make_solver("cvxpy", solver="CLARABEL").solve(problem, pats, eps=1e-10)
    got = make_solver("scs").solve(problem, pats, eps=1e-9)
    assert ref.status == "optimal" and got.status == "optimal"
    assert got.objective == pytest.approx(ref.objective, rel=REL)
    assert got.solution.max_violation(problem.Xa) < 1e-6


def test_unknown_or_missing_linear_solver_is_refused():
    from lightning_relucvx.solvers import available_linear_solvers

    with pytest.raises(ValueError, match=r"^linear_solver: must be one of"):
        make_solver("scs", linear_solver="magic")
    # "auto" resolves to a real backend, and the solver's name says which
    assert make_solver("scs").name in {f"scs-{s}" for s in available_linear_solvers()}
    assert make_solver("workset", inner="scs").name in {
        f"workset-scs-{s}" for s in available_linear_solvers()
    }
    missing = [s for s in ("cudss", "gpu_indirect") if s not in available_linear_solvers()]
    for name in missing:
        with pytest.raises(ValueError, match="not available in this SCS build"):
            make_solver("scs", linear_solver=name)


def test_cpu_indirect_backend_agrees_with_qdldl():
    problem = case_b()
    pats = pt.enumerate_all(problem.Xa)
    a = make_solver("scs", linear_solver="qdldl").solve(problem, pats, eps=1e-8)
    b = make_solver("scs", linear_solver="cpu_indirect").solve(problem, pats, eps=1e-8)
    assert a.backend == "scs-qdldl" and b.backend == "scs-cpu_indirect"
    assert b.objective == pytest.approx(a.objective, rel=REL)


@pytest.mark.parametrize("solver", ["scs", "cvxpy"])
@pytest.mark.parametrize("loss", ["squared", "logistic", "hinge"])
def test_certificate_closes_the_bracket_for_every_loss(solver, loss):
    # exact enumeration (rank 3 with the bias) and the solver's dual make LB tight, also for
    # the non-smooth hinge loss where -grad l at the optimum is not the optimal dual
    problem = random_instance(21, loss, output_bias=True, n=12)
    report = solve(problem, SolveOptions(patterns="all", solver=solver, eps=1e-8))
    assert report.status == "optimal" and report.lower_bound_method == "exact_enumeration"
    bracket_ok(report)
    assert report.lower_bound == pytest.approx(report.convex_objective, rel=REL)
