"""Projection onto the polyhedral cones ``K_D = {u : (2D - I) X u >= 0}``."""

from __future__ import annotations

import numpy as np
from scipy.optimize import nnls


def cone_rows(Xa: np.ndarray, pattern: np.ndarray) -> np.ndarray:
    """The matrix ``A = (2D - I) X`` with ``K_D = {A u >= 0}``."""
    return np.where(pattern, 1.0, -1.0)[:, None] * Xa


def project(A: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Euclidean projection of ``g`` onto ``{u : A u >= 0}``.

    Moreau: ``proj_K(g) = g - proj_{K polar}(g)`` and the polar cone is ``{-A^T mu, mu >= 0}``,
    so ``proj_K(g) = g + A^T mu`` with ``mu = argmin_{mu >= 0} ||g + A^T mu||`` (NNLS).
    """
    if np.all(A @ g >= 0):
        return g
    mu, _ = nnls(A.T, -g, maxiter=50 * max(A.shape))
    return g + A.T @ mu
