"""The descent path: continuous, non-increasing, ending at the certified optimum."""

from __future__ import annotations

import numpy as np
import pytest
from cases import CASE_A_OPT, CASE_B_OPT, CASE_C_OPT, case_a, case_b, case_c
from landscape_helpers import random_network

from lightning_relucvx import bounds
from lightning_relucvx.landscape import PathOptions, descent_path, minimal_width
from lightning_relucvx.problem import Network, Problem


def params(net: Network) -> np.ndarray:
    return np.concatenate([net.first_layer().ravel(), net.w2, [net.b2 or 0.0]])


def assert_valid_path(problem: Problem, path, continuity: bool = True) -> None:
    F0 = bounds.nonconvex_objective(problem, problem.network)
    assert path.start_objective == pytest.approx(F0, rel=1e-12)
    # non-increasing, up to round-off
    assert path.non_increasing, path.max_increase
    assert np.all(np.diff(path.objectives) <= 1e-12 * max(F0, 1e-12))
    # the samples are the objective of the networks the path names
    for s, f in zip(path.s[::7], path.objectives[::7]):
        assert bounds.nonconvex_objective(problem, path.network(float(s))) == pytest.approx(
            f, rel=1e-12, abs=1e-15
        )
    # continuity: each stage starts where the previous one ended, and no jumps inside
    width = path.width
    for i in range(1, len(path.stages)):
        a = path.stages[i - 1].network(problem, 1.0)
        b = path.stages[i].network(problem, 0.0)
        assert a.width == b.width == width
        np.testing.assert_allclose(params(a), params(b), atol=1e-12)
    start, net = path.network(0.0), problem.network
    m = net.width
    np.testing.assert_allclose(start.first_layer()[:m], net.first_layer(), rtol=1e-15)
    np.testing.assert_allclose(start.w2[:m], net.w2, rtol=1e-15)
    assert not np.any(start.first_layer()[m:]) and not np.any(start.w2[m:])
    # inside a stage the largest jump between grid points shrinks as the grid is refined
    # (like sqrt(h) where a neuron grows from zero: w = q / sqrt(||q||))
    for st in path.stages if continuity else []:
        jumps = []
        for k in (101, 401):
            grid = np.array([params(st.network(problem, t)) for t in np.linspace(0, 1, k)])
            jumps.append(np.linalg.norm(np.diff(grid, axis=0), axis=1).max())
        assert jumps[1] <= 0.55 * jumps[0] + 1e-12, st.name
    # the end: optimal over every pattern, by a certified bound
    assert path.end_objective <= path.optimum_objective + 1e-12 * max(F0, 1.0)
    assert path.certified, (path.end_objective, path.lower_bound)


@pytest.mark.parametrize(
    "case,opt", [(case_a, CASE_A_OPT), (case_b, CASE_B_OPT)], ids=["case_a", "case_b"]
)
def test_reference_cases(case, opt):
    p = case()
    rng = np.random.default_rng(0)
    for width in (1, 3, 7):
        pn = p.with_network(random_network(p, width, rng))
        path = descent_path(pn)
        assert_valid_path(pn, path)
        assert path.end_objective == pytest.approx(opt, abs=1e-6)


@pytest.mark.slow
def test_many_random_networks():
    """30 random networks on random small data sets: squared and logistic losses, with and
    without biases, widths from 1 to 8."""
    rng = np.random.default_rng(1)
    for k in range(30):
        n, d = int(rng.integers(3, 8)), int(rng.integers(1, 3))
        X = rng.standard_normal((n, d))
        loss = "logistic" if k % 4 == 3 else "squared"
        y = rng.standard_normal(n)
        if loss == "logistic":  # both classes (one class alone has no attained optimum)
            y = np.sign(y)
            y[:2] = [1.0, -1.0]
        p = Problem.create(
            X,
            y,
            float(rng.uniform(0.02, 0.3)),
            loss=loss,
            bias=k % 2 == 0,
            output_bias=k % 5 == 0,
        )
        net = random_network(p, int(rng.integers(1, 9)), rng)
        # sometimes duplicate neurons (merging), dead ones and unbalanced scales
        if k % 3 == 0:
            net = Network(
                np.vstack([net.W1, 2 * net.W1[:1], -net.W1[:1]]),
                np.concatenate([net.w2, 0.5 * net.w2[:1], [0.0]]),
                None if net.b1 is None else np.concatenate([net.b1, 2 * net.b1[:1], [0.3]]),
                net.b2,
            )
        pn = p.with_network(net)
        path = descent_path(pn, PathOptions(points_per_stage=15))
        assert_valid_path(pn, path, continuity=k % 5 == 0)
        assert path.width <= net.width + path.optimal_width
        assert path.pruned_width <= n


def test_width_n_plus_optimal_needs_no_extra_neuron():
    """The statement in docs/landscape.md: from width n + m_hat on, the path from any network
    stays within the network's width."""
    rng = np.random.default_rng(4)
    for _ in range(8):
        n = int(rng.integers(3, 7))
        p = Problem.create(rng.standard_normal((n, 1)), rng.standard_normal(n), 0.05, bias=True)
        w = minimal_width(p)
        assert 1 <= w.width <= n
        for _ in range(3):
            net = random_network(p, w.no_spurious_valleys_width, rng)
            path = descent_path(p.with_network(net), PathOptions(points_per_stage=5))
            assert path.width == net.width
            assert path.non_increasing
            assert path.end_objective == pytest.approx(w.objective, rel=1e-5, abs=1e-7)


@pytest.mark.slow
def test_case_c_path_reaches_the_optimum():
    p = case_c()
    pn = p.with_network(random_network(p, 5, np.random.default_rng(7)))
    path = descent_path(pn, PathOptions(points_per_stage=10, eps=1e-8))
    assert path.non_increasing
    assert path.pattern_mode == "all"
    assert path.end_objective == pytest.approx(CASE_C_OPT, abs=2e-5)
    assert path.lower_bound <= CASE_C_OPT + 1e-6


def test_not_enumerable_is_labelled():
    rng = np.random.default_rng(3)
    p = Problem.create(rng.standard_normal((25, 6)), rng.standard_normal(25), 0.1, bias=True)
    pn = p.with_network(random_network(p, 4, rng))
    path = descent_path(pn, PathOptions(samples=40, max_enumerate=100, enumerate_any_rank=100))
    assert path.pattern_mode == "sampled"
    assert path.non_increasing
    assert path.lower_bound_method == "norm_bound"
    assert path.end_objective <= path.start_objective


def test_needs_a_network():
    with pytest.raises(ValueError, match="W1/w2"):
        descent_path(case_a())
