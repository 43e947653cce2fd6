"""Is a trained network globally optimal? The paper's polynomial-time check (consequence (ii)).

A network is globally optimal iff it solves the convex program over its own patterns
(``F = p_own``: stationary in the paper's sense) and its residual ``lambda = -grad l(yhat)``
satisfies ``max_{||u||<=1} |lambda^T (X u)_+| <= beta``. Verdicts:

- ``global_optimum``: ``F - LB <= tol * F`` for a dual lower bound ``LB``. ``certified`` when
  ``LB`` is certified (exact enumeration of the patterns, or the always-valid norm bound);
  otherwise the dual test passed only on sampled patterns (an estimate).
- ``not_stationary``: ``F - p_own > tol * F``; the network with the same patterns that the
  convex program gives is strictly better (``certified`` when its objective, evaluated exactly,
  is below ``F``).
- ``stationary_not_global``: ``F = p_own`` (to ``tol``) but a direction ``u`` violates the dual
  test; adding the small neuron ``w = t u, alpha = sign * t`` lowers ``F`` by about
  ``t^2 (|lambda^T (X u)_+| - beta)``. ``certified`` when that decrease is verified by
  evaluating the enlarged network.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import minimize_scalar

from .. import bounds, core, losses
from .. import patterns as pt
from ..problem import Network, Problem
from ..solvers import SOLVERS

VERDICTS = ("global_optimum", "stationary_not_global", "not_stationary")


@dataclass
class CheckOptions:
    """How to check.

    ``tol``: relative tolerance on objective gaps (``gap <= tol * F``). Patterns are enumerated
    exactly when the data's rank is at most ``max_rank`` and Cover's count is at most
    ``max_enumerate``, or when the count is at most ``enumerate_any_rank``; otherwise the
    dual test uses ``samples`` Gaussian patterns plus an ascent search (an estimate) and the
    certified bound is the norm bound.
    """

    tol: float = 1e-5
    max_enumerate: int = 20_000
    max_rank: int = 3
    enumerate_any_rank: int = 2_000
    samples: int = 1_000
    seed: int = 0
    solver: str = "scs"
    eps: float = 1e-7
    time_limit: float | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.tol, (int, float)) and 0 < self.tol < 1):
            raise ValueError(f"tol: must be in (0, 1), got {self.tol!r}")
        for name in ("max_enumerate", "max_rank", "enumerate_any_rank", "samples"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name}: must be a non-negative integer, got {value!r}")
        if self.solver not in SOLVERS:
            raise ValueError(f"solver: must be one of {', '.join(SOLVERS)}, got {self.solver!r}")
        if not (isinstance(self.eps, (int, float)) and 0 < self.eps < 1):
            raise ValueError(f"eps: must be in (0, 1), got {self.eps!r}")
        if self.time_limit is not None and not self.time_limit > 0:
            raise ValueError(f"time_limit: must be > 0 seconds, got {self.time_limit!r}")

    def solve_options(self, patterns: str) -> core.SolveOptions:
        return core.SolveOptions(
            patterns=patterns,
            solver=self.solver,
            eps=self.eps,
            seed=self.seed,
            time_limit=self.time_limit,
            max_enumerate=self.max_enumerate,
            lower_bound="bound",
        )


def all_patterns(problem: Problem, options: CheckOptions) -> np.ndarray | None:
    """Every pattern of the data when enumeration is practical (see :class:`CheckOptions`)."""
    Xa = problem.Xa
    r = pt.data_rank(Xa)
    count = pt.cover_count(Xa.shape[0], r)
    small_rank = r <= options.max_rank and count <= options.max_enumerate
    if not (small_rank or count <= options.enumerate_any_rank):
        return None
    limit = max(options.max_enumerate, options.enumerate_any_rank)
    key = (Xa.shape, Xa.tobytes(), limit)
    if key not in _ENUMERATED:
        try:
            found = pt.enumerate_all(Xa, limit)
        except ValueError:
            found = None
        if len(_ENUMERATED) >= 8:
            _ENUMERATED.pop(next(iter(_ENUMERATED)))
        _ENUMERATED[key] = found
    return _ENUMERATED[key]


# enumeration is the costly step on repeated checks of one data set: keep the last few
_ENUMERATED: dict[tuple, np.ndarray | None] = {}


def search_patterns(
    Xa: np.ndarray, lam: np.ndarray, base: np.ndarray, samples: int, seed: int, iters: int = 25
) -> np.ndarray:
    """Candidate patterns for ``max |lam^T (X u)_+|`` when enumeration is out of reach:
    ``base`` plus ``samples`` Gaussian patterns plus fixed-point ascent ``u <- X^T D(u) lam``
    from random starts and from each ``base`` cone's direction. Not exhaustive."""
    rng = np.random.default_rng(seed)
    found = [base, pt.sample(Xa, samples, seed)]
    starts = rng.standard_normal((32, Xa.shape[1]))
    if base.shape[0]:
        starts = np.vstack([starts, (base * lam) @ Xa])
    for sign in (1.0, -1.0):
        for u in starts:
            seen = []
            for _ in range(iters):
                d = Xa @ u >= 0
                seen.append(d)
                g = sign * (Xa.T @ (d * lam))
                norm = float(np.linalg.norm(g))
                if norm == 0.0:
                    break
                u_next = g / norm
                if np.array_equal(Xa @ u_next >= 0, d):
                    break
                u = u_next
            found.append(np.array(seen))
    return pt.combine(*found)


