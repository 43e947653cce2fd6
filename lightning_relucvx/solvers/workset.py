"""Working-set solves: solve over a few blocks and cone rows, verify against the full program.

The full program over P patterns has 2P blocks and 2Pn cone rows ``(2D_k - I) X w_k >= 0``;
at the optimum most blocks are zero and most rows are inactive. This strategy solves the
program restricted to a working set (some blocks, and for each some of its cone rows) with
Clarabel or SCS, then checks the full program with one product ``X @ W``:

- primal: every cone row of every block (rows absent from the working set included);
- dual: every block absent from the working set is dual feasible: some cone multipliers
  ``mu >= 0`` (a small non-negative least-squares problem) give
  ``||sign_k X^T D_k lam - X^T S_k mu|| <= beta``, ``lam`` the inner solver's multiplier
  of the fit.

Violated rows and blocks join the working set and the inner solver restarts (SCS warm
from the previous primal, dual and slack, carried over by row/column key). When nothing
is violated, the restricted primal point is feasible for the full program and the
restricted dual point, extended by zeros (and by the cone multipliers the check found), is
dual feasible for it.

With ``hold_active`` (the default, Clarabel inside), a block to which a round added no row
holds its active rows (on the boundary, with a positive multiplier) at equality from the
next round on: they are eliminated (:class:`Reduction`), so a block pinned by 18 of its rows
in 20 dimensions costs 2 variables, and the dense quadratic of the next rounds shrinks with
it (1.0-1.2 s rounds became 0.06-0.15 s on the warm-start benchmark's snapshots). The held
rows' multipliers come from a small non-negative least squares per block; a row whose
multiplier wants to be negative is released (and never held again in that solve).

Every round is also certified on the full program (:class:`Certificate`): the round's
point with each block that violates a cone row projected onto its cone (exactly feasible),
and the fit's multiplier scaled by ``min(1, beta / s)``, ``s`` the largest block residual
over all ``2P`` blocks (dual feasible whatever the inner solver's accuracy). The reported
objective, maximum violation and duality gap are those of this pair; a round whose
relative gap is within ``gap_tol`` ends the solve even if some rows are still violated.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .. import losses
from ..problem import Problem
from .base import ConvexSolution, SolverResult
from .certificate import Certificate, feasible_point, scaled_bound, significant
from .scs import (
    _STATUS,
    ConicForm,
    _solution_from_x,
    block_weights,
    build,
    matched_blocks,
    resolve_linear_solver,
    warm_point,
)


def _remap(old_keys: np.ndarray, old_vals: np.ndarray, new_keys: np.ndarray) -> np.ndarray:
    """Values of ``old_vals`` at ``new_keys`` (zero for keys not in ``old_keys``)."""
    order = np.argsort(old_keys, kind="stable")
    sk = old_keys[order]
    pos = np.searchsorted(sk, new_keys)
    pos = np.minimum(pos, len(sk) - 1)
    hit = sk[pos] == new_keys
    out = np.zeros(len(new_keys))
    out[hit] = old_vals[order[pos[hit]]]
    return out


_CLARABEL_STATUS = {
    "Solved": 1,
    "AlmostSolved": 2,
    "PrimalInfeasible": -2,
    "DualInfeasible": -1,
    "AlmostPrimalInfeasible": -2,
    "AlmostDualInfeasible": -1,
    "MaxIterations": -4,
    "MaxTime": -4,
    "NumericalError": -4,
    "InsufficientProgress": -4,
}


def _solve_scs(form: ConicForm, settings: dict, x0, y0, s0) -> dict:
    import scs

    solver = scs.SCS(form.data, form.cone, **settings)
    out = solver.solve(warm_start=True, x=x0, y=y0, s=s0)
    info = out["info"]
    return {
        "x": out["x"],
        "y": out["y"],
        "s": out["s"],
        "status_val": int(info["status_val"]),
        "status": info["status"],
        "iter": int(info["iter"]),
        "res_pri": float(info["res_pri"]),
        "res_dual": float(info["res_dual"]),
        "dobj": float(info["dobj"]),
    }


def _clarabel_cones(cone: dict) -> list:
    import clarabel

    cones = []
    if cone.get("z"):
        cones.append(clarabel.ZeroConeT(cone["z"]))
    if cone.get("l"):
        cones.append(clarabel.NonnegativeConeT(cone["l"]))
    cones += [clarabel.SecondOrderConeT(q) for q in cone.get("q", [])]
    cones += [clarabel.ExponentialConeT()] * cone.get("ep", 0)
    return cones


def _clarabel_settings(tol: float, time_limit: float | None, kkt: str | None = None):
    """Clarabel's settings; ``kkt`` names its direct KKT solver (default: Clarabel's)."""
    import clarabel

    st = clarabel.DefaultSettings()
    st.verbose = False
    st.tol_gap_abs = st.tol_gap_rel = st.tol_feas = tol
    st.tol_ktratio = min(st.tol_ktratio, tol)
    st.max_iter = 500
    if kkt is not None:
        st.direct_solve_method = kkt
    if time_limit is not None:
        st.time_limit = float(time_limit)
    return st


def _clarabel_out(sol, x, y, s, dobj_shift: float = 0.0) -> dict:
    status = str(sol.status)
    return {
        "x": x,
        "y": y,
        "s": s,
        "status_val": _CLARABEL_STATUS.get(status, 0),
        "status": status,
        "iter": int(sol.iterations),
        "res_pri": float(sol.r_prim),
        "res_dual": float(sol.r_dual),
        "dobj": float(sol.obj_val_dual) + dobj_shift,
    }


# up to this many block variables, the dense quadratic form factors faster in qdldl than in
# Clarabel's default: instance S 1.75 s -> 1.17 s, a 560-variable warm round 1.29 s ->
# 1.14 s; past it the default wins by far (instance L, about 1,700: 59 s against 126 s)
SIMPLICIAL_MAX = 640


def null_basis(rows: np.ndarray, d: int) -> np.ndarray:
    """An orthonormal basis (d, d - rank) of the vectors orthogonal to every row of ``rows``."""
    if rows.shape[0] == 0:
        return np.eye(d)
    _, sv, vt = np.linalg.svd(rows, full_matrices=True)
    rank = int(np.sum(sv > sv[0] * 1e-10)) if sv.size and sv[0] > 0 else 0
    return vt[rank:].T


@dataclass
class Reduction:
    """The restricted program with some cone rows held at equality and eliminated.

    A row ``x_r^T w_k = 0`` held as an equality confines block ``k`` to the null space of
    its held rows: ``w_k = Z_k z_k`` (``Z_k`` orthonormal, so ``||w_k|| = ||z_k||``). With
    ``x = T xr`` the program keeps its form over ``xr``; the held rows vanish from ``A``.
    A block pinned by its rows to about 18 of 20 dimensions then has 2 variables, not 20.
    """

    T: sp.csc_matrix
    rows: np.ndarray  # the rows of ``form.data["A"]`` kept
    data: dict
    cone: dict
    n_w: int  # reduced block-weight variables (they come first, then the nb t's)

    @classmethod
    def of(cls, form: ConicForm, Xa: np.ndarray, held: np.ndarray | None) -> Reduction:
        """``held``: a mask over ``form.cone_keys`` of the rows held at equality (or None)."""
        A, nv, nb, d, n = form.data["A"], form.n_vars, form.n_blocks, form.d, form.n
        if held is None or not held.any():
            return cls(
                sp.identity(nv, format="csc"), np.arange(A.shape[0]), form.data, form.cone, nb * d
            )
        keys = form.cone_keys
        kb = np.searchsorted(form.blocks, keys[held] // n)
        kr = keys[held] % n
        cols, rws, vals, start = [], [], [], 0
        for j in range(nb):
            Z = null_basis(Xa[kr[kb == j]], d)
            r, c = np.nonzero(np.ones_like(Z, dtype=bool))
            rws.append(j * d + r)
            cols.append(start + c)
            vals.append(Z[r, c])
            start += Z.shape[1]
        n_w = start
        rest = np.arange(nb * d, nv)
        rws.append(rest)
        cols.append(n_w + np.arange(len(rest)))
        vals.append(np.ones(len(rest)))
        T = sp.csc_matrix(
            (np.concatenate(vals), (np.concatenate(rws), np.concatenate(cols))),
            shape=(nv, n_w + len(rest)),
        )
        z = form.cone["z"]
        drop = z + np.nonzero(held)[0]
        rows = np.setdiff1d(np.arange(A.shape[0]), drop)
        data = {
            "A": (A @ T).tocsr()[rows].tocsc(),
            "b": form.data["b"][rows],
            "c": T.T @ form.data["c"],
        }
        if form.data.get("P") is not None:
            data["P"] = (T.T @ form.data["P"] @ T).tocsc()
        cone = dict(form.cone, l=form.cone["l"] - int(held.sum()))
        return cls(T, rows, data, cone, n_w)

    def expand(self, xr: np.ndarray, yr: np.ndarray, sr: np.ndarray, m: int):
        """The point in the form's own variables and rows (held rows: zero ``y`` and ``s``)."""
        y, s = np.zeros(m), np.zeros(m)
        y[self.rows], s[self.rows] = yr, sr
        return self.T @ xr, y, s


