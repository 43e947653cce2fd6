"""Convex solvers behind one interface: ``make_solver("scs" | "cvxpy", ...)``."""

from __future__ import annotations

from .base import ConvexSolution, ConvexSolver, SolverResult
from .cvxpy import CvxpySolver
from .scs import SCSSolver, available_linear_solvers, gpu_linear_solver

SOLVERS = ("scs", "cvxpy")


def make_solver(name: str = "scs", **options) -> ConvexSolver:
    """A solver by name: ``scs`` (options: ``linear_solver``, SCS settings) or ``cvxpy``
    (options: ``solver``, e.g. "CLARABEL", and that solver's settings)."""
    if name == "scs":
        return SCSSolver(**options)
    if name == "cvxpy":
        return CvxpySolver(**options)
    raise ValueError(f"solver: must be one of {', '.join(SOLVERS)}, got {name!r}")


__all__ = [
    "SOLVERS",
    "ConvexSolution",
    "ConvexSolver",
    "CvxpySolver",
    "SCSSolver",
    "SolverResult",
    "available_linear_solvers",
    "gpu_linear_solver",
    "make_solver",
]
