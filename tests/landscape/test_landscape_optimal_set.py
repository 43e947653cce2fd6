"""The optimal set's invariant transformations and the minimal width."""

from __future__ import annotations

import numpy as np
import pytest
from cases import CASE_B_OPT, case_b

from lightning_relucvx import bounds
from lightning_relucvx.landscape import (
    CheckOptions,
    add_zero_neurons,
    balance,
    check,
    equivalent_networks,
    merge_collinear,
    minimal_width,
    permute,
    rescale_neuron,
    split_neuron,
)


@pytest.fixture(scope="module")
def optimum():
    p = case_b()
    w = minimal_width(p, CheckOptions(eps=1e-9))
    return p, w


def test_minimal_width_case_b(optimum):
    p, w = optimum
    assert 1 <= w.width <= p.n
    assert w.network.width == w.width
    assert w.objective == pytest.approx(CASE_B_OPT, abs=1e-6)
    assert w.lower_bound_certified and w.lower_bound <= w.objective
    assert w.objective - w.lower_bound <= 1e-6
    assert w.no_spurious_valleys_width == p.n + w.width
    assert w.to_dict()["optimal_width"] == w.width


def test_transformations_keep_output_and_objective(optimum):
    p, w = optimum
    net = w.network
    F = bounds.nonconvex_objective(p, net)
    yhat = net.predict(p.X)
    variants = [
        split_neuron(net, 0, 0.3),
        merge_collinear(split_neuron(split_neuron(net, 0, 0.3), 1, 0.6)),
        permute(net, np.arange(net.width)[::-1]),
        add_zero_neurons(net, 3),
        *equivalent_networks(net, 12, seed=1),
    ]
    for v in variants:
        np.testing.assert_allclose(v.predict(p.X), yhat, rtol=1e-12, atol=1e-12)
        assert bounds.nonconvex_objective(p, v) == pytest.approx(F, rel=1e-12)
    assert merge_collinear(split_neuron(net, 0, 0.3)).width == net.width
    assert split_neuron(net, 0, 0.3).width == net.width + 1
    # the variants are optimal too, by the certificate, not only by their objective
    for v in variants[:3]:
        res = check(p.with_network(v))
        assert res.verdict == "global_optimum" and res.certified, res.reason


def test_rescaling_away_from_balance_is_not_optimal(optimum):
    p, w = optimum
    net = w.network
    F = bounds.nonconvex_objective(p, net)
    for c in (0.5, 0.9, 1.1, 3.0):
        v = rescale_neuron(net, 0, c)
        np.testing.assert_allclose(v.predict(p.X), net.predict(p.X), rtol=1e-12, atol=1e-12)
        assert bounds.nonconvex_objective(p, v) > F + 1e-6
        res = check(p.with_network(v))
        assert res.verdict == "not_stationary" and res.certified
        # balancing restores the optimum
        assert bounds.nonconvex_objective(p, balance(v)) == pytest.approx(F, rel=1e-12)


def test_argument_errors(optimum):
    _, w = optimum
    with pytest.raises(ValueError, match="fraction"):
        split_neuron(w.network, 0, 1.0)
    with pytest.raises(ValueError, match="order"):
        permute(w.network, np.zeros(w.network.width, int) if w.network.width > 1 else [5])
    with pytest.raises(ValueError, match="c:"):
        rescale_neuron(w.network, 0, 0.0)
