"""Solver clients behind one interface: in-process (default) and HTTP (the solver service).

Every client has ``solve(...) -> Report`` (blocking) and ``submit(...) -> Future[Report]``.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol, runtime_checkable

from .core import Report, SolveOptions, solve
from .problem import Problem
from .solvers import ConvexSolution


@runtime_checkable
class SolverClient(Protocol):
    """What the callback needs from a solver."""

    name: str

    def solve(
        self,
        problem: Problem,
        options: SolveOptions | None = None,
        *,
        warm_start: ConvexSolution | None = None,
        timeout: float | None = None,
    ) -> Report: ...

    def submit(
        self,
        problem: Problem,
        options: SolveOptions | None = None,
        *,
        warm_start: ConvexSolution | None = None,
        timeout: float | None = None,
    ) -> Future[Report]: ...

    def info(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class InProcessSolver:
    """Solves in this process on a background thread pool (SCS releases the GIL)."""

    name = "in-process"

    def __init__(self, max_workers: int = 1) -> None:
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="relucvx-solve")

    def solve(
        self,
        problem: Problem,
        options: SolveOptions | None = None,
        *,
        warm_start: ConvexSolution | None = None,
        timeout: float | None = None,
    ) -> Report:
        options = options or SolveOptions()
        if timeout is not None and (options.time_limit is None or options.time_limit > timeout):
            options = SolveOptions(**{**options.__dict__, "time_limit": timeout})
        return solve(problem, options, warm_start=warm_start)

    def submit(
        self,
        problem: Problem,
        options: SolveOptions | None = None,
        *,
        warm_start: ConvexSolution | None = None,
        timeout: float | None = None,
    ) -> Future[Report]:
        return self._pool.submit(
            self.solve, problem, options, warm_start=warm_start, timeout=timeout
        )

    def info(self) -> dict[str, Any]:
        from . import __version__
        from .solvers import available_linear_solvers, gpu_linear_solver

        return {
            "client": self.name,
            "version": __version__,
            "linear_solvers": list(available_linear_solvers()),
            "gpu": gpu_linear_solver(),
        }

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
