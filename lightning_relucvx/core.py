"""The solver core: one function, :func:`solve`, used by the callback, the CLI and the service.

problem -> patterns -> convex solver -> pruning -> optimal network -> bounds -> :class:`Report`.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np

from . import bounds
from . import patterns as pt
from .problem import Network, Problem
from .solvers import SOLVERS, ConvexSolution, SolverResult, make_solver
from .weights import convex_to_network, network_to_convex, prune, width

# above this many nonzeros in the full conic form, ``auto`` uses the working-set solver
AUTO_FULL_FORM_NNZ = 200_000
# the syntax of two options, also the service schema's (ASCII digits only, as in JSON Schema)
DEVICE_SYNTAX = r"^(auto|cpu|cuda(:[0-9]+)?)$"
PATTERNS_SYNTAX = r"^(auto|own|all|given|sample:[0-9]+)$"
_DEVICE_RE = re.compile(DEVICE_SYNTAX)
_PATTERN_RE = re.compile(PATTERNS_SYNTAX)


@dataclass
class SolveOptions:
    """How to solve.

    ``patterns``: ``auto`` (the problem's own ``patterns`` if given, else the network's own,
    else all when enumerable, else ``sample:256``), ``own``, ``sample:K`` (own plus K sampled
    when there is a network), ``all`` (exact enumeration) or ``given``.
    """

    patterns: str = "auto"
    solver: str = "auto"
    eps: float = 1e-6
    linear_solver: str = "auto"
    cvxpy_solver: str = "CLARABEL"
    device: str = "auto"
    seed: int = 0
    time_limit: float | None = None
    max_enumerate: int = 20_000
    lower_bound: str = "auto"  # auto | exact | bound
    prune: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.patterns, str) or not _PATTERN_RE.match(self.patterns):
            raise ValueError(
                f"patterns: must be auto, own, all, given or sample:K, got {self.patterns!r}"
            )
        if self.solver not in ("auto", *SOLVERS):
            raise ValueError(
                f"solver: must be one of auto, {', '.join(SOLVERS)}, got {self.solver!r}"
            )
        if not (isinstance(self.eps, (int, float)) and 0 < self.eps < 1):
            raise ValueError(f"eps: must be in (0, 1), got {self.eps!r}")
        if not isinstance(self.device, str) or not _DEVICE_RE.match(self.device):
            raise ValueError(f"device: must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if self.time_limit is not None and not self.time_limit > 0:
            raise ValueError(f"time_limit: must be > 0 seconds, got {self.time_limit!r}")
        if self.lower_bound not in ("auto", "exact", "bound"):
            raise ValueError(f"lower_bound: must be auto, exact or bound, got {self.lower_bound!r}")

    def within(self, timeout: float | None) -> SolveOptions:
        """These options with ``time_limit`` lowered to ``timeout`` (None: unchanged)."""
        if timeout is None or (self.time_limit is not None and self.time_limit <= timeout):
            return self
        return replace(self, time_limit=timeout)

    def solver_name(self, n: int, d: int, num_patterns: int) -> str:
        """The solver ``auto`` stands for: SCS on the full conic form while that form is small
        (about ``2 P n d`` nonzeros), the working-set solver beyond, where the full form is
        slow or does not converge (benchmarks/README.md)."""
        if self.solver != "auto":
            return self.solver
        return "scs" if 2 * num_patterns * n * d <= AUTO_FULL_FORM_NNZ else "workset"

    def make_solver(self, n: int = 0, d: int = 0, num_patterns: int = 0):
        name = self.solver_name(n, d, num_patterns)
        if name == "scs":
            return make_solver("scs", linear_solver=self.linear_solver)
        if name == "workset":
            return make_solver("workset", linear_solver=self.linear_solver)
        if name == "firstorder":
            return make_solver("firstorder", device=self.device)
        return make_solver("cvxpy", solver=self.cvxpy_solver)


@dataclass
class Report:
    """Everything one solve establishes, in the objective's own units."""

    status: str
    convex_objective: float
    num_patterns: int
    num_neurons: int
    solver: str
    iterations: int
    solve_seconds: float
    upper_bound: float
    lower_bound: float
    lower_bound_certified: bool
    lower_bound_method: str
    pattern_mode: str
    nonconvex_objective: float | None = None
    convex_objective_own: float | None = None
    num_patterns_own: int | None = None
    local_gap: float | None = None
    relative_local_gap: float | None = None
    global_gap_lower: float | None = None
    global_gap_upper: float | None = None
    lower_bound_estimate: float | None = None
    primal_residual: float = math.nan
    dual_residual: float = math.nan
    duality_gap: float = math.nan
    max_violation: float = math.nan
    loss: str = "squared"
    beta: float = math.nan
    n: int = 0
    d: int = 0
    optimal_network: Network | None = field(default=None, repr=False)
    solution: ConvexSolution | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.status in ("optimal", "optimal_inaccurate")

    def to_dict(self, include_weights: bool = False) -> dict[str, Any]:
        """JSON-ready dict (NaN becomes None); weights under ``optimal_weights`` if asked."""
        out = {k: v for k, v in asdict(self).items() if k not in ("optimal_network", "solution")}
        out = {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in out.items()
        }
        if include_weights and self.optimal_network is not None:
            out["optimal_weights"] = self.optimal_network.to_dict()
        return out

    @classmethod
    def from_dict(
        cls,
        data: dict[str, Any],
        optimal_network: Network | None = None,
        solution: ConvexSolution | None = None,
    ) -> Report:
        """Inverse of :meth:`to_dict` (``None`` back to NaN where the field is a float);
        keys that are not fields (such as ``optimal_weights``) are ignored."""
        kwargs: dict[str, Any] = {}
        for f in fields(cls):
            if f.name in ("optimal_network", "solution") or f.name not in data:
                continue
            value = data[f.name]
            if value is None and isinstance(f.default, float) and math.isnan(f.default):
                value = math.nan
            kwargs[f.name] = value
        return cls(**kwargs, optimal_network=optimal_network, solution=solution)


