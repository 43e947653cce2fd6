"""Convex solvers behind one interface: ``make_solver("scs" | "cvxpy", ...)``."""

from __future__ import annotations

from .base import ConvexSolution, ConvexSolver, SolverResult
from .cvxpy import CvxpySolver
from .firstorder import FirstOrderSolver
from .scs import SCSSolver, available_linear_solvers, gpu_linear_solver
from .workset import WorkingSetSolver

SOLVERS = ("scs", "cvxpy", "workset", "firstorder")


def make_solver(name: str = "scs", **options) -> ConvexSolver:
    """A solver by name: ``scs`` (options: ``linear_solver``, SCS settings) or ``cvxpy``
    (options: ``solver``, e.g. "CLARABEL", and that solver's settings) or ``workset``
    (working set of blocks and cone rows, verified against the full program; options:
    ``inner`` "clarabel" | "scs", ``linear_solver``, SCS settings) or ``firstorder``
    (augmented Lagrangian + FISTA in PyTorch, matrix-free; options: ``device``, ``rho``,
    ``max_iters``, ``gap_tol``)."""
    if name == "scs":
        return SCSSolver(**options)
    if name == "cvxpy":
        return CvxpySolver(**options)
    if name == "workset":
        return WorkingSetSolver(**options)
    if name == "firstorder":
        return FirstOrderSolver(**options)
    raise ValueError(f"solver: must be one of {', '.join(SOLVERS)}, got {name!r}")


__all__ = [
    "SOLVERS",
    "ConvexSolution",
    "ConvexSolver",
    "CvxpySolver",
    "FirstOrderSolver",
    "SCSSolver",
    "SolverResult",
    "WorkingSetSolver",
    "available_linear_solvers",
    "gpu_linear_solver",
    "make_solver",
]
