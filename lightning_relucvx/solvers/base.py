"""One interface for convex solvers: a :class:`ConvexSolution` and a :class:`SolverResult`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from .. import losses
from ..problem import Problem


@dataclass
class ConvexSolution:
    """A point of the convex program over ``patterns`` (P, n).

    ``U`` and ``V`` are (P, d): the blocks ``u_i`` (positive output weight) and ``v_i``
    (negative); ``b`` is the unpenalized output bias (None when the problem has none).
    """

    patterns: np.ndarray
    U: np.ndarray
    V: np.ndarray
    b: float | None = None

    def fit(self, Xa: np.ndarray) -> np.ndarray:
        """``sum_i D_i X (u_i - v_i) + b``."""
        XW = Xa @ (self.U - self.V).T  # (n, P)
        z = np.sum(XW * self.patterns.T, axis=1)
        return z + (self.b or 0.0)

    def penalty(self) -> float:
        return float(np.linalg.norm(self.U, axis=1).sum() + np.linalg.norm(self.V, axis=1).sum())

    def objective(self, problem: Problem) -> float:
        """The convex objective at this point (the cone constraints are not checked)."""
        z = self.fit(problem.Xa)
        return (
            losses.value(problem.loss, z, problem.y, problem.loss_scale)
            + problem.beta * self.penalty()
        )

    def max_violation(self, Xa: np.ndarray) -> float:
        """Largest cone violation ``max(0, -(2D_i - I) X w)`` over all blocks, relative to
        the scale of the fit entries ``max_k ||x_k|| * max_i ||w_i||``."""
        S = np.where(self.patterns, 1.0, -1.0)  # (P, n)
        W = np.vstack([self.U, self.V])
        scale = float(np.linalg.norm(Xa, axis=1).max() * np.linalg.norm(W, axis=1).max())
        if scale == 0.0:
            return 0.0
        viol = np.maximum(0.0, -(np.vstack([S, S]) * (W @ Xa.T)))
        return float(viol.max() / scale)

    def check_fits(self, n: int, d: int) -> None:
        """Raise ``ValueError`` (naming the field) unless this point fits a problem with
        ``n`` data points and ``d`` columns (bias column included); used for warm starts."""
        P = self.patterns.shape[0]
        if self.patterns.shape != (P, n):
            raise ValueError(
                f"warm_start.patterns: must be (P, n={n}), got shape {self.patterns.shape}"
            )
        for name, M in (("U", self.U), ("V", self.V)):
            if M.shape != (P, d):
                raise ValueError(
                    f"warm_start.{name}: must be (P={P}, d={d}) (P as in patterns, d the "
                    f"columns of X plus the bias column), got {M.shape}"
                )

    def zero_like(self) -> ConvexSolution:
        return ConvexSolution(
            self.patterns,
            np.zeros_like(self.U),
            np.zeros_like(self.V),
            None if self.b is None else 0.0,
        )


@dataclass
class SolverResult:
    """What a solver returns: status, objective, iterations, residuals, time, backend."""

    status: str  # "optimal" | "optimal_inaccurate" | "max_iters" | "time_limit" | "failed"
    objective: float
    solution: ConvexSolution
    iterations: int = 0
    primal_residual: float = float("nan")
    dual_residual: float = float("nan")
    duality_gap: float = float("nan")
    dual_objective: float = float("nan")
    wall_seconds: float = 0.0
    backend: str = ""
    info: dict[str, Any] = field(default_factory=dict)
    warm: Any = None  # solver-specific warm-start state (not serialized)
    # a dual point for the fit, DESIGN's sign convention (lambda = -grad l at the optimum),
    # when the solver provides one; the certificate projects and scales it, so any sign or
    # accuracy is safe to offer
    dual_fit: np.ndarray | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("optimal", "optimal_inaccurate")


class ConvexSolver(Protocol):
    """A solver of the convex program restricted to a pattern set."""

    name: str

    def solve(
        self,
        problem: Problem,
        patterns: np.ndarray,
        *,
        eps: float = 1e-6,
        warm_start: ConvexSolution | None = None,
        time_limit: float | None = None,
    ) -> SolverResult: ...