def _solve_clarabel(
    form: ConicForm,
    problem: Problem,
    tol: float,
    time_limit: float | None,
    held: np.ndarray | None = None,
) -> dict:
    """The restricted program in Clarabel (interior point; ``A x + s = b``, ``s`` in K, dual
    ``z`` in K*, the convention of SCS). No warm start. ``held`` (a mask over the cone rows)
    holds rows at equality and eliminates them (:class:`Reduction`); their multipliers are
    left at zero for the caller to fill in.

    For the squared loss with few working variables (``n_w <= n``) the residual variables
    are eliminated: with ``M`` the fit columns, the objective is ``scale/2 ||M w - y||^2``, a
    dense quadratic in the working blocks only, which keeps the KKT system small. The fit's
    multiplier ``scale (fit - y)`` is returned in the fit rows of ``y`` so the caller's dual
    check is the same for both forms.
    """
    import clarabel

    red = Reduction.of(form, problem.Xa, held)
    data, cone = red.data, red.cone
    A = sp.csc_matrix(data["A"])
    m = form.data["A"].shape[0]
    nv = A.shape[1]
    n, nb = form.n, form.n_blocks
    # past n_w > n the residual form is cheaper: its KKT system couples the blocks only
    # through the n fit rows, not through a dense n_w^2 quadratic. It is very sparse, and
    # there the simplicial qdldl beat Clarabel's supernodal default (6.9 s vs 9.7 s on
    # n=256 with 113 blocks of 9)
    residual_form = red.n_w > n
    kkt = "qdldl" if residual_form and problem.loss == "squared" else None
    if problem.loss == "squared" and not residual_form and red.n_w <= SIMPLICIAL_MAX:
        kkt = "qdldl"  # a small dense quadratic: the simplicial factorization is quicker
    st = _clarabel_settings(tol, time_limit, kkt)
    if problem.loss != "squared" or residual_form:
        Pm = data.get("P")
        Pm = sp.triu(Pm, format="csc") if Pm is not None else sp.csc_matrix((nv, nv))
        sol = clarabel.DefaultSolver(Pm, data["c"], A, data["b"], _clarabel_cones(cone), st).solve()
        x, y, s = red.expand(np.asarray(sol.x), np.asarray(sol.z), np.asarray(sol.s), m)
        return _clarabel_out(sol, x, y, s)
    scale, yv = problem.loss_scale, problem.y
    n_wt = red.n_w + nb  # block weights and their norms' bounds t
    keep = np.r_[np.arange(n_wt), nv - 1] if form.has_b else np.arange(n_wt)
    Ar = A.tocsr()
    M = Ar[:n][:, keep].toarray()  # fit rows restricted to the kept variables
    H = scale * (M.T @ M)
    q = data["c"][keep] - scale * (M.T @ yv)
    z = cone["z"]
    Arest = Ar[z:][:, keep].tocsc()
    sol = clarabel.DefaultSolver(
        sp.triu(sp.csc_matrix(H), format="csc"),
        q,
        Arest,
        data["b"][z:],
        _clarabel_cones(dict(cone, z=0)),
        st,
    ).solve()
    xr = np.asarray(sol.x)
    fit = M @ xr
    xx = np.zeros(nv)
    xx[keep] = xr
    xx[n_wt : n_wt + n] = fit - yv
    yy = np.concatenate([scale * (fit - yv), np.asarray(sol.z)])
    ss = np.concatenate([np.zeros(z), np.asarray(sol.s)])
    x, y, s = red.expand(xx, yy, ss, m)
    return _clarabel_out(sol, x, y, s, dobj_shift=0.5 * scale * float(yv @ yv))