def resolve_patterns(
    problem: Problem, options: SolveOptions
) -> tuple[str, np.ndarray, np.ndarray | None]:
    """The pattern mode used, the pattern set to solve over and the network's own set."""
    Xa = problem.Xa
    own = None
    if problem.network is not None:
        net = problem.network
        own = pt.from_weights(Xa, net.first_layer(), net.w2)
    mode = options.patterns
    if mode == "auto":
        if problem.patterns is not None:
            mode = "given"
        elif own is not None:
            mode = "own"
        elif pt.enumerable(Xa, options.max_enumerate, max_rank=3):
            mode = "all"
        else:
            mode = "sample:256"
    if mode == "given":
        if problem.patterns is None:
            raise ValueError("patterns: 'given' but the problem has no pattern matrix")
        chosen = pt.unique(problem.patterns)
    elif mode == "own":
        if own is None:
            raise ValueError("patterns: 'own' needs network weights (W1, w2)")
        chosen = own
    elif mode == "all":
        chosen = pt.enumerate_all(Xa, options.max_enumerate)
    else:
        k = int(mode.split(":")[1])
        chosen = (
            pt.combine(own, pt.sample(Xa, k, options.seed))
            if own is not None
            else pt.sample(Xa, k, options.seed)
        )
    return mode, chosen, own


def _solve_over(
    problem: Problem,
    pats: np.ndarray,
    options: SolveOptions,
    solver,
    warm: ConvexSolution | None,
    deadline: float | None,
) -> SolverResult:
    remaining = None if deadline is None else max(deadline - time.perf_counter(), 1e-3)
    if pats.shape[0] == 0:
        # no live pattern (e.g. every neuron dead): the program over the empty set is the
        # same as over the all-zero pattern, whose blocks can only be zero
        pats = np.zeros((1, problem.n), dtype=bool)
    return solver.solve(problem, pats, eps=options.eps, warm_start=warm, time_limit=remaining)


def _worst(*statuses: str) -> str:
    order = [
        "optimal",
        "optimal_inaccurate",
        "max_iters",
        "time_limit",
        "failed",
        "infeasible",
        "unbounded",
        "interrupted",
    ]
    return max(statuses, key=lambda s: order.index(s) if s in order else len(order))


