"""Activation patterns ``D(u) = diag(1[X u >= 0])``: from weights, sampled, enumerated, packed.

A pattern set is a (P, n) boolean matrix, one row per pattern, deduplicated, without the
all-zero row (it contributes nothing to the convex program).
"""

from __future__ import annotations

import itertools
import math

import numpy as np


def pattern_of(Xa: np.ndarray, W: np.ndarray) -> np.ndarray:
    """Patterns ``1[X w >= 0]`` of the rows of ``W`` (k, d) on augmented data ``Xa``."""
    return (Xa @ W.T >= 0).T


def unique(patterns: np.ndarray, drop_zero: bool = True) -> np.ndarray:
    """Deduplicate rows, keeping first-seen order; drop the all-zero pattern."""
    patterns = np.asarray(patterns, dtype=bool)
    if patterns.shape[0] == 0:
        return patterns
    packed = np.packbits(patterns, axis=1)
    _, idx = np.unique(packed, axis=0, return_index=True)
    out = patterns[np.sort(idx)]
    if drop_zero:
        out = out[out.any(axis=1)]
    return out


def combine(*sets: np.ndarray) -> np.ndarray:
    """Union of pattern sets, first set's order first."""
    parts = [s for s in sets if s is not None and s.shape[0] > 0]
    if not parts:
        n = next(s.shape[1] for s in sets if s is not None)
        return np.zeros((0, n), dtype=bool)
    return unique(np.vstack(parts))


