"""Objectives and certified bounds: ``F``, the dual lower bound ``LB`` and the bracket.

``LB``: with ``lambda0 = -grad l(yhat)`` (projected onto the conjugate's domain, and onto
``1^T lambda = 0`` when there is an output bias) and ``s >= max_{||u||<=1} |lambda^T (X u)_+|``,
every ``lambda = theta * lambda0`` with ``0 <= theta <= min(1, beta/s)`` is dual feasible and
``LB = -l*(-lambda)`` bounds ``p*`` from below. ``s`` is exact when every pattern is
enumerated; otherwise an always-valid norm bound is used. A value of ``s`` from sampled
patterns only is *not* a certificate and is reported as an estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import cones, losses
from .problem import Network, Problem

# relative safety margin on an exactly computed s (covers NNLS round-off)
_S_SAFETY = 1e-9


def nonconvex_objective(problem: Problem, network: Network) -> float:
    """``F = l(yhat, y) + beta/2 sum_j (||w_j||^2 + alpha_j^2)`` (b1 inside w_j, b2 free)."""
    yhat = network.predict(problem.X)
    fit = losses.value(problem.loss, yhat, problem.y, problem.loss_scale)
    return fit + problem.beta * network.penalty()


def cone_max(A: np.ndarray, g: np.ndarray) -> tuple[float, np.ndarray]:
    """``max g^T u`` over ``{A u >= 0, ||u|| <= 1}`` (``= ||proj_K(g)||``) and a maximizer.

    The value is an upper bound, exact up to round-off (a certified bound needs it not to
    fall short); the maximizer is the normalized projection."""
    proj, bound = cones.project_and_bound(A, g)
    norm = float(np.linalg.norm(proj))
    return bound, (proj / norm if norm > 0 else proj)


def dual_scale_exact(
    Xa: np.ndarray, lam: np.ndarray, patterns: np.ndarray
) -> tuple[float, np.ndarray, int]:
    """``max_{||u||<=1} |lam^T (X u)_+|`` over the cones of ``patterns``.

    Exact when ``patterns`` holds every pattern of the data. Returns the value, a maximizing
    unit direction ``u`` and the sign (+1: ``lam^T (Xu)_+`` positive).
    """
    best, best_u, best_sign = 0.0, np.zeros(Xa.shape[1]), 1
    G = (patterns * lam) @ Xa  # rows g_i = X^T D_i lam
    norms = np.linalg.norm(G, axis=1)
    # where +-g_i lies in its own cone the value is ||g_i||, no projection needed
    SXG = np.where(patterns, 1.0, -1.0) * (G @ Xa.T)  # (P, n): rows (2D_i - I) X g_i
    inside = {1: np.all(SXG >= 0, axis=1), -1: np.all(SXG <= 0, axis=1)}
    for sign, mask in inside.items():
        if np.any(mask & (norms > best)):
            i = int(np.argmax(np.where(mask, norms, -1.0)))
            best, best_u, best_sign = float(norms[i]), sign * G[i] / norms[i], sign
    # elsewhere the value over cone i is at most ||g_i||: visit the largest first, stop early
    for i in np.argsort(-norms, kind="stable"):
        if norms[i] <= best:
            break
        A = cones.cone_rows(Xa, patterns[i])
        for sign in (1, -1):
            if inside[sign][i]:
                continue
            val, u = cone_max(A, sign * G[i])
            if val > best:
                best, best_u, best_sign = val, u, sign
    return best, best_u, best_sign


def dual_scale_bound(Xa: np.ndarray, lam: np.ndarray) -> float:
    """An always-valid upper bound on ``max_{||u||<=1} |lam^T (X u)_+|``."""
    row_norms = np.linalg.norm(Xa, axis=1)
    smax = float(np.linalg.norm(Xa, 2))
    out = 0.0
    for part in (np.maximum(lam, 0.0), np.maximum(-lam, 0.0)):
        out = max(out, min(float(part @ row_norms), float(np.linalg.norm(part)) * smax))
    return out


@dataclass
class LowerBound:
    """A dual lower bound on ``p*``: its value, whether it is certified, how ``s`` was got."""

    value: float
    certified: bool
    method: str  # "exact_enumeration" | "norm_bound" | "sampled_estimate"
    dual_scale: float  # s
    direction: np.ndarray | None = None  # a maximizing unit u (exact/sampled methods)
    direction_sign: int = 1


def dual_point(problem: Problem, yhat: np.ndarray) -> np.ndarray:
    """``lambda0 = -grad l(yhat)``, projected onto the dual's domain (and sum zero)."""
    lam0 = -losses.gradient(problem.loss, yhat, problem.y, problem.loss_scale)
    return losses.project_dual(
        problem.loss, lam0, problem.y, problem.loss_scale, sum_zero=problem.output_bias
    )


def lower_bound(
    problem: Problem,
    yhat: np.ndarray | None = None,
    *,
    lam: np.ndarray | None = None,
    enumerated: np.ndarray | None = None,
    sampled: np.ndarray | None = None,
) -> LowerBound:
    """The dual lower bound from predictions ``yhat`` (``lambda0 = -grad l(yhat)``) or from a
    given dual point ``lam`` (projected onto the dual's domain first).

    ``enumerated``: every pattern of the data (certified, exact ``s``); else the norm bound
    (certified, loose). With ``sampled`` and no enumeration the result is an estimate.
    """
    if lam is None:
        if yhat is None:
            raise ValueError("lower_bound: needs yhat or lam")
        lam = dual_point(problem, yhat)
    else:
        lam = losses.project_dual(
            problem.loss,
            np.asarray(lam, float),
            problem.y,
            problem.loss_scale,
            sum_zero=problem.output_bias,
        )
    direction, sign = None, 1
    if enumerated is not None:
        s, direction, sign = dual_scale_exact(problem.Xa, lam, enumerated)
        s *= 1 + _S_SAFETY
        method, certified = "exact_enumeration", True
    elif sampled is not None:
        s, direction, sign = dual_scale_exact(problem.Xa, lam, sampled)
        method, certified = "sampled_estimate", False
    else:
        s = dual_scale_bound(problem.Xa, lam)
        method, certified = "norm_bound", True
    theta_max = 1.0 if s <= problem.beta else problem.beta / s
    value = best_scaling(problem, lam, theta_max)
    return LowerBound(value, certified, method, float(s), direction, sign)


def best_scaling(problem: Problem, lam: np.ndarray, theta_max: float) -> float:
    """``max_{0 <= theta <= theta_max} -l*(-theta lam)`` (concave in theta): the best dual
    value along ``lam`` when ``theta_max lam`` is dual feasible."""

    def f(theta: float) -> float:
        return losses.dual_value(problem.loss, theta * lam, problem.y, problem.loss_scale)

    if problem.loss == "squared":
        denom = float(lam @ lam)
        theta = theta_max if denom == 0 else problem.loss_scale * float(lam @ problem.y) / denom
        return f(float(np.clip(theta, 0.0, theta_max)))
    a, b = 0.0, theta_max
    golden = (np.sqrt(5.0) - 1) / 2
    for _ in range(80):
        c1, c2 = b - golden * (b - a), a + golden * (b - a)
        if f(c1) < f(c2):
            a = c1
        else:
            b = c2
    return max(f(0.0), f(theta_max), f(0.5 * (a + b)))
