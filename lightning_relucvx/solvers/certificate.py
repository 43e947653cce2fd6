"""Certify any point of the convex program: an exactly feasible point and a dual bound.

Both iterative solvers (the working set and the first-order method) end each check with a
:class:`Certificate` built here, so what they report means the same thing:

- primal: the solver's blocks with the residue of zero blocks dropped and each block that
  violates a cone row projected onto its cone, so the point is feasible for the full
  program and its objective bounds ``p_S`` from above;
- dual: the fit's multiplier scaled by ``min(1, beta / s)``, ``s`` an upper bound on every
  block's residual ``||sign_k X^T D_k lam - X^T S_k mu_k||`` for some ``mu_k >= 0``; any
  ``mu >= 0`` gives one, so the bound is valid whatever the solver's accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import bounds, cones
from ..problem import Problem
from .base import ConvexSolution

# blocks with a norm below this fraction of the largest are zero (an interior-point solution
# leaves every working block slightly nonzero; carrying those into the next working set
# made seeded solves up to 30x slower)
DEAD_BLOCK = 1e-6


@dataclass
class Certificate:
    """A feasible point of the full program, its objective and a dual lower bound."""

    point: ConvexSolution
    primal: float
    lower: float

    @property
    def gap(self) -> float:
        return self.primal - self.lower

    def relative_gap(self) -> float:
        return self.gap / max(abs(self.primal), 1e-12)


def significant(W: np.ndarray) -> np.ndarray:
    """Rows of ``W`` (blocks) whose norm is above ``DEAD_BLOCK`` times the largest."""
    norms = np.linalg.norm(W, axis=1)
    top = float(norms.max(initial=0.0))
    return norms > DEAD_BLOCK * top if top > 0 else np.zeros(len(W), dtype=bool)


def feasible_point(
    problem: Problem, patterns: np.ndarray, W: np.ndarray, b: float | None
) -> tuple[ConvexSolution, float]:
    """An exactly feasible point from blocks ``W`` (2P, d) and its objective."""
    Xa = problem.Xa
    P = patterns.shape[0]
    W = np.array(W, dtype=float)
    W[~significant(W)] = 0.0
    live = np.nonzero(np.linalg.norm(W, axis=1) > 0)[0]
    S = np.where(patterns[live % P], 1.0, -1.0)
    marg = S * (W[live] @ Xa.T)
    for j in np.nonzero(marg.min(axis=1, initial=0.0) < 0)[0]:
        k = live[j]
        W[k] = cones.project(cones.cone_rows(Xa, patterns[k % P]), W[k])
    point = ConvexSolution(patterns, W[:P], W[P:], b)
    return point, point.objective(problem)


def scaled_bound(problem: Problem, lam: np.ndarray, s_max: float) -> float:
    """The dual bound at ``-theta lam``, ``0 <= theta <= min(1, beta / s_max)``.

    ``lam``: the fit's multiplier with the loss gradient's sign, ``-lam`` already in the
    conjugate's domain (:func:`losses.project_dual`); ``s_max``: an upper bound on every block's
    residual ``||sign_k X^T D_k lam - X^T S_k mu_k||`` for some ``mu_k >= 0``.
    """
    s_max *= 1.0 + 1e-9  # round-off in the residuals
    theta_max = 1.0 if s_max <= problem.beta else problem.beta / s_max
    return bounds.best_scaling(problem, -lam, theta_max)