def from_weights(Xa: np.ndarray, W: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Patterns of the network's live neurons (nonzero ``w_j`` and ``alpha_j``)."""
    live = (np.linalg.norm(W, axis=1) > 0) & (alpha != 0)
    return unique(pattern_of(Xa, W[live]))


def sample(Xa: np.ndarray, k: int, seed: int = 0) -> np.ndarray:
    """Patterns of ``k`` Gaussian directions (seeded), deduplicated, zero pattern dropped."""
    if k < 0:
        raise ValueError(f"patterns: sample count must be >= 0, got {k}")
    rng = np.random.default_rng(seed)
    U = rng.standard_normal((k, Xa.shape[1]))
    return unique(pattern_of(Xa, U))


def cover_count(n: int, r: int) -> int:
    """Cells of a central arrangement of n hyperplanes in general position in R^r."""
    return 2 * sum(math.comb(n - 1, k) for k in range(r))


def data_rank(Xa: np.ndarray, rtol: float = 1e-10) -> int:
    s = np.linalg.svd(Xa, compute_uv=False)
    return int(np.sum(s > rtol * max(s[0], 1e-300))) if s.size else 0


def enumerable(Xa: np.ndarray, limit: int = 20_000, max_rank: int = 4) -> bool:
    """Whether :func:`enumerate_all` is practical for this data."""
    r = data_rank(Xa)
    return r <= max_rank and cover_count(Xa.shape[0], r) <= limit


def enumerate_all(Xa: np.ndarray, limit: int = 20_000, drop_zero: bool = True) -> np.ndarray:
    """Every pattern of the data, by the cells of the arrangement ``{x_k^T u = 0}``.

    Works in the row space of ``X`` (rank r): each cell of a central arrangement with
    spanning normals is a pointed cone whose extreme rays are lines where r-1 hyperplanes
    meet; around each such line the cells are those of the (r-1)-dimensional arrangement
    of the hyperplanes through it. Degenerate (non general position) data is handled.
    """
    n = Xa.shape[0]
    _, s, Vt = np.linalg.svd(Xa, full_matrices=False)
    r = int(np.sum(s > 1e-10 * max(s[0], 1e-300))) if s.size else 0
    if r == 0:
        return np.zeros((0, n), dtype=bool)
    if cover_count(n, r) > 4 * limit:
        raise ValueError(
            f"patterns: data of rank {r} with n={n} has up to {cover_count(n, r)} patterns; "
            f"too many to enumerate (limit {limit})"
        )
    Z = Xa @ Vt[:r].T  # (n, r) coordinates of the rows in the row space
    norms = np.linalg.norm(Z, axis=1)
    live = norms > 1e-12 * norms.max()
    N = Z[live] / norms[live, None]
    points = _cell_points_fast(N)
    pats = np.ones((points.shape[0], n), dtype=bool)
    pats[:, live] = (N @ points.T >= 0).T
    out = unique(pats, drop_zero=drop_zero)
    if out.shape[0] > limit:
        raise ValueError(f"patterns: {out.shape[0]} patterns exceed the limit {limit}")
    return out


def _dedupe_directions(V: np.ndarray) -> np.ndarray:
    """Unique lines among unit vectors (sign-normalized, rounded)."""
    V = V / np.linalg.norm(V, axis=1, keepdims=True)
    first = np.argmax(np.abs(V) > 1e-9, axis=1)
    sign = np.sign(V[np.arange(V.shape[0]), first])
    V = V * sign[:, None]
    _, idx = np.unique(np.round(V, 9), axis=0, return_index=True)
    return V[np.sort(idx)]


def _cell_points(N: np.ndarray) -> np.ndarray:
    """One interior point of each cell of the arrangement with unit normals N (m, r)."""
    m, r = N.shape
    if m == 0:
        return np.ones((1, r))
    if r == 1:
        return np.array([[1.0], [-1.0]])
    # reduce to the span of the normals
    _, s, Vt = np.linalg.svd(N, full_matrices=False)
    k = int(np.sum(s > 1e-10 * s[0]))
    if k < r:
        sub = _cell_points(_normalize(N @ Vt[:k].T))
        return sub @ Vt[:k]
    # lines where r-1 independent hyperplanes meet
    lines = []
    for idx in itertools.combinations(range(m), r - 1):
        sub = N[list(idx)]
        _, ss, vt = np.linalg.svd(sub)
        if ss[-1] > 1e-10:
            lines.append(vt[-1])
    if not lines:  # pragma: no cover - spanning normals always give lines
        return np.ones((1, r))
    V = _dedupe_directions(np.array(lines))
    return np.vstack([_points_around(N, p) for v in V for p in (v, -v)])


def _cell_points_fast(N: np.ndarray) -> np.ndarray:
    """:func:`_cell_points`, vectorized for rank 2 and for the general-position lines of
    rank 3 (the recursion handles the rest)."""
    m, r = N.shape
    if m == 0 or r == 1 or np.linalg.matrix_rank(N) < r:
        return _cell_points(N)
    if r == 2:
        # the lines are the normals' perpendiculars; a cell is an arc between two of them
        ang = np.arctan2(N[:, 0], -N[:, 1])
        ang = np.unique(np.round(np.mod(np.concatenate([ang, ang + np.pi]), 2 * np.pi), 12))
        mid = ang + np.diff(np.append(ang, ang[0] + 2 * np.pi)) / 2
        return np.column_stack([np.cos(mid), np.sin(mid)])
    if r != 3:
        return _cell_points(N)
    i, j = np.triu_indices(m, 1)
    V = np.cross(N[i], N[j])
    V = _dedupe_directions(V[np.linalg.norm(V, axis=1) > 1e-10])
    dots = V @ N.T  # (L, m)
    through = np.abs(dots) <= 1e-10
    count = through.sum(axis=1)
    points = []
    general = count == 2
    if np.any(general):
        Vg = V[general]
        idx = np.argsort(~through[general], axis=1, kind="stable")[:, :2]  # the two planes
        A, B = N[idx[:, 0]], N[idx[:, 1]]
        margin = np.where(through[general], np.inf, np.abs(dots[general])).min(axis=1)
        eps = 0.25 * np.where(np.isfinite(margin), margin, 1.0)[:, None]
        for p in (Vg, -Vg):
            for sa in (1.0, -1.0):
                for sb in (1.0, -1.0):
                    points.append(p + eps * (sa * A + sb * B))
    for v in V[~general]:  # three or more planes through one line: the recursion
        points.append(_points_around(N, v))
        points.append(_points_around(N, -v))
    return np.vstack(points)


def _points_around(N: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Interior points of every cell whose closure contains the ray through ``p``."""
    dots = N @ p
    through = np.abs(dots) <= 1e-10
    margin = np.min(np.abs(dots[~through])) if np.any(~through) else 1.0
    _, _, vt = np.linalg.svd(p[None, :])
    T = vt[1:].T  # orthonormal basis of p's complement
    sub_normals = N[through] @ T
    keep = np.linalg.norm(sub_normals, axis=1) > 1e-12
    ws = _cell_points(_normalize(sub_normals[keep]))
    ws = ws / np.linalg.norm(ws, axis=1, keepdims=True)
    return p[None, :] + 0.5 * margin * (ws @ T.T)


def _normalize(N: np.ndarray) -> np.ndarray:
    if N.shape[0] == 0:
        return N
    return N / np.linalg.norm(N, axis=1, keepdims=True)


def pack(patterns: np.ndarray) -> tuple[bytes, tuple[int, int]]:
    """Bit-pack a (P, n) pattern matrix (row-major, big-endian bits, rows padded)."""
    patterns = np.asarray(patterns, dtype=bool)
    return np.packbits(patterns, axis=1).tobytes(), tuple(patterns.shape)  # type: ignore[return-value]


def unpack(data: bytes, shape: tuple[int, int]) -> np.ndarray:
    """Inverse of :func:`pack`."""
    P, n = (int(v) for v in shape)
    if P < 0 or n < 0:
        raise ValueError(f"patterns: bad shape {shape}")
    row_bytes = (n + 7) // 8
    if len(data) != P * row_bytes:
        raise ValueError(
            f"patterns: {len(data)} packed bytes do not match shape {shape} "
            f"({P * row_bytes} expected)"
        )
    raw = np.frombuffer(data, dtype=np.uint8).reshape(P, row_bytes)
    return np.unpackbits(raw, axis=1, count=n).astype(bool)
