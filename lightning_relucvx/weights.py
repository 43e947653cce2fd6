"""Maps between networks and convex solutions, and pruning to a minimal support.

- convex -> network: block ``q`` becomes a neuron ``w = q / sqrt(||q||)``,
  ``alpha = +-sqrt(||q||)``; the network's objective then equals the convex objective.
- network -> convex: neuron j goes to block (pattern of ``w_j``, sign of ``alpha_j``) as
  ``q = w_j |alpha_j|``, summed within a block; its convex objective is ``<= F``.
- pruning: while the fit vectors are linearly dependent, move along a null vector (fit kept,
  penalty not increased) until a block vanishes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import cones
from . import patterns as pt
from .problem import Network, Problem
from .solvers.base import ConvexSolution


@dataclass
class Blocks:
    """The nonzero blocks of a convex solution: pattern rows, signs (+1 u, -1 v), vectors."""

    patterns: np.ndarray  # (k, n) bool
    signs: np.ndarray  # (k,) +-1
    Q: np.ndarray  # (k, d)
    b: float | None = None

    @classmethod
    def from_solution(cls, sol: ConvexSolution, zero_tol: float = 0.0) -> Blocks:
        W = np.vstack([sol.U, sol.V])
        signs = np.concatenate([np.ones(sol.U.shape[0]), -np.ones(sol.V.shape[0])])
        pats = np.vstack([sol.patterns, sol.patterns])
        norms = np.linalg.norm(W, axis=1)
        keep = norms > zero_tol * max(norms.max(initial=0.0), 1e-300)
        keep &= norms > 0
        return cls(pats[keep], signs[keep], W[keep], sol.b)

    @property
    def size(self) -> int:
        return int(self.Q.shape[0])

    def fits(self, Xa: np.ndarray) -> np.ndarray:
        """Columns ``sign_k * D_k X q_k`` (n, k)."""
        return (Xa @ self.Q.T) * self.patterns.T * self.signs

    def to_solution(self) -> ConvexSolution:
        """Back to (patterns, U, V), one pattern row per distinct pattern."""
        n = self.patterns.shape[1]
        d = self.Q.shape[1]
        uniq = pt.unique(self.patterns, drop_zero=False) if self.size else np.zeros((0, n), bool)
        index = {p.tobytes(): i for i, p in enumerate(np.packbits(uniq, axis=1))}
        U = np.zeros((uniq.shape[0], d))
        V = np.zeros((uniq.shape[0], d))
        for pat, s, q in zip(np.packbits(self.patterns, axis=1), self.signs, self.Q):
            (U if s > 0 else V)[index[pat.tobytes()]] += q
        return ConvexSolution(uniq, U, V, self.b)


def network_to_convex(problem: Problem, network: Network) -> ConvexSolution:
    """The network as a feasible point of the convex program over its own patterns."""
    W = network.first_layer()
    alpha = network.w2
    live = (np.linalg.norm(W, axis=1) > 0) & (alpha != 0)
    pats = pt.pattern_of(problem.Xa, W[live])
    nonzero = pats.any(axis=1)
    blocks = Blocks(
        patterns=pats[nonzero],
        signs=np.sign(alpha[live][nonzero]),
        Q=W[live][nonzero] * np.abs(alpha[live][nonzero])[:, None],
        b=network.b2 if problem.output_bias else None,
    )
    sol = blocks.to_solution()
    if sol.patterns.shape[0] == 0:  # a dead network: one zero block keeps shapes valid
        d = problem.d
        sol = ConvexSolution(
            np.ones((1, problem.n), bool), np.zeros((1, d)), np.zeros((1, d)), sol.b
        )
    return sol


def convex_to_network(problem: Problem, sol: ConvexSolution) -> Network:
    """One neuron per nonzero block, balanced: ``||w|| = |alpha|``."""
    blocks = Blocks.from_solution(sol)
    d_raw = problem.X.shape[1]
    if blocks.size == 0:
        W = np.zeros((1, problem.d))
        alpha = np.zeros(1)
    else:
        norms = np.linalg.norm(blocks.Q, axis=1)
        W = blocks.Q / np.sqrt(norms)[:, None]
        alpha = blocks.signs * np.sqrt(norms)
    b2 = None
    if problem.output_bias:
        b2 = float(sol.b or 0.0)
    if problem.bias:
        return Network(W1=W[:, :d_raw].copy(), w2=alpha, b1=W[:, d_raw].copy(), b2=b2)
    return Network(W1=W.copy(), w2=alpha, b1=None, b2=b2)


def project_blocks(problem: Problem, blocks: Blocks) -> Blocks:
    """Each block projected onto its cone ``K_D`` (solvers leave small violations)."""
    Q = blocks.Q.copy()
    S = np.where(blocks.patterns, 1.0, -1.0)
    violated = np.any(S * (Q @ problem.Xa.T) < 0, axis=1)
    for k in np.flatnonzero(violated):
        Q[k] = cones.project(cones.cone_rows(problem.Xa, blocks.patterns[k]), Q[k])
    keep = np.linalg.norm(Q, axis=1) > 0
    return Blocks(blocks.patterns[keep], blocks.signs[keep], Q[keep], blocks.b)


def prune(
    problem: Problem, sol: ConvexSolution, rtol: float = 1e-7, zero_tol: float = 1e-12
) -> ConvexSolution:
    """A feasible solution with linearly independent fit vectors, the same fit (to ``rtol``
    relative to the largest singular value of the fit columns) and a penalty no larger; its
    number of blocks bounds the minimal width m* (<= n). Solvers leave blocks at the level of
    their tolerance: choose ``rtol`` no smaller than the solve's accuracy.

    Blocks are first projected onto their cones, so the result is exactly feasible and the
    network it maps to has exactly its convex objective.
    """
    blocks = project_blocks(problem, Blocks.from_solution(sol, zero_tol=zero_tol))
    Xa = problem.Xa
    n = Xa.shape[0]
    while blocks.size > 0:
        step = _pruning_step(blocks.fits(Xa), np.linalg.norm(blocks.Q, axis=1), n, rtol)
        if step is None:
            break  # independent (to rtol)
        keep = step > 0
        blocks = Blocks(
            blocks.patterns[keep], blocks.signs[keep], blocks.Q[keep] * step[keep, None], blocks.b
        )
    if blocks.size == 0:
        d = problem.d
        return ConvexSolution(np.ones((1, n), bool), np.zeros((1, d)), np.zeros((1, d)), sol.b)
    return blocks.to_solution()


def _pruning_step(F: np.ndarray, norms: np.ndarray, n: int, rtol: float) -> np.ndarray | None:
    """Scale factors ``1 - t c`` (one of them 0) along a (near-)null vector ``c`` of the fit
    columns ``F`` that keep the fit to ``rtol`` and do not increase ``sum_k norms_k``; None
    when no such step exists."""
    k = F.shape[1]
    # any n+1 columns are dependent: work on the smallest blocks first
    cols = np.argsort(norms)[: n + 1] if k > n else np.arange(k)
    _, s, vt = np.linalg.svd(F[:, cols], full_matrices=True)
    exact = len(cols) > n
    s_full = np.concatenate([s, np.zeros(vt.shape[0] - s.size)])
    budget = rtol * max(s[0], 1e-300)
    best = None
    for i in [vt.shape[0] - 1] if exact else np.flatnonzero(s_full <= budget):
        c = np.zeros(k)
        c[cols] = vt[i]
        slope = float(c @ norms)  # the penalty changes by -beta * t * slope
        if abs(slope) <= 1e-12 * float(np.abs(c) @ norms):
            options = [c, -c]  # a tie: either direction keeps the penalty
        else:
            options = [c if slope > 0 else -c]
        for cc in options:
            drop = _first_zero(cc, norms)
            if drop is None:
                continue
            t = 1.0 / cc[drop]
            change = t * s_full[i]  # ||F (t c)|| = t * s_i
            if best is None or change < best[0]:
                scale = 1.0 - t * cc
                scale[drop] = 0.0
                best = (change, scale)
    if best is None or (not exact and best[0] > budget):
        return None
    return best[1]


def _first_zero(c: np.ndarray, norms: np.ndarray) -> int | None:
    """The block that reaches zero first along ``q_k (1 - t c_k)``, t > 0."""
    pos = c > 0
    if not np.any(pos):
        return None
    ratio = np.where(pos, 1.0 / np.where(pos, c, 1.0), np.inf)
    return int(np.argmin(ratio))


def width(sol: ConvexSolution) -> int:
    """Number of nonzero blocks (neurons of the network it maps to)."""
    return Blocks.from_solution(sol).size
