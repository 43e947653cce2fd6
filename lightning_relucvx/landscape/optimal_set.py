"""The optimal set's invariant transformations and the minimal width (consequences (i), (iv)).

Every optimal network is, up to these transformations, a convex optimum mapped back
(``w = q / sqrt(||q||)``, ``alpha = +-sqrt(||q||)``). Starting from one optimal network:

- :func:`split_neuron`: ``(w, alpha) -> (sqrt(g) w, sqrt(g) alpha), (sqrt(1-g) w, sqrt(1-g) alpha)``
  keeps the output and the penalty;
- :func:`merge_collinear`: balanced neurons with positively collinear ``w`` and the same sign
  merge into one, again keeping both;
- :func:`permute`, :func:`add_zero_neurons`: trivially equivalent;
- :func:`rescale_neuron`: ``(c w, alpha / c)`` keeps the output but raises the penalty for
  ``c != 1`` on a balanced nonzero neuron, so it leaves the optimal set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import bounds, core
from ..problem import Network, Problem
from .check import CheckOptions, all_patterns


def _rows(net: Network) -> tuple[np.ndarray, np.ndarray]:
    return net.first_layer().astype(float), net.w2.astype(float)


def _rebuild(net: Network, W: np.ndarray, alpha: np.ndarray) -> Network:
    d_raw = net.W1.shape[1]
    if net.b1 is not None:
        return Network(W[:, :d_raw].copy(), alpha.copy(), W[:, d_raw].copy(), net.b2)
    return Network(W.copy(), alpha.copy(), None, net.b2)


def balance(net: Network) -> Network:
    """Rescale every neuron to ``||w_j|| = |alpha_j|`` (same output, smallest penalty); neurons
    with ``w_j = 0`` or ``alpha_j = 0`` become zero."""
    W, a = _rows(net)
    wn = np.linalg.norm(W, axis=1)
    live = (wn > 0) & (a != 0)
    c = np.zeros_like(a)
    c[live] = np.sqrt(np.abs(a[live]) / wn[live])
    W = W * c[:, None]
    a = np.divide(a, c, out=np.zeros_like(a), where=live)
    return _rebuild(net, W, a)


def split_neuron(net: Network, j: int, fraction: float = 0.5) -> Network:
    """Neuron ``j`` becomes two with shares ``fraction`` and ``1 - fraction`` of it."""
    if not 0 < fraction < 1:
        raise ValueError(f"fraction: must be in (0, 1), got {fraction!r}")
    W, a = _rows(net)
    g, h = np.sqrt(fraction), np.sqrt(1 - fraction)
    W = np.vstack([W, h * W[j]])
    a = np.append(a, h * a[j])
    W[j] *= g
    a[j] *= g
    return _rebuild(net, W, a)


def merge_collinear(net: Network, rtol: float = 1e-9) -> Network:
    """Balance, then merge neurons whose ``w`` are positive multiples of each other and whose
    ``alpha`` share a sign (their convex blocks ``w |alpha|`` add up)."""
    bal = balance(net)
    W, a = _rows(bal)
    Q = W * np.abs(a)[:, None]
    norms = np.linalg.norm(Q, axis=1)
    taken = np.zeros(len(a), bool)
    out_q, out_s = [], []
    for j in np.argsort(-norms):
        if taken[j] or norms[j] == 0:
            continue
        unit = Q[j] / norms[j]
        group = [
            k
            for k in range(len(a))
            if not taken[k]
            and norms[k] > 0
            and np.sign(a[k]) == np.sign(a[j])
            and np.linalg.norm(Q[k] / norms[k] - unit) <= rtol
        ]
        taken[group] = True
        out_q.append(Q[group].sum(axis=0))
        out_s.append(np.sign(a[j]))
    if not out_q:
        return _rebuild(net, np.zeros((1, W.shape[1])), np.zeros(1))
    Qm = np.array(out_q)
    root = np.sqrt(np.linalg.norm(Qm, axis=1))
    return _rebuild(net, Qm / root[:, None], np.array(out_s) * root)


def permute(net: Network, order: np.ndarray) -> Network:
    """The neurons in the order ``order`` (a permutation of ``range(width)``)."""
    order = np.asarray(order)
    if sorted(order.tolist()) != list(range(net.width)):
        raise ValueError(f"order: must be a permutation of range({net.width})")
    W, a = _rows(net)
    return _rebuild(net, W[order], a[order])


def add_zero_neurons(net: Network, count: int) -> Network:
    """``count`` more neurons with zero weights."""
    W, a = _rows(net)
    return _rebuild(
        net, np.vstack([W, np.zeros((count, W.shape[1]))]), np.append(a, np.zeros(count))
    )


def rescale_neuron(net: Network, j: int, c: float) -> Network:
    """``(w_j, alpha_j) -> (c w_j, alpha_j / c)``: the same output, a different penalty."""
    if not c > 0:
        raise ValueError(f"c: must be > 0, got {c!r}")
    W, a = _rows(net)
    W[j] *= c
    a[j] /= c
    return _rebuild(net, W, a)


def equivalent_networks(net: Network, count: int, seed: int = 0) -> list[Network]:
    """``count`` networks obtained from ``net`` by random splits, merges of collinear neurons,
    permutations and zero neurons; each has the same output and, when ``net`` is balanced,
    the same objective."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        cur = net
        for _ in range(int(rng.integers(1, 4))):
            move = int(rng.integers(0, 4))
            if move == 0:
                cur = split_neuron(cur, int(rng.integers(cur.width)), float(rng.uniform(0.1, 0.9)))
            elif move == 1:
                cur = merge_collinear(cur)
            elif move == 2:
                cur = add_zero_neurons(cur, int(rng.integers(1, 3)))
            cur = permute(cur, rng.permutation(cur.width))
        out.append(cur)
    return out


