"""Convex losses ``l(z; y)`` with an explicit scale factor, their gradients and conjugates.

- ``squared``:  ``scale * 1/2 ||z - y||^2`` (``MSELoss(reduction="mean")`` is ``scale = 2/n``)
- ``logistic``: ``scale * sum log(1 + exp(-y z))`` on labels in {-1, +1}
- ``hinge``:    ``scale * sum max(0, 1 - y z)`` on labels in {-1, +1}

For the dual certificate we need ``-l*(-lam)`` and the set of ``lam`` where it is finite.
"""

from __future__ import annotations

import numpy as np

LOSSES = ("squared", "logistic", "hinge")


def check_labels(loss: str, y: np.ndarray) -> None:
    if loss in ("logistic", "hinge") and not np.all(np.isin(y, (-1.0, 1.0))):
        raise ValueError(f"y: the {loss} loss needs labels in {{-1, +1}}")


def value(loss: str, z: np.ndarray, y: np.ndarray, scale: float = 1.0) -> float:
    """The loss of predictions ``z``."""
    if loss == "squared":
        return float(scale * 0.5 * np.sum((z - y) ** 2))
    if loss == "logistic":
        return float(scale * np.sum(np.logaddexp(0.0, -y * z)))
    if loss == "hinge":
        return float(scale * np.sum(np.maximum(0.0, 1.0 - y * z)))
    raise ValueError(f"loss: unknown {loss!r}")


def gradient(loss: str, z: np.ndarray, y: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """A (sub)gradient of the loss at ``z``."""
    if loss == "squared":
        return scale * (z - y)
    if loss == "logistic":
        # d/dz log(1 + exp(-y z)) = -y * sigmoid(-y z)
        return -scale * y * _sigmoid(-y * z)
    if loss == "hinge":
        return -scale * y * (y * z < 1.0)
    raise ValueError(f"loss: unknown {loss!r}")


def dual_value(loss: str, lam: np.ndarray, y: np.ndarray, scale: float = 1.0) -> float:
    """``-l*(-lam)``; ``-inf`` outside the conjugate's domain."""
    if loss == "squared":
        return float(lam @ y - 0.5 * np.sum(lam**2) / scale)
    p = y * lam / scale  # must lie in [0, 1]
    tol = 1e-12
    if np.any(p < -tol) or np.any(p > 1 + tol):
        return -np.inf
    p = np.clip(p, 0.0, 1.0)
    if loss == "logistic":
        return float(-scale * np.sum(_xlogx(p) + _xlogx(1.0 - p)))
    if loss == "hinge":
        return float(np.sum(lam * y))
    raise ValueError(f"loss: unknown {loss!r}")


def dual_box(loss: str, y: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Bounds ``lo <= lam <= hi`` of the conjugate's domain, or None when unbounded."""
    if loss == "squared":
        return None
    lo = np.where(y > 0, 0.0, -scale)
    hi = np.where(y > 0, scale, 0.0)
    return lo, hi


def project_dual(
    loss: str, lam: np.ndarray, y: np.ndarray, scale: float, sum_zero: bool
) -> np.ndarray:
    """Project ``lam`` onto the conjugate's domain, and onto ``1^T lam = 0`` if asked.

    ``sum_zero`` is the dual constraint of an unpenalized output bias.
    """
    box = dual_box(loss, y, scale)
    if box is None:
        return lam - lam.mean() if sum_zero else lam
    lo, hi = box
    if not sum_zero:
        return np.clip(lam, lo, hi)
    if lo.sum() > 0 or hi.sum() < 0:  # no sum-zero point in the box (one class only)
        return np.zeros_like(lam)
    # sum(clip(lam - tau, lo, hi)) is non-increasing in tau: bisection.
    a, b = float(np.min(lam - hi)) - 1.0, float(np.max(lam - lo)) + 1.0
    for _ in range(200):
        mid = 0.5 * (a + b)
        if np.clip(lam - mid, lo, hi).sum() > 0:
            a = mid
        else:
            b = mid
    out = np.clip(lam - 0.5 * (a + b), lo, hi)
    # remove the last rounding error along coordinates with room to move
    resid = out.sum()
    free = (out > lo + 1e-15) if resid > 0 else (out < hi - 1e-15)
    if np.any(free):
        out[free] -= resid / np.count_nonzero(free)
        out = np.clip(out, lo, hi)
    return out


def _sigmoid(t: np.ndarray) -> np.ndarray:
    return np.exp(-np.logaddexp(0.0, -t))


def _xlogx(p: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
