"""Activation patterns: from weights, sampled, exactly enumerated (Cover's count), packed."""

from __future__ import annotations

import numpy as np
import pytest
from cases import case_b, case_c

from lightning_relucvx import patterns as pt


def test_case_c_has_382_patterns_matching_cover():
    P = pt.enumerate_all(case_c().Xa)
    assert P.shape == (382, 20)
    assert pt.cover_count(20, 3) == 382


def test_case_b_has_11_nonzero_patterns():
    assert pt.enumerate_all(case_b().Xa).shape[0] == 11


@pytest.mark.parametrize(("n", "r"), [(7, 1), (9, 2), (12, 3), (25, 3), (8, 4)])
def test_enumeration_matches_cover_in_general_position(n, r):
    X = np.random.default_rng(n * 10 + r).standard_normal((n, r))
    P = pt.enumerate_all(X, drop_zero=False)  # Cover counts the all-inactive cell too
    assert P.shape[0] == pt.cover_count(n, r)
    assert len({row.tobytes() for row in P}) == P.shape[0]


def test_enumeration_contains_every_sampled_pattern_in_low_rank_high_dim():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((15, 3)) @ rng.standard_normal((3, 6))  # rank 3 in R^6
    P = pt.enumerate_all(X)
    assert P.shape[0] == pt.cover_count(15, 3)
    S = pt.sample(X, 20000, seed=2)
    assert pt.combine(P, S).shape[0] == P.shape[0]


def test_enumeration_handles_degenerate_data():
    X = case_c().X
    Xd = np.vstack([X[:10], X[:5], 2 * X[:3], np.zeros((1, 3))])
    P = pt.enumerate_all(Xd)
    # duplicates and positive multiples do not add hyperplanes; a zero row is always 1
    assert P.shape[0] == pt.cover_count(10, 3)
    assert np.all(P[:, -1])
    S = pt.sample(Xd, 20000, seed=3)
    assert pt.combine(P, S).shape[0] == P.shape[0]


def test_sampling_is_seeded_deduplicated_and_drops_zero_pattern():
    X = np.c_[np.linspace(-1, 1, 8), np.ones(8)]
    a, b = pt.sample(X, 500, seed=5), pt.sample(X, 500, seed=5)
    assert np.array_equal(a, b)
    assert len({r.tobytes() for r in a}) == a.shape[0]
    assert not np.any(~a.any(axis=1))


def test_from_weights_uses_live_neurons_and_ge_convention():
    X = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    W = np.array([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [2.0, 2.0], [0.0, 0.0]])
    alpha = np.array([1.0, -1.0, 0.0, 1.0, 1.0])
    P = pt.from_weights(X, W, alpha)
    # x^T w = 0 counts as active (1[Xw >= 0]); duplicates merged; dead and zero-alpha dropped
    assert P.tolist() == [[True, True, True], [True, True, False]]


def test_pack_roundtrip_and_size_check():
    P = np.random.default_rng(0).random((5, 13)) > 0.5
    data, shape = pt.pack(P)
    assert len(data) == 5 * 2
    assert np.array_equal(pt.unpack(data, shape), P)
    with pytest.raises(ValueError, match="packed bytes"):
        pt.unpack(data[:-1], shape)


def test_too_many_patterns_refused():
    X = np.random.default_rng(0).standard_normal((200, 4))
    with pytest.raises(ValueError, match="too many"):
        pt.enumerate_all(X, limit=1000)
