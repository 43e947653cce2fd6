"""The block/row-restricted conic form agrees with the full one where they overlap."""

from __future__ import annotations

import numpy as np
import pytest

from lightning_relucvx import patterns as pt
from lightning_relucvx.problem import Problem
from lightning_relucvx.solvers.scs import build, cone_operator, fit_operator


def _problem(loss="squared", output_bias=False):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((25, 3))
    y = rng.standard_normal(25)
    if loss != "squared":
        y = np.where(y > 0, 1.0, -1.0)
    p = Problem.create(X, y, 0.2, loss=loss, bias=True, output_bias=output_bias)
    return p, pt.sample(p.Xa, 6, seed=1)


@pytest.mark.parametrize("loss", ["squared", "hinge", "logistic"])
def test_restricted_rows_are_rows_of_the_full_form(loss):
    p, pats = _problem(loss, output_bias=True)
    P, n, d = pats.shape[0], p.n, p.Xa.shape[1]
    blocks = np.array([1, P + 2, P + 4])
    rows = [np.array([0, 3, 7]), np.array([], dtype=np.int64), np.arange(n)]
    form = build(p, pats, blocks, rows)
    G = cone_operator(p.Xa, pats).tocsr()
    cols = (blocks[:, None] * d + np.arange(d)).ravel()
    keys = form.cone_keys
    assert len(keys) == 3 + 0 + n
    z = form.cone["z"]
    A = form.data["A"].tocsr()
    # cone rows sit right after the zero-cone rows, negated (slack = G w)
    got = -A[z : z + len(keys)][:, : len(cols)].toarray()
    want = G[keys][:, cols].toarray()
    assert np.array_equal(got, want)
    # the fit's coefficients: A[fit_rows] restricted to block columns = fit_coef * M
    M = fit_operator(p.Xa, pats).tocsr()[:, cols].toarray()
    assert np.allclose(A[form.fit_rows][:, : len(cols)].toarray(), form.fit_coef[:, None] * M)
    assert form.n_blocks == 3 and len(form.col_keys()) == form.n_vars
    assert len(np.unique(form.row_keys())) == A.shape[0]


def test_full_build_is_the_default():
    p, pats = _problem()
    full = build(p, pats)
    explicit = build(p, pats, np.arange(2 * pats.shape[0]), None)
    assert (full.data["A"] != explicit.data["A"]).nnz == 0
    assert full.data["A"].shape[0] == p.n + 2 * pats.shape[0] * (p.n + p.Xa.shape[1] + 1)