@dataclass
class DescentNeuron:
    """A small neuron ``w = step * direction``, ``alpha = sign * step`` that lowers ``F``.

    ``rate`` is ``-dF/d(step^2)`` at 0: ``sign * lambda0^T (X u)_+ - beta`` with the loss's
    negative gradient ``lambda0``; ``objective`` is ``F`` of :attr:`network`, evaluated exactly.
    """

    direction: np.ndarray
    sign: int
    dual_value: float
    rate: float
    step: float
    objective: float
    decrease: float
    network: Network = field(repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "u": self.direction.tolist(),
            "sign": self.sign,
            "dual_value": self.dual_value,
            "rate": self.rate,
            "step": self.step,
            "objective": self.objective,
            "decrease": self.decrease,
        }


def add_neuron(problem: Problem, network: Network, w: np.ndarray, alpha: float) -> Network:
    """``network`` with one more neuron; ``w`` is in the augmented space (bias last)."""
    d_raw = problem.X.shape[1]
    W1 = np.vstack([network.W1, w[None, :d_raw]])
    b1 = None
    if network.b1 is not None:
        b1 = np.concatenate([network.b1, [w[d_raw]]])
    return Network(W1=W1, w2=np.concatenate([network.w2, [alpha]]), b1=b1, b2=network.b2)


def descent_neuron(problem: Problem, network: Network, u: np.ndarray, sign: int) -> DescentNeuron:
    """Add a neuron along unit ``u`` with output sign ``sign`` and the step that minimizes ``F``
    along that ray (closed form for the squared loss, a bounded line search otherwise)."""
    u = np.asarray(u, float) / max(float(np.linalg.norm(u)), 1e-300)
    yhat = network.predict(problem.X)
    a = np.maximum(problem.Xa @ u, 0.0)
    lam0 = -losses.gradient(problem.loss, yhat, problem.y, problem.loss_scale)
    dual_value = float(sign * bounds.dual_point(problem, yhat) @ a)
    rate = float(sign * lam0 @ a - problem.beta)
    F0 = bounds.nonconvex_objective(problem, network)

    def phi(tau: float) -> float:
        z = yhat + sign * tau * a
        return losses.value(problem.loss, z, problem.y, problem.loss_scale) + problem.beta * tau

    tau = 0.0
    aa = float(a @ a)
    if rate > 0 and aa > 0:
        if problem.loss == "squared":
            tau = rate / (problem.loss_scale * aa)
        else:
            hi = rate / (problem.loss_scale * aa)
            for _ in range(60):
                if phi(2 * hi) >= phi(hi):
                    break
                hi *= 2
            res = minimize_scalar(phi, bounds=(0.0, 2 * hi), method="bounded")
            tau = float(res.x) if phi(float(res.x)) < phi(0.0) else 0.0
    t = math.sqrt(tau)
    enlarged = add_neuron(problem, network, t * u, sign * t)
    F1 = bounds.nonconvex_objective(problem, enlarged)
    return DescentNeuron(u, int(sign), dual_value, rate, t, F1, F0 - F1, enlarged)


