"""The paper's explicit descent path (consequence (iii)): from any network to the optimum of
its sublevel set, continuous, with a non-increasing objective.

The path lives in a fixed parameter space: ``width`` neuron slots (the network's own, padded
with zero neurons when the path needs more). Its stages, each a straight line in the
coordinates named:

1. ``balance`` (per-neuron scale ``c``): ``(w, alpha) -> (c w, alpha / c)`` from ``c = 1`` to
   ``sqrt(|alpha| / ||w||)``; the output is unchanged and ``||c w||^2 + (alpha/c)^2`` is convex
   in ``c`` with its minimum at the end. Neurons with no output shrink to zero.
2. ``merge`` (convex blocks ``q = w |alpha|``): neurons with the same pattern and sign pour into
   the first of them, ``q_1 + t sum_k q_k`` and ``(1 - t) q_k``; the fit is unchanged and the
   penalty ``||q_1 + t S|| + (1 - t) sum ||q_k||`` has derivative ``<= 0`` (Cauchy-Schwarz).
3. ``prune``: blocks scale by ``1 - t (1 - s_k)`` to the pruned solution (:func:`weights.prune`);
   the fit is unchanged all along and the penalty is linear in ``t``, so it cannot increase.
4. ``interpolate``: ``(1 - t) z_0 + t z*`` to the convex optimum ``z*`` over a pattern set that
   contains the network's own; the objective is convex along the segment and smallest at its
   end, hence non-increasing. The segment ends at its numerically best point.

Blocks map to neurons by ``w = q / sqrt(||q||), alpha = sign sqrt(||q||)``, which is
continuous (``q -> 0`` gives the zero neuron), so the whole path is continuous.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import bounds, core
from .. import patterns as pt
from ..problem import Network, Problem
from ..weights import Blocks, prune
from .check import CheckOptions, all_patterns

STAGES = ("balance", "merge", "prune", "interpolate")


@dataclass
class PathOptions(CheckOptions):
    """:class:`CheckOptions` (enumeration, sampling, solver) plus the path's sampling. The
    end is solved to ``eps = 1e-9`` by default: the dual certificate at the end's residual is
    only as tight as the square root of the solve's accuracy. When the data are too large to
    enumerate, the end solve uses the own patterns plus ``samples`` (default 100) sampled ones;
    with ``time_limit`` the path still never increases (it stops at the best point of the
    last segment), it only ends higher."""

    eps: float = 1e-9
    samples: int = 100
    points_per_stage: int = 25


def _network(problem: Problem, W: np.ndarray, alpha: np.ndarray, b2: float | None) -> Network:
    d_raw = problem.X.shape[1]
    if problem.bias:
        return Network(W1=W[:, :d_raw].copy(), w2=alpha.copy(), b1=W[:, d_raw].copy(), b2=b2)
    return Network(W1=W.copy(), w2=alpha.copy(), b1=None, b2=b2)


def _blocks_to_neurons(Q: np.ndarray, signs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    norms = np.linalg.norm(Q, axis=1)
    root = np.sqrt(norms)
    W = np.divide(Q, root[:, None], out=np.zeros_like(Q), where=root[:, None] > 0)
    return W, signs * root


@dataclass
class Stage:
    """One straight stage of the path; :meth:`network` maps ``t`` in [0, 1] to a network."""

    name: str
    kind: str  # "scale" (balance) or "blocks" (merge, prune, interpolate)
    start: Any
    end: Any
    signs: np.ndarray | None = None
    b: tuple[float | None, float | None] = (None, None)

    def network(self, problem: Problem, t: float) -> Network:
        b0, b1 = self.b
        b2 = None if b0 is None else (1 - t) * b0 + t * (b1 if b1 is not None else b0)
        if self.kind == "scale":
            W0, a0, c_end, dead = self.start
            c = 1.0 + t * (c_end - 1.0)
            W = W0 * c[:, None]
            alpha = a0 / c
            W[dead] = (1 - t) * W0[dead]
            alpha[dead] = (1 - t) * a0[dead]
            return _network(problem, W, alpha, b2)
        Q = (1 - t) * self.start + t * self.end
        W, alpha = _blocks_to_neurons(Q, self.signs)
        return _network(problem, W, alpha, b2)


@dataclass
class DescentPath:
    """The path, its samples (``s`` in [0, number of stages]) and what its end is."""

    stages: list[Stage]
    s: np.ndarray
    stage_of: list[str]
    objectives: np.ndarray
    width: int
    start_width: int
    pruned_width: int
    optimal_width: int
    optimum_objective: float
    lower_bound: float
    lower_bound_certified: bool
    lower_bound_method: str
    pattern_mode: str
    tol: float
    problem: Problem = field(repr=False)

    @property
    def start_objective(self) -> float:
        return float(self.objectives[0])

    @property
    def end_objective(self) -> float:
        return float(self.objectives[-1])

    @property
    def non_increasing(self) -> bool:
        """No increase between consecutive samples beyond round-off (``1e-12`` relative)."""
        return self.max_increase <= 1e-12 * max(abs(self.start_objective), 1e-300)

    @property
    def max_increase(self) -> float:
        """Largest increase between consecutive samples (0 for a non-increasing path)."""
        diffs = np.diff(self.objectives)
        return float(max(0.0, diffs.max(initial=0.0)))

    def network(self, s: float) -> Network:
        """The network at path parameter ``s`` (stage ``floor(s)``, local ``t = s - floor(s)``)."""
        k = min(math.floor(s), len(self.stages) - 1)
        return self.stages[k].network(self.problem, float(s - k))

    @property
    def end(self) -> Network:
        return self.network(float(len(self.stages)))

    @property
    def certified(self) -> bool:
        """The end is the global optimum to within ``tol`` (relative), by a certified bound."""
        gap = self.end_objective - self.lower_bound
        return self.lower_bound_certified and gap <= self.tol * max(abs(self.end_objective), 1e-12)

    def to_dict(self, include_weights: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "start_objective": self.start_objective,
            "end_objective": self.end_objective,
            "optimum_objective": self.optimum_objective,
            "lower_bound": self.lower_bound,
            "lower_bound_certified": self.lower_bound_certified,
            "lower_bound_method": self.lower_bound_method,
            "certified": self.certified,
            "tol": self.tol,
            "pattern_mode": self.pattern_mode,
            "non_increasing": self.non_increasing,
            "max_increase": self.max_increase,
            "width": self.width,
            "start_width": self.start_width,
            "pruned_width": self.pruned_width,
            "optimal_width": self.optimal_width,
            "extra_neurons": max(0, self.width - self.start_width),
            "stages": [st.name for st in self.stages],
            "points": [
                {"s": float(s), "stage": st, "objective": float(f)}
                for s, st, f in zip(self.s, self.stage_of, self.objectives)
            ],
        }
        if include_weights:
            out["end_weights"] = self.end.to_dict()
        return out


def _key(pattern: np.ndarray, sign: float) -> bytes:
    return np.packbits(pattern).tobytes() + (b"+" if sign > 0 else b"-")


def _best_on_segment(f, iters: int = 60) -> float:
    """The minimizer of a convex ``f`` on [0, 1] (golden section), preferring ``t = 1``."""
    a, b = 0.0, 1.0
    g = (math.sqrt(5.0) - 1) / 2
    for _ in range(iters):
        c1, c2 = b - g * (b - a), a + g * (b - a)
        if f(c1) <= f(c2):
            b = c2
        else:
            a = c1
    t = 0.5 * (a + b)
    return t if f(t) < f(1.0) else 1.0


def _objective_of(problem: Problem, Q: np.ndarray, signs: np.ndarray, b2: float | None) -> float:
    W, alpha = _blocks_to_neurons(Q, signs)
    return bounds.nonconvex_objective(problem, _network(problem, W, alpha, b2))


def _assign_slots(
    Q: np.ndarray, signs: np.ndarray, pats: np.ndarray, opt: Blocks
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start and end blocks of the interpolation, slot by slot: each optimal block goes to the
    slot holding the same (pattern, sign), else to an empty slot, else to a new slot."""
    m, d = Q.shape
    nonzero = np.any(Q != 0, axis=1)
    slot_of = {_key(pats[j], signs[j]): j for j in np.flatnonzero(nonzero)}
    free = [j for j in range(m) if not nonzero[j]]
    starts, ends, out_signs = list(Q), [np.zeros(d) for _ in range(m)], list(signs)
    for p, s, q in zip(opt.patterns, opt.signs, opt.Q):
        key = _key(p, s)
        if key in slot_of:
            j = slot_of[key]
        elif free:
            j = free.pop(0)
        else:
            j = len(starts)
            starts.append(np.zeros(d))
            ends.append(np.zeros(d))
            out_signs.append(1.0)
        ends[j] = ends[j] + q
        out_signs[j] = float(s)
    return np.array(starts), np.array(ends), np.array(out_signs)