def carried_blocks(Xa: np.ndarray, patterns: np.ndarray, start: ConvexSolution) -> np.ndarray:
    """The nonzero blocks of a previous solution placed on ``patterns`` (2P, d).

    Blocks below ``DEAD_BLOCK`` of the largest are dropped. Blocks whose pattern is in
    ``patterns`` keep it (:func:`matched_blocks`); each other nonzero block ``w`` goes to
    the free pattern whose cone ``w`` violates on the fewest data points (consecutive
    snapshots of a training run shift the network's own patterns by a few points). One
    product scores all of them.
    """
    prev = np.vstack([start.U, start.V])
    prev[~significant(prev)] = 0.0
    Pp = start.patterns.shape[0]
    W = matched_blocks(patterns, ConvexSolution(start.patterns, prev[:Pp], prev[Pp:], start.b))
    P = patterns.shape[0]
    placed = {p.tobytes() for p in np.packbits(patterns, axis=1)}
    keys = np.packbits(start.patterns, axis=1)
    todo = [
        k
        for k in np.nonzero(np.linalg.norm(prev, axis=1) > 0)[0]
        if keys[k % Pp].tobytes() not in placed
    ]
    if not todo:
        return W
    S = np.where(patterns, 1.0, -1.0)  # (P, n)
    sgn = np.where(Xa @ prev[todo].T >= 0, 1.0, -1.0)  # (n, L): the pattern each w induces
    agree = S @ sgn  # (P, L): n - 2 * (points where the pattern differs)
    for j, k in enumerate(todo):
        half = 0 if k < Pp else P
        for p in np.argsort(-agree[:, j]):
            if not W[half + p].any():
                W[half + p] = prev[k]
                break
    return W


