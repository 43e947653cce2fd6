"""The global optimality check on DESIGN.md's reference cases and on gradient-descent ends."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from cases import CASE_A_OPT, CASE_B_OPT, CASE_C_OPT, case_a, case_b, case_c
from landscape_helpers import (
    gradient_descent,
    gradient_norm,
    own_pattern_fixed_point,
    random_network,
)

from lightning_relucvx import bounds, patterns
from lightning_relucvx.core import SolveOptions, solve
from lightning_relucvx.landscape import CheckOptions, check
from lightning_relucvx.landscape.check import add_neuron
from lightning_relucvx.problem import Network, Problem


def restricted_optimum(problem: Problem, pats: np.ndarray) -> Network:
    """The network of the convex optimum over a subset of the patterns (zero if empty)."""
    if pats.shape[0] == 0:
        return Network(np.zeros((1, problem.X.shape[1])), np.zeros(1))
    opts = SolveOptions(patterns="given", eps=1e-9, lower_bound="bound")
    rep = solve(problem.with_patterns(pats), opts)
    assert rep.ok
    return rep.optimal_network


def assert_descent_verified(problem: Problem, result) -> None:
    """The violating direction really violates the dual test, and the neuron it gives lowers
    F: at the reported step, and for small steps at the reported first-order rate."""
    net = problem.network
    dn = result.descent
    assert dn is not None
    lam = bounds.dual_point(problem, net.predict(problem.X))
    u = dn.direction
    assert np.linalg.norm(u) == pytest.approx(1.0)
    value = dn.sign * float(lam @ np.maximum(problem.Xa @ u, 0.0))
    assert value == pytest.approx(result.dual_violation, rel=1e-9)
    assert value > problem.beta
    F = bounds.nonconvex_objective(problem, net)
    F_new = bounds.nonconvex_objective(problem, dn.network)
    assert F_new == pytest.approx(dn.objective, rel=1e-12)
    assert dn.decrease == pytest.approx(F - F_new, rel=1e-9, abs=1e-15)
    assert F_new < F
    # F(t) - F = -rate t^2 + O(t^4), with |O(t^4)| <= scale/2 ||(Xu)_+||^2 t^4 for losses
    # whose curvature is at most `scale` (squared: exactly; logistic: 1/4 of it)
    aa = float(np.sum(np.maximum(problem.Xa @ u, 0.0) ** 2))
    for t in (1e-1, 1e-2, 1e-3):
        small = add_neuron(problem, net, t * u, dn.sign * t)
        change = bounds.nonconvex_objective(problem, small) - F
        assert abs(change + dn.rate * t**2) <= problem.loss_scale / 2 * aa * t**4 * 1.001 + 1e-14
        if t <= 1e-2:
            assert change < 0


def test_case_a_reference_networks():
    """Stationary networks built from restricted convex problems over subsets of the two
    patterns: 0.14 is certified optimal; 0.22, 0.545 and 0.625 are stationary, not global."""
    p = case_a()
    allp = patterns.enumerate_all(p.Xa)
    assert allp.shape[0] == 2
    seen = {}
    for k in range(3):
        for subset in itertools.combinations(range(2), k):
            net = restricted_optimum(p, allp[list(subset)])
            F = bounds.nonconvex_objective(p, net)
            assert gradient_norm(p, net) < 1e-6, "the construction gives stationary points"
            seen[round(F, 6)] = (net, k)
    assert sorted(seen) == [0.14, 0.22, 0.545, 0.625]

    net, _ = seen[0.14]
    res = check(p.with_network(net))
    assert res.verdict == "global_optimum" and res.certified
    assert res.lower_bound_method == "exact_enumeration"
    assert res.lower_bound == pytest.approx(CASE_A_OPT, abs=1e-6)
    assert res.dual_violation <= p.beta * (1 + 1e-6)
    assert res.descent is None

    for value in (0.545, 0.22, 0.625):
        net, _ = seen[value]
        pn = p.with_network(net)
        res = check(pn)
        assert res.verdict == "stationary_not_global", (value, res.reason)
        assert res.certified
        assert res.nonconvex_objective == pytest.approx(value, abs=1e-6)
        assert abs(res.local_gap) <= 1e-6
        assert res.dual_violation_method == "exact_enumeration"
        assert res.dual_violation > p.beta
        assert_descent_verified(pn, res)


def test_case_a_random_network_is_not_stationary():
    p = case_a()
    net = Network(np.array([[0.3], [-1.2]]), np.array([-0.5, 2.0]))
    res = check(p.with_network(net))
    assert res.verdict == "not_stationary" and res.certified
    assert res.improved_objective < res.nonconvex_objective
    assert bounds.nonconvex_objective(p, res.improved_network) == pytest.approx(
        res.improved_objective, rel=1e-12
    )
    assert res.local_gap > 0.1


@pytest.mark.slow
def test_case_b_gradient_descent_end_points():
    """End points of plain gradient descent, classified against the reference optimum and the
    gradient norm (never against the check's own numbers)."""
    p = case_b()
    early, g_early = gradient_descent(p, list(range(6)), width=4, steps=200, lr=0.03)
    late, g_late = gradient_descent(p, list(range(12)), width=4, steps=30_000, lr=0.03)
    kinds = {"global_optimum": 0, "stationary_not_global": 0, "not_stationary": 0}
    for net, g in zip(early + late, np.concatenate([g_early, g_late])):
        F = bounds.nonconvex_objective(p, net)
        rel = (F - CASE_B_OPT) / CASE_B_OPT
        pn = p.with_network(net)
        if rel <= 5e-4:  # optimal to well within 0.1 %
            res = check(pn, CheckOptions(tol=1e-3))
            assert res.verdict == "global_optimum" and res.certified, res.reason
            assert res.lower_bound <= CASE_B_OPT + 1e-6
            kinds["global_optimum"] += 1
            res = check(pn, CheckOptions(tol=1e-7))
            assert res.verdict != "global_optimum" or not res.certified
        elif g < 1e-8:  # converged to a stationary point that is not optimal
            res = check(pn, CheckOptions(tol=1e-6))
            assert res.verdict == "stationary_not_global" and res.certified, res.reason
            assert_descent_verified(pn, res)
            kinds["stationary_not_global"] += 1
        else:
            assert g > 1e-2, "every end point falls in one clear class"
            res = check(pn, CheckOptions(tol=1e-6))
            assert res.verdict == "not_stationary" and res.certified, res.reason
            assert res.improved_objective < F
            kinds["not_stationary"] += 1
    assert all(v >= 2 for v in kinds.values()), kinds


@pytest.fixture(scope="module")
def case_c_optimum():
    p = case_c()
    rep = solve(p, SolveOptions(patterns="all", eps=1e-9))
    assert rep.ok
    return p, rep


@pytest.mark.slow
def test_case_c_agrees_with_the_full_convex_optimum(case_c_optimum):
    p, rep = case_c_optimum
    res = check(p.with_network(rep.optimal_network), CheckOptions(tol=1e-6))
    assert res.verdict == "global_optimum" and res.certified, res.reason
    assert res.num_patterns_checked == 382
    assert res.nonconvex_objective == pytest.approx(CASE_C_OPT, abs=1e-6)
    assert res.lower_bound == pytest.approx(CASE_C_OPT, abs=1e-6)
    assert res.lower_bound <= res.nonconvex_objective


@pytest.mark.slow
def test_case_c_restricted_and_random_networks(case_c_optimum):
    p, _ = case_c_optimum
    allp = patterns.enumerate_all(p.Xa)
    net = own_pattern_fixed_point(p, restricted_optimum(p, allp[::40]))
    pn = p.with_network(net)
    res = check(pn, CheckOptions(tol=1e-6))
    assert res.verdict == "stationary_not_global" and res.certified, res.reason
    assert res.nonconvex_objective > CASE_C_OPT + 1e-3
    assert res.lower_bound <= CASE_C_OPT + 1e-6
    assert_descent_verified(pn, res)

    rnd = random_network(p, 6, np.random.default_rng(3))
    res = check(p.with_network(rnd))
    assert res.verdict == "not_stationary" and res.certified
    assert res.convex_objective_own >= CASE_C_OPT - 1e-5


@pytest.mark.slow
def test_sampled_search_is_labelled_and_a_found_violation_is_verified():
    """Rank 7 data with 30 points: too many patterns to enumerate under a small limit, so the
    dual test is an estimate while the lower bound is the certified norm bound."""
    rng = np.random.default_rng(5)
    X = rng.standard_normal((30, 6))
    y = rng.standard_normal(30)
    p = Problem.create(X, y, 0.05, bias=True)
    opts = CheckOptions(max_enumerate=500, enumerate_any_rank=500, samples=200)
    # the zero network is stationary (F = p_own = l(0)); the search must find a violation
    pn = p.with_network(Network(np.zeros((2, 6)), np.zeros(2), np.zeros(2)))
    res = check(pn, opts)
    assert res.dual_violation_method == "sampled_estimate"
    assert res.lower_bound_method == "norm_bound" and res.lower_bound_certified
    assert res.dual_violation <= res.dual_violation_bound + 1e-12
    assert res.lower_bound_estimate is not None
    assert res.verdict == "stationary_not_global" and res.certified, res.reason
    assert_descent_verified(pn, res)

    # the optimum over sampled patterns: whatever the verdict, an uncertified global claim
    # must say that it rests on sampled patterns
    rep = solve(p, SolveOptions(patterns="sample:60", eps=1e-7, lower_bound="bound"))
    res = check(p.with_network(rep.optimal_network), opts)
    if res.verdict == "global_optimum" and not res.certified:
        assert "sampled" in res.reason
    if res.verdict == "stationary_not_global":
        assert_descent_verified(p.with_network(rep.optimal_network), res)


def test_logistic_loss_descent_neuron():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((12, 2))
    y = np.where(X[:, 0] * X[:, 1] > 0, 1.0, -1.0)
    p = Problem.create(X, y, 0.05, loss="logistic", bias=True)
    res = check(p.with_network(Network(np.zeros((1, 2)), np.zeros(1), np.zeros(1))))
    assert res.verdict == "stationary_not_global" and res.certified
    assert res.descent.decrease > 0
    assert res.descent.objective < res.nonconvex_objective


def test_output_bias_dead_network():
    p = Problem.create([[-1.0], [0.0], [1.0]], [1.0, 2.0, 4.0], 0.1, bias=True, output_bias=True)
    net = Network(np.zeros((2, 1)), np.zeros(2), np.zeros(2), 0.0)
    res = check(p.with_network(net))
    # the best output bias alone (mean of y) is a strictly better network of the same patterns
    assert res.verdict == "not_stationary" and res.certified
    assert res.improved_network.b2 == pytest.approx(7.0 / 3.0, abs=1e-6)


def test_bad_input():
    with pytest.raises(ValueError, match="tol"):
        CheckOptions(tol=0.0)
    with pytest.raises(ValueError, match="W1/w2"):
        check(case_a())