def descent_path(problem: Problem, options: PathOptions | None = None) -> DescentPath:
    """The explicit path from ``problem.network`` to the convex optimum (see module docstring).

    The target optimum is over every pattern when enumeration is practical (the global optimum
    ``p*``), else over the network's own patterns plus ``options.samples`` sampled ones
    (``p_S``, an upper bound on ``p*``; the result says which).
    """
    options = options or PathOptions()
    net = problem.network
    if net is None:
        raise ValueError("W1/w2: the path needs a network (W1 and w2)")
    Xa = problem.Xa
    W0 = net.first_layer().astype(float)
    a0 = net.w2.astype(float)
    m = W0.shape[0]
    b0 = net.b2 if problem.output_bias else None

    # 1. balance
    wn = np.linalg.norm(W0, axis=1)
    active = (wn > 0) & (a0 != 0) & np.any(Xa @ W0.T > 0, axis=0)
    c_end = np.ones(m)
    c_end[active] = np.sqrt(np.abs(a0[active]) / wn[active])
    signs = np.where(a0 < 0, -1.0, 1.0)
    Q_bal = np.zeros_like(W0)
    Q_bal[active] = W0[active] * np.abs(a0[active])[:, None]
    pats = pt.pattern_of(Xa, W0)

    # 2. merge neurons with the same (pattern, sign) into the first of them
    Q_merged = Q_bal.copy()
    leader: dict[bytes, int] = {}
    for j in np.flatnonzero(active):
        key = _key(pats[j], signs[j])
        if key in leader:
            Q_merged[leader[key]] += Q_bal[j]
            Q_merged[j] = 0.0
        else:
            leader[key] = j

    # 3. prune (exact data, not solver output: a tight rtol keeps the fit)
    live = [leader[k] for k in leader]
    Q_pruned = Q_merged.copy()
    if live:
        blocks = Blocks(pats[live], signs[live], Q_merged[live], b0)
        sol = prune(problem, blocks.to_solution(), rtol=1e-12)
        pruned = Blocks.from_solution(sol)
        by_key = {_key(p, s): q for p, s, q in zip(pruned.patterns, pruned.signs, pruned.Q)}
        for j in live:
            Q_pruned[j] = by_key.get(_key(pats[j], signs[j]), np.zeros(Xa.shape[1]))

    # 4. the convex optimum over a pattern set containing the network's own
    own = pt.from_weights(Xa, W0, a0)
    enumerated = all_patterns(problem, options)
    if enumerated is not None:
        S, mode = pt.combine(own, enumerated), "all"
    else:
        S, mode = pt.combine(own, pt.sample(Xa, options.samples, options.seed)), "sampled"
    target = Problem.create(
        problem.X,
        problem.y,
        problem.beta,
        loss=problem.loss,
        loss_scale=problem.loss_scale,
        bias=problem.bias,
        output_bias=problem.output_bias,
        patterns=S,
    )
    solve_opts = options.solve_options("given")
    warm = None
    if live:
        warm = Blocks(pats[live], signs[live], Q_pruned[live], b0).to_solution()
    rep = core.solve(target, solve_opts, warm_start=warm)
    opt = Blocks.from_solution(rep.solution)
    b_star = rep.solution.b if problem.output_bias else None

    F_merged = _objective_of(problem, Q_merged, signs, b0)
    if _objective_of(problem, Q_pruned, signs, b0) > F_merged:
        Q_pruned = Q_merged  # pruning raised F by round-off: skip it (width only)
    Q_start, Q_end, interp_signs = _assign_slots(Q_pruned, signs, pats, opt)
    width = Q_start.shape[0]

    def pad(A: np.ndarray, fill: float = 0.0) -> np.ndarray:
        extra = width - A.shape[0]
        if extra == 0:
            return A
        return np.concatenate([A, np.full((extra, *A.shape[1:]), fill, dtype=A.dtype)])

    padded_signs = pad(signs, 1.0)
    stages = [
        Stage("balance", "scale", (pad(W0), pad(a0), pad(c_end, 1.0), pad(~active, True)), None),
        Stage("merge", "blocks", pad(Q_bal), pad(Q_merged), padded_signs),
        Stage("prune", "blocks", pad(Q_merged), Q_start, padded_signs),
        Stage("interpolate", "blocks", Q_start, Q_end, interp_signs, (b0, b_star)),
    ]
    for st in stages[:3]:
        st.b = (b0, b0)
    interp = stages[3]

    def F_interp(t: float) -> float:
        return bounds.nonconvex_objective(problem, interp.network(problem, t))

    t_end = _best_on_segment(F_interp)
    if t_end < 1.0:
        interp.end = (1 - t_end) * interp.start + t_end * interp.end
        if b0 is not None:
            interp.b = (b0, (1 - t_end) * b0 + t_end * (b_star if b_star is not None else b0))

    # a certified lower bound at the end's residual (exact when every pattern is enumerated)
    yhat_end = interp.network(problem, 1.0).predict(problem.X)
    lb = bounds.lower_bound(problem, yhat_end, enumerated=enumerated)
    if lb.value < rep.lower_bound and rep.lower_bound_certified:
        lb = bounds.LowerBound(rep.lower_bound, True, rep.lower_bound_method, math.nan)

    k = max(2, options.points_per_stage)
    s_all, stage_of, objs = [], [], []
    for i, st in enumerate(stages):
        for t in np.linspace(0.0, 1.0, k):
            if i > 0 and t == 0.0:
                continue  # the same network as the previous stage's end
            s_all.append(i + t)
            stage_of.append(st.name)
            objs.append(bounds.nonconvex_objective(problem, st.network(problem, float(t))))
    return DescentPath(
        stages=stages,
        s=np.array(s_all),
        stage_of=stage_of,
        objectives=np.array(objs),
        width=width,
        start_width=m,
        pruned_width=int(np.count_nonzero(np.any(Q_start != 0, axis=1))),
        optimal_width=int(opt.size),
        optimum_objective=float(rep.upper_bound),
        lower_bound=lb.value,
        lower_bound_certified=lb.certified,
        lower_bound_method=lb.method,
        pattern_mode=mode,
        tol=options.tol,
        problem=problem,
    )