# a cone row whose relative margin is within this is on its cone's boundary
HOLD_MARGIN = 1e-7
# ... and is held at equality when its multiplier, relative to beta, is above this
HOLD_MULTIPLIER = 1e-4


def _held_mask(form: ConicForm, held: dict[int, np.ndarray], n: int) -> np.ndarray:
    """Mask over ``form.cone_keys`` of the rows held at equality."""
    keys = [k * n + r for k, r in held.items() if len(r)]
    if not keys:
        return np.zeros(len(form.cone_keys), dtype=bool)
    return np.isin(form.cone_keys, np.concatenate(keys))


class WorkingSet:
    """Blocks and, per block, the data indices whose cone rows are in the working set."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.rows: dict[int, np.ndarray] = {}

    def add_block(self, k: int, rows: np.ndarray) -> None:
        self.rows[int(k)] = np.unique(np.asarray(rows, dtype=np.int64))

    def add_rows(self, k: int, rows: np.ndarray) -> int:
        old = self.rows[int(k)]
        new = np.union1d(old, rows)
        self.rows[int(k)] = new
        return len(new) - len(old)

    def blocks(self) -> np.ndarray:
        return np.array(sorted(self.rows), dtype=np.int64)

    def row_lists(self) -> list[np.ndarray]:
        return [self.rows[k] for k in sorted(self.rows)]

    def n_rows(self) -> int:
        return int(sum(len(r) for r in self.rows.values()))


class WorkingSetSolver:
    """A conic solver over a working set of blocks and cone rows, grown until the full
    program's primal and dual conditions hold (see the module docstring).

    ``inner``: ``clarabel`` (interior point, default: few iterations and no stalls on these
    small, badly conditioned restricted programs) or ``scs`` (warm-started across rounds;
    ``linear_solver`` and SCS ``settings`` apply).

    ``use_warm_start``: start from a given ``warm_start``'s blocks (on by default: with
    ``hold_active``, seeding a snapshot's solve with the previous snapshot's optimum, or the
    ``p_S`` solve with the ``p_own`` optimum, made it about 2x faster; see
    ``benchmarks/README.md``). The network's own point is a seed too (``core.solve`` passes
    it to the ``p_own`` solve): with ``carry_blocks`` its largest neurons start the working
    set;
    ``init_blocks``: how many blocks (by dual residual) start in the working set on a cold
    start; ``warm_blocks``: the same on a
    warm start, besides the carried nonzero blocks;
    ``carry_blocks``: a warm start carries at most this many of its blocks, the largest
    (None: ``init_blocks``): a first round over all 27-30 carried blocks of the warm-start
    benchmark was a dense quadratic of 560-630 variables (1.1-1.5 s); over the 16 largest
    it is small, those blocks settle and are held, and the dual check brings the others
    back (five seeded solves: 7.1-7.2 s against 10-11 s carrying all);
    ``init_rows``: fraction of each carried block's rows (those closest to its cone's
    boundary) that start in it; ``max_add_blocks``: blocks added per round at most;
    ``max_add_rows``: violated rows added per block and round at most (None: all);
    ``near_margin``: with a block's violated rows, add those whose relative margin is below;
    ``full_rows``: a program with at most this many cone rows (``2Pn``) starts with all of
    them and every block, so one inner solve settles it (snapshots with n=256, d=9, P=64:
    3.3-4.2 s per ``solve()``, against 4.1-5.3 s grown from a working set);
    ``gap_tol``: the relative certified gap that ends the solve (default ``eps / 10``);
    ``hold_active``: hold settled blocks' active rows at equality (see the module docstring;
    Clarabel inside only).
    """

    def __init__(
        self,
        linear_solver: str = "auto",
        max_iters: int = 200_000,
        scale: float = 1.0,
        max_rounds: int = 60,
        init_blocks: int = 16,
        warm_blocks: int = 4,
        init_rows: float = 0.2,
        max_add_blocks: int = 16,
        inner: str = "clarabel",
        max_add_rows: int | None = None,
        near_margin: float = 1e-2,
        full_rows: int = 40_000,
        gap_tol: float | None = None,
        use_warm_start: bool = True,
        carry_blocks: int | None = None,
        hold_active: bool = True,
        **settings,
    ) -> None:
        self.linear_solver = resolve_linear_solver(linear_solver)
        self.settings = {"max_iters": max_iters, "scale": scale, **settings}
        self.max_rounds = max_rounds
        self.init_blocks = init_blocks
        self.warm_blocks = warm_blocks
        self.init_rows = init_rows
        self.max_add_blocks = max_add_blocks
        if inner not in ("scs", "clarabel"):
            raise ValueError(f"inner: must be scs or clarabel, got {inner!r}")
        self.inner = inner
        self.max_add_rows = max_add_rows
        self.near_margin = near_margin
        self.full_rows = full_rows
        self.gap_tol = gap_tol
        self.use_warm_start = use_warm_start
        if carry_blocks is not None and carry_blocks < 0:
            raise ValueError(f"carry_blocks: must be >= 0, got {carry_blocks}")
        self.carry_blocks = carry_blocks
        self.hold_active = hold_active and inner == "clarabel"
        self.name = f"workset-scs-{self.linear_solver}" if inner == "scs" else "workset-clarabel"

    # -- helpers -----------------------------------------------------------------------
    def _dual_check(
        self,
        Xa: np.ndarray,
        S: np.ndarray,
        patterns: np.ndarray,
        lam: np.ndarray,
        blocks: np.ndarray,
        xnorm: np.ndarray,
        full: bool,
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """For each block k in ``blocks`` absent from the working set: the smallest
        ``||sign_k X^T D_k lam - X^T S_k mu||`` found over ``mu >= 0`` (a certificate of dual
        feasibility when ``<= beta``) and the data indices where ``mu > 0``.

        ``lam`` is the fit's multiplier (the loss gradient), so ``-sign_k X^T D_k lam`` is the
        block's ascent direction; ``mu`` is first sought on the ``5d`` rows it violates most
        (non-negative least squares); with ``full`` a block not certified that way gets the
        exact minimum over all ``n`` rows. The rows of a block's last ``mu`` are tried first:
        from one round to the next ``lam`` moves little, and they usually certify it again
        (the dual checks of the warm-start benchmark's solves: 0.95 s -> 0.48 s).
        """
        from scipy.optimize import nnls

        n, d = Xa.shape
        P = patterns.shape[0]
        G = (patterns * lam[None, :]) @ Xa  # (P, d)
        Mg = S * (G @ Xa.T) / xnorm[None, :]  # margins of +g per pattern (P, n)
        q = min(n, 5 * d)
        resid = np.zeros(len(blocks))
        support: list[np.ndarray] = []
        for j, k in enumerate(blocks):
            p, sign = int(k) % P, (1.0 if k < P else -1.0)
            g = sign * G[p]
            m = -sign * Mg[p]  # margins of the ascent direction -g
            gn = float(np.linalg.norm(g))
            if m.min() >= 0 or gn <= self._beta:  # mu = 0 is optimal, or good enough
                resid[j] = gn
                support.append(np.zeros(0, dtype=np.int64))
                continue
            cached = self._supports.get(int(k))
            if cached is not None and len(cached):  # the rows that certified it last round
                mu, r = nnls((S[p, cached, None] * Xa[cached]).T, g, maxiter=50 * len(cached))
                if r <= self._beta:
                    resid[j] = r
                    support.append(cached[mu > 0])
                    continue
            order = np.argsort(m)
            for size in (q, 4 * q):  # most violated rows first, then more of them
                sub = order[: min(size, n)]
                mu, r = nnls((S[p, sub, None] * Xa[sub]).T, g, maxiter=50 * len(sub))
                if r <= self._beta or len(sub) == n:
                    break
            if full and self._beta < r < 1.5 * self._beta and len(sub) < n:
                mu_all, r_all = nnls((S[p, :, None] * Xa).T, g, maxiter=20 * n)
                if r_all < r:
                    mu, r, sub = mu_all, r_all, np.arange(n)
            resid[j] = r
            support.append(sub[mu > 0])
            self._supports[int(k)] = support[-1]
        return resid, support

    @staticmethod
    def _margins(Xa: np.ndarray, S: np.ndarray, W: np.ndarray, blocks: np.ndarray):
        """Signed cone margins ``(2D_k - I) X w_k`` (len(blocks), n): one product."""
        P = S.shape[0]
        return S[blocks % P] * (W[blocks] @ Xa.T)

    def _near_rows(self, Xa, S, w, k, xnorm) -> np.ndarray:
        """The data indices of block k closest to (or beyond) its cone's boundary at ``w``."""
        n = Xa.shape[0]
        P = S.shape[0]
        nw = np.linalg.norm(w)
        if nw == 0:
            return np.zeros(0, dtype=np.int64)
        m = S[k % P] * (Xa @ w) / (xnorm * nw)
        q = max(1, int(np.ceil(self.init_rows * n)))
        near = np.argpartition(m, min(q, n - 1))[:q]
        return np.union1d(near, np.nonzero(m < 0)[0])

    def _certificate(
        self,
        problem: Problem,
        patterns: np.ndarray,
        S: np.ndarray,
        form: ConicForm,
        out: dict,
        lam: np.ndarray,
        resid_absent: np.ndarray,
    ) -> Certificate:
        """A feasible point and a dual lower bound of the full program from one round.

        Primal: the round's point, blocks below ``DEAD_BLOCK`` set to zero and each block
        that violates a cone row projected onto its cone (exactly feasible). Dual:
        ``-theta lam`` with ``theta = min(1, beta / s)`` and ``s`` the largest block
        residual ``||sign_k X^T D_k lam - X^T S_k mu_k||`` over all ``2P`` blocks: the inner
        solver's cone multipliers (clipped at 0) for the working blocks, the dual check's
        ``mu`` for the absent ones. Any ``mu >= 0`` bounds the block's dual constraint from
        above, so the bound holds whatever the inner accuracy.
        """
        Xa = problem.Xa
        n = Xa.shape[0]
        P = patterns.shape[0]
        sol = _solution_from_x(form, patterns, out["x"])
        point, primal = feasible_point(problem, patterns, np.vstack([sol.U, sol.V]), sol.b)
        blocks = form.blocks
        z, keys = form.cone["z"], form.cone_keys
        mu = np.maximum(out["y"][z : z + len(keys)], 0.0)
        kb, kr = keys // n, keys % n
        C = sp.csr_matrix(
            (mu * S[kb % P, kr], (np.searchsorted(blocks, kb), kr)), shape=(len(blocks), n)
        )
        G = (patterns * lam[None, :]) @ Xa  # (P, d)
        sign = np.where(blocks < P, 1.0, -1.0)[:, None]
        resid = np.linalg.norm(sign * G[blocks % P] - C @ Xa, axis=1)
        s_max = max(float(resid.max(initial=0.0)), float(resid_absent.max(initial=0.0)))
        return Certificate(point, primal, scaled_bound(problem, lam, s_max))

    def _held_multipliers(
        self,
        problem: Problem,
        patterns: np.ndarray,
        S: np.ndarray,
        form: ConicForm,
        out: dict,
        lam: np.ndarray,
        held: dict[int, np.ndarray],
        mask: np.ndarray,
        released_keys: set[int],
    ) -> int:
        """Multipliers of the rows held at equality, written into ``out["y"]``; rows whose
        multiplier wants to be negative are released (they are not active), counted, and
        added to ``released_keys`` (never held again in this solve, so nothing cycles).
        ``mask``: the rows of ``form.cone_keys`` held in this round's solve.

        For block k the held rows' multipliers ``mu >= 0`` minimise
        ``||sign_k X^T D_k lam - X^T S_k (mu_free + mu)||`` (``mu_free``: the other rows'
        multipliers): at the reduced program's optimum that residual is ``beta`` when the
        unconstrained least-squares multipliers are all non-negative.
        """
        from scipy.optimize import nnls

        Xa, n = problem.Xa, problem.Xa.shape[0]
        P = patterns.shape[0]
        z, keys = form.cone["z"], form.cone_keys
        y = out["y"]
        working = set(form.blocks.tolist())
        released = 0
        for k, rows in list(held.items()):
            if not len(rows) or k not in working:
                continue
            sel = (keys // n) == k
            free = sel & ~mask
            fr = keys[free] % n
            g = (1.0 if k < P else -1.0) * (Xa.T @ (patterns[k % P] * lam))
            g = g - Xa[fr].T @ (np.maximum(y[z + np.nonzero(free)[0]], 0) * S[k % P, fr])
            pos = z + np.nonzero(sel & mask)[0]
            hr = keys[sel & mask] % n
            Ah = (S[k % P, hr, None] * Xa[hr]).T  # (d, held)
            mu, r = nnls(Ah, g, maxiter=50 * len(hr) + 50)
            y[pos] = mu
            if r <= self._beta * (1 + 1e-6):  # dual feasible: the held rows are active
                continue
            mu_ls = np.linalg.lstsq(Ah, g, rcond=None)[0]
            neg = mu_ls * np.linalg.norm(Xa[hr], axis=1) < -1e-6 * self._beta
            if neg.any():
                held[k] = np.setdiff1d(rows, hr[neg])
                released += int(neg.sum())
                released_keys.update((k * n + hr[neg]).tolist())
        return released

    def _hold(
        self,
        problem: Problem,
        form: ConicForm,
        out: dict,
        W: np.ndarray,
        marg: np.ndarray,
        xnorm: np.ndarray,
        held: dict[int, np.ndarray],
        settled: list[int],
        was_held: np.ndarray,
        released_keys: set[int],
    ) -> None:
        """Hold at equality, from the next round on, each row on its cone's boundary with a
        clearly positive multiplier, of the blocks that no row is added to (their active
        set has settled); rows held this round, or ever released, are left as they are.
        ``marg``: the round's cone margins of the working blocks (``_margins``)."""
        n = problem.Xa.shape[0]
        z, keys = form.cone["z"], form.cone_keys
        mu = out["y"][z : z + len(keys)]
        kb, kr = keys // n, keys % n
        wn = np.linalg.norm(W[kb], axis=1)
        live = wn > 0
        rel = np.full(len(keys), np.inf)
        j = np.searchsorted(form.blocks, kb[live])
        rel[live] = marg[j, kr[live]] / (xnorm[kr[live]] * wn[live])
        on = (np.abs(rel) <= HOLD_MARGIN) & (mu * xnorm[kr] > HOLD_MULTIPLIER * self._beta)
        on &= np.isin(kb, settled) & ~was_held
        if released_keys:
            on &= ~np.isin(keys, np.fromiter(released_keys, dtype=np.int64))
        for k in np.unique(kb[on]):
            held[int(k)] = np.union1d(held.get(int(k), np.zeros(0, np.int64)), kr[on & (kb == k)])

    # -- solve -------------------------------------------------------------------------
    def solve(
        self,
        problem: Problem,
        patterns: np.ndarray,
        *,
        eps: float = 1e-6,
        warm_start: ConvexSolution | None = None,
        time_limit: float | None = None,
    ) -> SolverResult:
        t0 = time.perf_counter()
        Xa, y = problem.Xa, problem.y
        n, d = Xa.shape
        P = patterns.shape[0]
        S = np.where(patterns, 1.0, -1.0)
        xnorm = np.maximum(np.linalg.norm(Xa, axis=1), 1e-300)
        beta = problem.beta

        self._beta = beta
        self._supports: dict[int, np.ndarray] = {}  # per absent block, its last mu's rows
        if not self.use_warm_start:
            warm_start = None
        # starting point: the warm start's blocks, or the zero network
        if warm_start is not None:
            W = carried_blocks(Xa, patterns, warm_start)
            carry = self.carry_blocks if self.carry_blocks is not None else self.init_blocks
            norms = np.linalg.norm(W, axis=1)
            W[np.argsort(-norms)[carry:]] = 0.0  # the largest few only (see carry_blocks)
            b0 = (warm_start.b or 0.0) if problem.output_bias else None
        else:
            W = np.zeros((2 * P, d))
            b0 = None
            if problem.output_bias:
                b0 = float(np.mean(y)) if problem.loss == "squared" else 0.0
        start = ConvexSolution(patterns, W[:P], W[P:], b0)
        # SCS's fit multiplier is the loss gradient at the optimum
        lam0 = losses.gradient(problem.loss, start.fit(Xa), y, problem.loss_scale)
        ws = WorkingSet(n)
        live = np.nonzero(np.linalg.norm(W, axis=1) > 0)[0]
        whole = 2 * P * n <= self.full_rows  # small program: one solve of all of it
        if whole:
            live = np.arange(2 * P)
        held: dict[int, np.ndarray] = {}  # per block, the rows held at equality
        released_keys: set[int] = set()  # rows released from it (never held again)
        for k in live:
            ws.add_block(k, np.arange(n) if whole else self._near_rows(Xa, S, W[k], k, xnorm))
        absent = np.setdiff1d(np.arange(2 * P), live)
        resid, support = self._dual_check(Xa, S, patterns, lam0, absent, xnorm, full=False)
        order = np.argsort(-resid)
        for j in order[: self.warm_blocks if warm_start is not None else self.init_blocks]:
            if resid[j] <= beta:
                break
            ws.add_block(absent[j], support[j])
        if not ws.rows:  # the start passes the dual check; verify it with one block
            ws.add_block(int(absent[order[0]]), support[order[0]])

        settings = dict(
            self.settings, eps_abs=eps, eps_rel=eps, verbose=False, linear_solver=self.linear_solver
        )
        total_iters = 0
        prev: tuple[ConicForm, dict] | None = None
        history = []
        out = info = form = None
        row_tol = 0.1 * eps
        gap_tol = self.gap_tol if self.gap_tol is not None else 0.1 * eps
        cert = None
        converged = False
        status = "failed"
        for rnd in range(self.max_rounds):
            t_round = time.perf_counter()
            form = build(problem, patterns, ws.blocks(), ws.row_lists())
            if time_limit is not None:
                left = time_limit - (time.perf_counter() - t0)
                if left <= 0 and prev is not None:
                    status = "time_limit"
                    break
                settings["time_limit_secs"] = max(float(left), 1e-3)  # round 0 always runs
            if prev is None:
                x0 = warm_point(problem, form, patterns, start)
                y0 = s0 = None
            else:
                pf, po = prev
                x0 = _remap(pf.col_keys(), po["x"], form.col_keys())
                rk, pk = form.row_keys(), pf.row_keys()
                y0, s0 = _remap(pk, po["y"], rk), _remap(pk, po["s"], rk)
            mask = _held_mask(form, held, n)
            t_inner = time.perf_counter()
            if self.inner == "scs":
                out = _solve_scs(form, settings, x0, y0, s0)
            else:
                out = _solve_clarabel(
                    form, problem, min(eps, 1e-8), settings.get("time_limit_secs"), mask
                )
            t_inner = time.perf_counter() - t_inner
            info = out
            total_iters += int(info["iter"])
            status = _STATUS.get(int(info["status_val"]), "failed")
            prev = (form, out)
            if (
                status not in ("optimal", "optimal_inaccurate")
                and time_limit is not None
                and time.perf_counter() - t0 >= 0.99 * time_limit
            ):
                status = "time_limit"  # the inner solver ran out of the time left
                break
            W = block_weights(form, out["x"])
            # primal check over every cone row of the working blocks (absent blocks are 0)
            blocks = form.blocks
            marg = self._margins(Xa, S, W, blocks)
            wmax = float(np.linalg.norm(W, axis=1).max())
            scale = float(xnorm.max() * wmax) if wmax > 0 else 1.0
            viol = -marg / scale
            n_new_rows = 0
            settled_blocks = []  # no row added this round
            wn = np.linalg.norm(W[blocks], axis=1)
            for j, k in enumerate(blocks):
                bad = np.nonzero(viol[j] > row_tol)[0]
                if bad.size and wn[j] > 0:  # with the violated rows, the nearly active ones
                    rel = marg[j] / (xnorm * wn[j])
                    bad = np.union1d(bad, np.nonzero(rel < self.near_margin)[0])
                cap = self.max_add_rows
                if cap is not None and bad.size > cap:
                    bad = bad[np.argpartition(-viol[j][bad], cap - 1)[:cap]]
                if bad.size:
                    n_new_rows += ws.add_rows(k, bad)
                else:
                    settled_blocks.append(k)
            # dual check of absent blocks: ||sign X^T D_k lam - X^T S_k mu|| <= beta, mu >= 0
            # the fit's multiplier (the loss gradient), projected onto the dual's domain
            lam = -losses.project_dual(
                problem.loss,
                -form.fit_coef * out["y"][form.fit_rows],
                y,
                problem.loss_scale,
                sum_zero=problem.output_bias,
            )
            absent = np.setdiff1d(np.arange(2 * P), blocks)
            resid, support = self._dual_check(Xa, S, patterns, lam, absent, xnorm, full=True)
            excess = resid / beta - 1.0
            dual_infeas = float(max(0.0, excess.max())) if absent.size else 0.0
            bad = np.nonzero(excess > eps)[0]
            bad = bad[np.argsort(-excess[bad])][: self.max_add_blocks]
            viol_blocks = absent[bad]
            for j in bad:
                ws.add_block(absent[j], support[j])
            released = 0
            if held and status in ("optimal", "optimal_inaccurate"):
                released = self._held_multipliers(
                    problem, patterns, S, form, out, lam, held, mask, released_keys
                )
            if self.hold_active and status in ("optimal", "optimal_inaccurate"):
                self._hold(
                    problem, form, out, W, marg, xnorm, held, settled_blocks, mask, released_keys
                )
            cert = None
            if status in ("optimal", "optimal_inaccurate"):
                cert = self._certificate(problem, patterns, S, form, out, lam, resid)
            history.append(
                {
                    "round": rnd,
                    "iters": int(info["iter"]),
                    "blocks": len(blocks),
                    "rows": int(form.cone_keys.size),
                    "new_rows": int(n_new_rows),
                    "new_blocks": len(viol_blocks),
                    "held_rows": int(sum(len(v) for v in held.values())),
                    "released_rows": int(released),
                    "max_violation": float(max(0.0, viol.max())) if viol.size else 0.0,
                    "dual_infeasibility": dual_infeas,
                    "relative_gap": cert.relative_gap() if cert is not None else None,
                    "status": status,
                    "inner_seconds": t_inner,
                    "seconds": time.perf_counter() - t_round,
                }
            )
            if cert is None:
                break
            settled = n_new_rows == 0 and len(viol_blocks) == 0 and released == 0
            if settled or cert.relative_gap() <= gap_tol:
                converged = True
                break

        if cert is not None:  # the certified point and bound of the full program
            sol, objective, dobj = cert.point, cert.primal, cert.lower
        else:
            sol = _solution_from_x(form, patterns, out["x"])
            objective, dobj = sol.objective(problem), float(info["dobj"])
        if not converged and status in ("optimal", "optimal_inaccurate"):
            status = "max_iters"
        if status == "failed" and int(info["iter"]) >= self.settings["max_iters"]:
            status = "max_iters"
        result = SolverResult(
            status=status,
            objective=objective,
            solution=sol,
            iterations=total_iters,
            primal_residual=float(info["res_pri"]),
            dual_residual=float(info["res_dual"]),
            duality_gap=abs(objective - dobj),
            dual_objective=dobj,
            wall_seconds=time.perf_counter() - t0,
            backend=self.name,
            info={
                "scs_status": info["status"],
                "rounds": len(history),
                "working_blocks": int(form.n_blocks),
                "working_rows": int(form.cone_keys.size),
                "total_rows": int(2 * P * n),
                "max_violation": sol.max_violation(Xa),
                "dual_infeasibility": history[-1]["dual_infeasibility"] if history else None,
                "history": history,
            },
            warm={"x": out["x"], "y": out["y"], "s": out["s"]},
        )
        # DESIGN's sign convention for the fit's dual point: lambda = -grad l
        result.dual_fit = -(form.fit_coef * out["y"][form.fit_rows])
        return result