@dataclass
class WidthResult:
    """The width of a pruned optimal network: an upper bound on the minimal width ``m*``."""

    width: int
    objective: float
    lower_bound: float
    lower_bound_certified: bool
    pattern_mode: str
    network: Network
    n: int

    @property
    def no_spurious_valleys_width(self) -> int:
        """``n + width``: from this width on, :func:`descent_path` from any network stays within
        the network's width (proved by its construction; see docs/landscape.md)."""
        return self.n + self.width

    def to_dict(self) -> dict:
        return {
            "optimal_width": self.width,
            "objective": self.objective,
            "lower_bound": self.lower_bound,
            "lower_bound_certified": self.lower_bound_certified,
            "pattern_mode": self.pattern_mode,
            "no_spurious_valleys_width": self.no_spurious_valleys_width,
        }


def minimal_width(problem: Problem, options: CheckOptions | None = None) -> WidthResult:
    """Solve the convex program (every pattern when enumerable) and prune: the pruned support
    size bounds ``m*`` from above (``<= n``); it is not proved minimal."""
    options = options or CheckOptions()
    bare = problem.with_network(None)
    enumerated = all_patterns(bare, options)
    if enumerated is not None:
        rep = core.solve(bare.with_patterns(enumerated), options.solve_options("given"))
        mode = "all"
    else:
        rep = core.solve(
            bare.with_patterns(None), options.solve_options(f"sample:{options.samples}")
        )
        mode = "sampled"
    lb = bounds.lower_bound(bare, rep.optimal_network.predict(bare.X), enumerated=enumerated)
    if rep.lower_bound_certified and rep.lower_bound > lb.value:
        lb = bounds.LowerBound(rep.lower_bound, True, rep.lower_bound_method, math.nan)
    return WidthResult(
        width=int(rep.num_neurons),
        objective=float(rep.upper_bound),
        lower_bound=float(lb.value),
        lower_bound_certified=bool(lb.certified),
        pattern_mode=mode,
        network=rep.optimal_network,
        n=problem.n,
    )