def solve(
    problem: Problem, options: SolveOptions | None = None, warm_start: ConvexSolution | None = None
) -> Report:
    """Solve the convex program for ``problem`` and certify what it finds.

    With network weights: ``F``, ``p_own`` (local gap), ``p_S`` when the pattern set is
    larger than the network's own, and the dual lower bound. ``warm_start`` (a previous
    solution, else the network's own convex point where the solver gains from it) seeds the
    solver; blocks are matched by pattern. The answer is the same with or without it; only
    the time differs.
    """
    options = options or SolveOptions()
    t0 = time.perf_counter()
    deadline = None if options.time_limit is None else t0 + options.time_limit
    mode, chosen, own = resolve_patterns(problem, options)
    solver = options.make_solver(problem.n, problem.d, max(chosen.shape[0], 1))
    net = problem.network

    if warm_start is not None:
        warm_start.check_fits(problem.n, problem.d)
    F = None
    res_own = None
    if net is not None and own is not None:
        F = bounds.nonconvex_objective(problem, net)
        # the network's own point seeds the own-pattern solve (with the working set's
        # carry_blocks, six own solves of the warm-start benchmark took 8.95 s seeded
        # against 15.27 s cold)
        seed = warm_start if warm_start is not None else network_to_convex(problem, net)
        res_own = _solve_over(problem, own, options, solver, seed, deadline)
    if res_own is not None and mode == "own":
        res = res_own
    else:
        seed = res_own.solution if res_own is not None else warm_start
        res = _solve_over(problem, chosen, options, solver, seed, deadline)

    sol = (
        prune(problem, res.solution, rtol=max(1e-7, options.eps)) if options.prune else res.solution
    )
    network = convex_to_network(problem, sol)
    upper = bounds.nonconvex_objective(problem, network)

    # dual lower bound: at the optimal network's predictions and at the given network's
    want_exact = options.lower_bound == "exact" or (
        options.lower_bound == "auto" and pt.enumerable(problem.Xa, options.max_enumerate, 3)
    )
    enumerated = (
        chosen
        if mode == "all"
        else (pt.enumerate_all(problem.Xa, options.max_enumerate) if want_exact else None)
    )
    # every candidate dual point is projected and scaled into feasibility, so each gives a
    # valid bound; the solver's own dual (either sign) helps where the loss is not smooth
    duals = [bounds.dual_point(problem, network.predict(problem.X))]
    if net is not None:
        duals.append(bounds.dual_point(problem, net.predict(problem.X)))
    if res.dual_fit is not None and np.all(np.isfinite(res.dual_fit)):
        duals += [res.dual_fit, -res.dual_fit]
    lbs = [bounds.lower_bound(problem, lam=lam, enumerated=enumerated) for lam in duals]
    lb = max(lbs, key=lambda b: b.value)
    estimate = None
    if enumerated is None:
        est = bounds.lower_bound(problem, lam=duals[0], sampled=chosen)
        estimate = max(est.value, lb.value)

    statuses = [res.status] + ([res_own.status] if res_own is not None else [])
    p_S = res.objective
    report = Report(
        status=_worst(*statuses),
        convex_objective=p_S,
        num_patterns=int(chosen.shape[0]),
        num_neurons=width(sol),
        solver=res.backend,
        iterations=res.iterations
        + (res_own.iterations if res_own is not None and res_own is not res else 0),
        solve_seconds=time.perf_counter() - t0,
        upper_bound=upper,
        lower_bound=lb.value,
        lower_bound_certified=lb.certified,
        lower_bound_method=lb.method,
        pattern_mode=mode,
        lower_bound_estimate=estimate,
        primal_residual=res.primal_residual,
        dual_residual=res.dual_residual,
        duality_gap=res.duality_gap,
        max_violation=res.solution.max_violation(problem.Xa),
        loss=problem.loss,
        beta=problem.beta,
        n=problem.n,
        d=problem.d,
        optimal_network=network,
        solution=sol,
    )
    if F is not None and res_own is not None:
        p_own = res_own.objective
        report.nonconvex_objective = F
        report.convex_objective_own = p_own
        report.num_patterns_own = int(own.shape[0])
        report.local_gap = F - p_own
        report.relative_local_gap = (F - p_own) / max(abs(F), 1e-300)
        report.global_gap_lower = max(0.0, F - min(p_S, upper, F))
        report.global_gap_upper = F - lb.value
    return report