@dataclass
class CheckResult:
    """The verdict on one network and the numbers it rests on (objective's own units)."""

    verdict: str
    certified: bool
    reason: str
    nonconvex_objective: float
    convex_objective_own: float
    local_gap: float
    lower_bound: float
    lower_bound_certified: bool
    lower_bound_method: str
    global_gap_upper: float
    dual_violation: float
    dual_violation_bound: float
    dual_violation_method: str
    beta: float
    tol: float
    num_patterns_own: int
    num_patterns_checked: int
    solver_status: str
    improved_objective: float
    lower_bound_estimate: float | None = None
    descent: DescentNeuron | None = None
    improved_network: Network | None = field(default=None, repr=False)

    def to_dict(self, include_weights: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in self.__dict__.items():
            if key in ("descent", "improved_network"):
                continue
            if isinstance(value, float) and not math.isfinite(value):
                value = None
            out[key] = value
        out["descent"] = None if self.descent is None else self.descent.to_dict()
        if include_weights:
            if self.improved_network is not None:
                out["improved_weights"] = self.improved_network.to_dict()
            if self.descent is not None:
                out["descent"]["weights"] = self.descent.network.to_dict()
        return out


def _empty_optimum(problem: Problem) -> Network:
    """The best network with no active neuron: zero, plus the best output bias if any."""
    zero = np.zeros(problem.n)
    b2 = None
    if problem.output_bias:

        def loss_at(b: float) -> float:
            return losses.value(problem.loss, zero + b, problem.y, problem.loss_scale)

        candidates = [0.0, -1.0, 1.0, float(np.mean(problem.y))]
        lo, hi = float(np.min(problem.y)) - 1.0, float(np.max(problem.y)) + 1.0
        candidates.append(float(minimize_scalar(loss_at, bounds=(lo, hi), method="bounded").x))
        b2 = min(candidates, key=loss_at)
    d_raw = problem.X.shape[1]
    return Network(
        W1=np.zeros((1, d_raw)),
        w2=np.zeros(1),
        b1=np.zeros(1) if problem.bias else None,
        b2=b2,
    )


def check(problem: Problem, options: CheckOptions | None = None) -> CheckResult:
    """Classify ``problem.network`` as ``global_optimum``, ``stationary_not_global`` or
    ``not_stationary`` (see the module docstring for what each verdict rests on)."""
    options = options or CheckOptions()
    net = problem.network
    if net is None:
        raise ValueError("W1/w2: the check needs a network (W1 and w2)")
    F = bounds.nonconvex_objective(problem, net)
    atol = options.tol * max(abs(F), 1e-12)
    Xa = problem.Xa
    own = pt.from_weights(Xa, net.first_layer(), net.w2)

    # the convex program over the network's own patterns: p_own and a better network
    if own.shape[0]:
        rep = core.solve(problem.with_patterns(None), options.solve_options("own"))
        p_own = float(rep.convex_objective_own)
        improved, improved_F, status = rep.optimal_network, float(rep.upper_bound), rep.status
    else:
        improved = _empty_optimum(problem)
        improved_F = p_own = bounds.nonconvex_objective(problem, improved)
        status = "optimal"
    local_gap = F - p_own

    # the dual test at the network's residual
    yhat = net.predict(problem.X)
    lam = bounds.dual_point(problem, yhat)
    bound = bounds.dual_scale_bound(Xa, lam)
    enumerated = all_patterns(problem, options)
    estimate = None
    if enumerated is not None:
        checked = enumerated
        s, u, sign = bounds.dual_scale_exact(Xa, lam, enumerated)
        method = "exact_enumeration"
        lbs = [bounds.lower_bound(problem, yhat, enumerated=enumerated)]
        bound = s
    else:
        checked = search_patterns(Xa, lam, own, options.samples, options.seed)
        s, u, sign = bounds.dual_scale_exact(Xa, lam, checked)
        method = "sampled_estimate"
        lbs = [bounds.lower_bound(problem, yhat)]
        # the maximizer's own cone attains the sampled max: one pattern gives the estimate
        estimate = bounds.lower_bound(problem, yhat, sampled=pt.pattern_of(Xa, u[None, :])).value
    if F - lbs[0].value > atol:  # the optimum over own patterns may certify more
        yhat_own = improved.predict(problem.X)
        lbs.append(bounds.lower_bound(problem, yhat_own, enumerated=enumerated))
    lb = max(lbs, key=lambda b: b.value)

    beta = problem.beta
    descent = None
    if s > beta and F - lb.value > atol:
        descent = descent_neuron(problem, net, u, sign)

    if F - lb.value <= atol:
        verdict, certified = "global_optimum", True
        reason = (
            f"F - LB = {F - lb.value:.3g} <= tol * F with a certified lower bound ({lb.method})"
        )
    elif local_gap > atol:
        verdict, certified = "not_stationary", improved_F < F
        reason = (
            f"F - p_own = {local_gap:.3g} > tol * F: the convex program over the network's own "
            f"{own.shape[0]} pattern(s) gives a network with objective {improved_F:.6g}"
        )
    elif s > beta:
        verdict = "stationary_not_global"
        certified = descent is not None and descent.objective < F
        reason = (
            f"F = p_own (to tol) but max |lambda^T (X u)_+| = {s:.6g} > beta = {beta:.6g} "
            f"({method}); adding a small neuron along u lowers F by "
            f"{descent.decrease if descent else 0.0:.3g}"
        )
    else:
        verdict, certified = "global_optimum", False
        if method == "sampled_estimate":
            reason = (
                f"stationary and max |lambda^T (X u)_+| <= beta on {checked.shape[0]} sampled "
                f"patterns only (an estimate; the certified bound gives F - LB = "
                f"{F - lb.value:.3g})"
            )
        else:
            reason = (
                f"stationary and dual feasible, but F - LB = {F - lb.value:.3g} exceeds tol * F "
                "(the network is optimal only approximately)"
            )
    if status not in ("optimal", "optimal_inaccurate"):
        reason += f"; note: the solve over the own patterns ended {status!r}"
    return CheckResult(
        verdict=verdict,
        certified=bool(certified),
        reason=reason,
        nonconvex_objective=F,
        convex_objective_own=p_own,
        local_gap=local_gap,
        lower_bound=lb.value,
        lower_bound_certified=lb.certified,
        lower_bound_method=lb.method,
        global_gap_upper=F - lb.value,
        dual_violation=float(s),
        dual_violation_bound=float(bound),
        dual_violation_method=method,
        beta=beta,
        tol=options.tol,
        num_patterns_own=int(own.shape[0]),
        num_patterns_checked=int(checked.shape[0]),
        solver_status=status,
        improved_objective=improved_F,
        lower_bound_estimate=estimate,
        descent=descent,
        improved_network=improved,
    )
