"""Projection onto the pattern cones: exact, and robust where SciPy's NNLS is not."""

import numpy as np
import pytest
from scipy.optimize import nnls

from lightning_relucvx import cones

# A block from a working-set round (n=1000, d=20, X ~ N(0, 1) with seed 1): it lies on a
# face of 18 cone rows and is outside the cone by round-off only (margins about -5e-17).
# SciPy 1.17's NNLS "projected" it to a point 6.8 away with margins down to -25.8.
DEGENERATE_PATTERN = (
    "7aedf6a815dd1f4781be2f987ed8aa599da7c52f970fc4196c710b3fd9a7fdfd727b2afba9fa49cecb2b74d3"
    "85157006647c292edf5414766b8be66d8fa6c2ac9d1b8fe440b63dfc01f56b730579feca03b3cd33d49478d1"
    "876230874363899649acffa7f86b5e935e1671d202238672c2f23244ac6ba8691c72df793c"
)
DEGENERATE_POINT = [
    "-0x1.c3bb6bc6dbdfdp-7", "-0x1.6337d6e86b7d9p-7", "-0x1.4192821d69277p-6",
    "0x1.d42cb33837799p-8", "0x1.0a55b5f0c40e1p-6", "-0x1.d7122e078531ap-7",
    "0x1.fa1512ab505bep-9", "0x1.0517f0e11d755p-7", "0x1.1f70ea2cfd790p-9",
    "0x1.10536ab82d03ep-10", "0x1.8e1a8479845d2p-7", "-0x1.1169ea317a63cp-7",
    "0x1.e4738af0a9e97p-7", "0x1.f0abc0193b245p-10", "0x1.90acd537490bdp-7",
    "-0x1.2c99dad37aaa1p-6", "0x1.1f1b5fdce0fb3p-8", "-0x1.8890e6518fb36p-7",
    "0x1.3d09bddb576ecp-8", "0x1.0798022ea0d90p-6",
]  # fmt: skip


def _degenerate():
    X = np.random.default_rng(1).standard_normal((1000, 20))
    bits = np.frombuffer(bytes.fromhex(DEGENERATE_PATTERN), dtype=np.uint8)
    pattern = np.unpackbits(bits)[:1000].astype(bool)
    return cones.cone_rows(X, pattern), np.array([float.fromhex(v) for v in DEGENERATE_POINT])


def test_a_point_outside_only_by_round_off_is_its_own_projection():
    A, g = _degenerate()
    assert (A @ g).min() < 0  # outside, by round-off
    assert np.sum(np.abs(A @ g) < 1e-12) >= 18  # on a face of many rows
    u = cones.project(A, g)
    assert np.linalg.norm(u - g) <= 1e-12 * np.linalg.norm(g)
    assert cones._worst(A, u, g) <= cones.ROUNDOFF


def test_the_qp_fallback_finds_the_projection_where_nnls_does_not():
    A, g = _degenerate()
    v, mu = cones._project_qp(A, g)
    assert cones._worst(A, v, g) <= 1e-9
    assert np.linalg.norm(v - g) <= 1e-5 * np.linalg.norm(g)
    assert np.all(mu >= 0) and np.allclose(v, g + A.T @ mu, atol=1e-6 * np.linalg.norm(g))


@pytest.mark.parametrize(("seed", "n", "d"), [(s, 300, 8) for s in range(5)] + [(7, 3000, 30)])
def test_projection_of_a_point_well_outside_is_exact(seed, n, d):
    """Also where the NNLS grows its rows from a few (n > 8 d) and must still end exact."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    pattern = X @ rng.standard_normal(d) > 0
    A = cones.cone_rows(X, pattern)
    g = rng.standard_normal(d)
    u = cones.project(A, g)
    full = g + A.T @ nnls(A.T, -g, maxiter=50 * n)[0]
    assert np.linalg.norm(u - full) <= 1e-8 * np.linalg.norm(g)
    assert cones._worst(A, u, g) <= cones.ROUNDOFF
    # the projection: u in K, g - u in the polar cone and orthogonal to u
    v, _ = cones._project_qp(A, g)
    assert np.linalg.norm(u - v) <= 1e-6 * max(1.0, np.linalg.norm(g))
    assert abs(float(u @ (g - u))) <= 1e-8 * np.linalg.norm(g) ** 2
    assert np.linalg.norm(u - g) <= np.linalg.norm(g)  # 0 is in K


def test_the_norm_bound_is_never_below_the_projections_norm():
    A, g = _degenerate()
    for point in (g, g - 1e-3 * np.linalg.norm(g) * A[np.argmin(A @ g)] / np.linalg.norm(A[0])):
        u, bound = cones.project_and_bound(A, point)
        v, _ = cones._project_qp(A, point)
        assert bound >= np.linalg.norm(v) * (1 - 1e-6)
        assert bound <= np.linalg.norm(u) * (1 + 1e-6) + 1e-15
