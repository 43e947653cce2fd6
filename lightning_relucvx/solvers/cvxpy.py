"""Reference solver: the vectorized convex program in cvxpy, any installed cvxpy solver."""

from __future__ import annotations

import time

import numpy as np

from ..problem import Problem
from .base import ConvexSolution, SolverResult

_TIGHT = {
    "CLARABEL": lambda eps: {
        "tol_gap_abs": eps,
        "tol_gap_rel": eps,
        "tol_feas": eps,
        "tol_ktratio": eps * 1e-2,
        "max_iter": 500,
    },
    "SCS": lambda eps: {"eps_abs": eps, "eps_rel": eps, "max_iters": 200_000, "scale": 1.0},
    "ECOS": lambda eps: {"abstol": eps, "reltol": eps, "feastol": eps},
}


class CvxpySolver:
    """The convex program modelled in cvxpy and handed to ``solver`` (default Clarabel)."""

    def __init__(self, solver: str = "CLARABEL", **options) -> None:
        import cvxpy as cp

        solver = solver.upper()
        if solver not in cp.installed_solvers():
            raise ValueError(
                f"solver: cvxpy solver {solver!r} is not installed "
                f"(installed: {', '.join(cp.installed_solvers())})"
            )
        self.solver = solver
        self.options = options
        self.name = f"cvxpy-{solver.lower()}"

    def solve(
        self,
        problem: Problem,
        patterns: np.ndarray,
        *,
        eps: float = 1e-8,
        warm_start: ConvexSolution | None = None,
        time_limit: float | None = None,
    ) -> SolverResult:
        import cvxpy as cp

        t0 = time.perf_counter()
        Xa, y = problem.Xa, problem.y
        d = Xa.shape[1]
        P = patterns.shape[0]
        Dt = patterns.T.astype(float)  # (n, P)
        St = 2 * Dt - 1
        U = cp.Variable((d, P))
        V = cp.Variable((d, P))
        b = cp.Variable() if problem.output_bias else 0.0
        z = cp.Variable(Xa.shape[0])
        fit_con = z == cp.sum(cp.multiply(Dt, Xa @ (U - V)), axis=1) + b
        s = problem.loss_scale
        if problem.loss == "squared":
            loss = s * 0.5 * cp.sum_squares(z - y)
        elif problem.loss == "logistic":
            loss = s * cp.sum(cp.logistic(-cp.multiply(y, z)))
        else:
            loss = s * cp.sum(cp.pos(1 - cp.multiply(y, z)))
        reg = cp.sum(cp.norm(U, 2, axis=0)) + cp.sum(cp.norm(V, 2, axis=0))
        cons = [fit_con, cp.multiply(St, Xa @ U) >= 0, cp.multiply(St, Xa @ V) >= 0]
        prob = cp.Problem(cp.Minimize(loss + problem.beta * reg), cons)
        opts = dict(_TIGHT.get(self.solver, lambda e: {})(eps), **self.options)
        if time_limit is not None and self.solver == "CLARABEL":
            opts["time_limit"] = float(time_limit)
        try:
            prob.solve(solver=self.solver, **opts)
        except cp.error.SolverError as exc:
            sol = ConvexSolution(
                patterns, np.zeros((P, d)), np.zeros((P, d)), 0.0 if problem.output_bias else None
            )
            return SolverResult(
                status="failed",
                objective=float("nan"),
                solution=sol,
                wall_seconds=time.perf_counter() - t0,
                backend=self.name,
                info={"error": str(exc)},
            )
        status = {"optimal": "optimal", "optimal_inaccurate": "optimal_inaccurate"}.get(
            prob.status, "failed"
        )
        Uv = np.zeros((d, P)) if U.value is None else U.value
        Vv = np.zeros((d, P)) if V.value is None else V.value
        bv = None
        if problem.output_bias:
            bv = float(b.value) if b.value is not None else 0.0
        sol = ConvexSolution(patterns, Uv.T.copy(), Vv.T.copy(), bv)
        stats = prob.solver_stats
        return SolverResult(
            status=status,
            objective=sol.objective(problem) if status != "failed" else float("nan"),
            solution=sol,
            iterations=int(stats.num_iters or 0),
            wall_seconds=time.perf_counter() - t0,
            backend=self.name,
            info={"cvxpy_status": prob.status, "solver_seconds": stats.solve_time},
            dual_fit=None if fit_con.dual_value is None else np.asarray(fit_con.dual_value),
        )
