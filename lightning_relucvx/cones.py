"""Projection onto the polyhedral cones ``K_D = {u : (2D - I) X u >= 0}``."""

from __future__ import annotations

import numpy as np
from scipy.optimize import nnls


def cone_rows(Xa: np.ndarray, pattern: np.ndarray) -> np.ndarray:
    """The matrix ``A = (2D - I) X`` with ``K_D = {A u >= 0}``."""
    return np.where(pattern, 1.0, -1.0)[:, None] * Xa


# margins below this fraction of ``||a_r|| ||u||`` are round-off, not violations
ROUNDOFF = 1e-13


def _worst(A: np.ndarray, u: np.ndarray, ref: np.ndarray | None = None) -> float:
    """The largest violation of ``A u >= 0``, relative to ``||a_r||`` and the larger of
    ``||u||`` and ``||ref||`` (0 if none)."""
    scale = max(float(np.linalg.norm(u)), float(np.linalg.norm(ref)) if ref is not None else 0)
    if scale == 0:
        return 0.0
    return float(max(0.0, np.max(-(A @ u) / (np.linalg.norm(A, axis=1) * scale + 1e-300))))


def _project_qp(A: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The projection as a QP in Clarabel: ``min 1/2 ||u||^2 - g^T u`` s.t. ``A u >= 0``;
    returns ``u`` and the multipliers ``mu >= 0`` (``u = g + A^T mu`` at the optimum)."""
    import clarabel
    import scipy.sparse as sp

    d = len(g)
    st = clarabel.DefaultSettings()
    st.verbose = False
    st.tol_gap_abs = st.tol_gap_rel = st.tol_feas = 1e-12
    sol = clarabel.DefaultSolver(
        sp.identity(d, format="csc"),
        -g,
        sp.csc_matrix(-A),
        np.zeros(A.shape[0]),
        [clarabel.NonnegativeConeT(A.shape[0])],
        st,
    ).solve()
    return np.asarray(sol.x), np.maximum(np.asarray(sol.z), 0.0)


def _nnls_rows(A: np.ndarray, g: np.ndarray) -> np.ndarray:
    """``argmin_{mu >= 0} ||g + A^T mu||`` by NNLS over a growing set of rows.

    With many rows (n data points against d dimensions) the full NNLS is slow (400 blocks
    of n=5000, d=50: 50 s). It starts from the ``4d`` rows of smallest margin at ``g``,
    solves over those, and adds the rows the result violates until none is (then it is the
    projection onto the whole cone: the cone of fewer rows contains it); after a few rounds
    it solves over all rows.
    """
    m, d = A.shape
    start = 4 * d
    if m > 2 * start:
        norms = np.linalg.norm(A, axis=1) + 1e-300
        rows = np.argpartition((A @ g) / norms, start)[:start]
        for _ in range(8):
            sub, _ = nnls(A[rows].T, -g, maxiter=50 * max(len(rows), d))
            u = g + A[rows].T @ sub
            scale = max(float(np.linalg.norm(u)), float(np.linalg.norm(g)))
            margin = (A @ u) / (norms * scale)
            bad = np.nonzero(margin < -ROUNDOFF)[0]
            if bad.size == 0:
                mu = np.zeros(m)
                mu[rows] = sub
                return mu
            rows = np.union1d(rows, bad[np.argsort(margin[bad])[: 2 * d]])
    return nnls(A.T, -g, maxiter=50 * max(A.shape))[0]


def project_and_bound(A: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, float]:
    """The projection of ``g`` onto ``K = {u : A u >= 0}`` and an upper bound on its norm.

    Moreau: ``proj_K(g) = g - proj_{K polar}(g)`` and the polar cone is ``{-A^T mu, mu >= 0}``,
    so ``proj_K(g) = g + A^T mu`` with ``mu = argmin_{mu >= 0} ||g + A^T mu||`` (NNLS); any
    ``mu >= 0`` bounds the projection's norm from above, as does ``||g||``.

    Margins within round-off (``ROUNDOFF``) are not violations. SciPy's NNLS can fail on
    degenerate cones (a point on a face of 18 rows, outside by round-off, was sent 6.8 away
    and far outside the cone), so each answer is checked; one that does not satisfy the rows
    is recomputed as a QP (Clarabel) and the better point kept, the bound from the better
    multipliers.
    """
    gn = float(np.linalg.norm(g))
    if _worst(A, g, g) <= ROUNDOFF:
        return g, gn
    mu = _nnls_rows(A, g)
    u = g + A.T @ mu
    bound = min(gn, float(np.linalg.norm(u)))
    if np.linalg.norm(u) <= ROUNDOFF * gn:
        return np.zeros_like(g), bound  # g is in the polar cone: the projection is 0
    if _worst(A, u, g) <= ROUNDOFF:
        return u, bound
    v, z = _project_qp(A, g)
    bound = min(bound, float(np.linalg.norm(g + A.T @ z)))
    return (v if _worst(A, v, g) < _worst(A, u, g) else u), bound


def project(A: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Euclidean projection of ``g`` onto ``{u : A u >= 0}`` (see :func:`project_and_bound`)."""
    return project_and_bound(A, g)[0]
