"""SCS on the direct conic form of the convex program, built as sparse arrays (no cvxpy).

Variables ``x = [w_1..w_2P (blocks, d each), t_1..t_2P, loss variables, b?]`` where
blocks ``0..P-1`` are the ``u_i`` and ``P..2P-1`` the ``v_i``.

- squared:  ``r = fit - y`` (zero cone), objective ``scale/2 ||r||^2`` through SCS's ``P``.
- hinge:    ``s >= 0``, ``s + y*fit >= 1``, objective ``scale * sum s``.
- logistic: ``q1 + q2 <= 1``, ``(-s, 1, q1)`` and ``(-y*fit - s, 1, q2)`` in the exponential
  cone, objective ``scale * sum s``.

Cone rows ``(2D_i - I) X w >= 0`` go in the nonnegative cone, ``(t_k, w_k)`` in second-order
cones, and ``beta * sum t`` in the linear objective.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from functools import cache

import numpy as np
import scipy.sparse as sp

from ..problem import Problem
from .base import ConvexSolution, SolverResult

LINEAR_SOLVERS = ("auto", "qdldl", "cpu_indirect", "mkl", "cpu_dense", "cudss", "gpu_indirect")
_MODULES = {
    "qdldl": "_scs_direct",
    "cpu_indirect": "_scs_indirect",
    "mkl": "_scs_mkl",
    "cpu_dense": "_scs_dense",
    "cudss": "_scs_cudss",
    "gpu_indirect": "_scs_gpu",
}
_STATUS = {
    1: "optimal",
    2: "optimal_inaccurate",
    -2: "infeasible",
    -7: "infeasible",
    -1: "unbounded",
    -6: "unbounded",
    -3: "failed",
    -4: "failed",
    -5: "interrupted",
    0: "failed",
}


@cache
def available_linear_solvers() -> tuple[str, ...]:
    """The SCS linear-system backends importable in this environment."""
    out = []
    for name, module in _MODULES.items():
        try:
            importlib.import_module(f"scs.{module}")
        except ImportError:
            continue
        out.append(name)
    return tuple(out)


def gpu_linear_solver() -> str | None:
    """``cudss`` or ``gpu_indirect`` when the installed SCS has one and a GPU is visible."""
    avail = available_linear_solvers()
    for name in ("cudss", "gpu_indirect"):
        if name in avail and _gpu_present():
            return name
    return None


def default_linear_solver() -> str:
    return gpu_linear_solver() or "qdldl"


def resolve_linear_solver(name: str) -> str:
    """Check an SCS backend name; ``auto`` becomes :func:`default_linear_solver`."""
    if name not in LINEAR_SOLVERS:
        raise ValueError(f"linear_solver: must be one of {', '.join(LINEAR_SOLVERS)}, got {name!r}")
    if name == "auto":
        return default_linear_solver()
    if name not in available_linear_solvers():
        raise ValueError(
            f"linear_solver: {name!r} is not available in this SCS build "
            f"(available: {', '.join(available_linear_solvers())})"
        )
    return name


def _gpu_present() -> bool:
    """An NVIDIA GPU is visible: the driver's device nodes (no torch needed, so a CPU torch
    in a GPU image does not hide the GPU), or torch's CUDA where torch has it."""
    import glob
    import os

    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return False
    if glob.glob("/dev/nvidia[0-9]*"):
        return True
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # torch missing or broken CUDA: no GPU for us
        return False


@dataclass
class ConicForm:
    """The SCS data of one problem over one pattern set (possibly restricted).

    ``blocks`` lists the blocks present (ids in ``[0, 2P)``: ``i`` is ``u_i``, ``P + i`` is
    ``v_i``), in variable order; ``cone_keys`` names each nonnegative cone row of ``(2D - I)Xw``
    as ``block * n + data_index``. ``fit_rows`` / ``fit_coef`` say where the fit enters ``A``:
    the dual multiplier of the fit is ``lam = fit_coef * y[fit_rows]``, and a block ``k``
    absent from the form is dual feasible (with zero cone multipliers) when
    ``||X^T D_k lam|| <= beta``.
    """

    data: dict
    cone: dict
    P: int
    d: int
    n: int
    n_loss_vars: int
    has_b: bool
    blocks: np.ndarray | None = None
    cone_keys: np.ndarray | None = None
    fit_rows: np.ndarray | None = None
    fit_coef: np.ndarray | None = None

    @property
    def n_vars(self) -> int:
        return self.data["c"].shape[0]

    @property
    def n_blocks(self) -> int:
        return len(self.blocks) if self.blocks is not None else 2 * self.P

    def row_keys(self) -> np.ndarray:
        """A key per row of ``A``, equal for the same row across restrictions of one problem
        (loss rows: negative; cone rows: ``cone_keys``; SOC rows: above ``2Pn``)."""
        z, nl = self.cone["z"], self.cone["l"]
        nc = len(self.cone_keys)
        n_soc = self.n_blocks * (self.d + 1)
        n_rows = self.data["A"].shape[0]
        keys = np.empty(n_rows, dtype=np.int64)
        keys[:z] = -1 - np.arange(z)
        keys[z : z + nc] = self.cone_keys
        keys[z + nc : z + nl] = -1 - z - np.arange(nl - nc)
        soc = (self.blocks[:, None] * (self.d + 1) + np.arange(self.d + 1)).ravel()
        keys[z + nl : z + nl + n_soc] = 2 * self.P * self.n + soc
        rest = n_rows - (z + nl + n_soc)
        keys[z + nl + n_soc :] = -1 - nl - z - np.arange(rest)
        return keys

    def col_keys(self) -> np.ndarray:
        """A key per variable, equal for the same variable across restrictions."""
        d, nb = self.d, self.n_blocks
        keys = np.empty(self.n_vars, dtype=np.int64)
        keys[: nb * d] = (self.blocks[:, None] * d + np.arange(d)).ravel()
        keys[nb * d : nb * d + nb] = 2 * self.P * d + self.blocks
        rest = self.n_vars - nb * (d + 1)
        keys[nb * (d + 1) :] = -1 - np.arange(rest)
        return keys


def _coo(rows, cols, vals, shape) -> sp.coo_matrix:
    return sp.coo_matrix(
        (np.asarray(vals, float), (np.asarray(rows), np.asarray(cols))), shape=shape
    )


def _block_fit(Xa: np.ndarray, patterns: np.ndarray, blocks: np.ndarray) -> sp.csr_matrix:
    """Sparse (n, len(blocks) d) with column group j equal to ``sign_k D_k X`` (k = blocks[j])."""
    n, d = Xa.shape
    P = patterns.shape[0]
    Db = patterns[blocks % P]  # (nb, n)
    sign = np.where(blocks < P, 1.0, -1.0)
    blk, row = np.nonzero(Db)
    cols = (blk[:, None] * d + np.arange(d)[None, :]).ravel()
    rows = np.repeat(row, d)
    vals = (Xa[row] * sign[blk][:, None]).ravel()
    return _coo(rows, cols, vals, (n, len(blocks) * d)).tocsr()


def fit_operator(Xa: np.ndarray, patterns: np.ndarray) -> sp.csr_matrix:
    """Sparse ``M`` (n, 2Pd) with ``M w = sum_i D_i X (u_i - v_i)``."""
    return _block_fit(Xa, patterns, np.arange(2 * patterns.shape[0]))


def _block_cone(
    Xa: np.ndarray, patterns: np.ndarray, blocks: np.ndarray, rows: list[np.ndarray] | None
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Sparse rows ``(2D_k - I) x_r^T w_k`` for each listed block k and data index r in
    ``rows[j]`` (all when None), and their keys ``k * n + r``."""
    n, d = Xa.shape
    P = patterns.shape[0]
    if rows is None:
        rows = [np.arange(n)] * len(blocks)
    counts = np.array([len(r) for r in rows], dtype=np.int64)
    r = np.concatenate(rows).astype(np.int64) if len(rows) else np.zeros(0, np.int64)
    j = np.repeat(np.arange(len(blocks)), counts)
    k = blocks[j] if len(blocks) else np.zeros(0, np.int64)
    sgn = np.where(patterns[k % P, r], 1.0, -1.0)
    m = len(r)
    vals = (sgn[:, None] * Xa[r]).ravel()
    rr = np.repeat(np.arange(m), d)
    cc = (j[:, None] * d + np.arange(d)[None, :]).ravel()
    G = _coo(rr, cc, vals, (m, len(blocks) * d)).tocsr()
    return G, k.astype(np.int64) * n + r


def cone_operator(Xa: np.ndarray, patterns: np.ndarray) -> sp.csr_matrix:
    """Sparse ``G`` (2Pn, 2Pd) with rows ``(2D_i - I) X w_k`` for every block k."""
    return _block_cone(Xa, patterns, np.arange(2 * patterns.shape[0]), None)[0]


def build(
    problem: Problem,
    patterns: np.ndarray,
    blocks: np.ndarray | None = None,
    rows: list[np.ndarray] | None = None,
) -> ConicForm:
    """The direct conic form of the convex program over ``patterns``.

    ``blocks`` (default: all ``2P``) restricts the variables to those blocks (the others are
    fixed at zero); ``rows`` (default: all) keeps, for the j-th listed block, only the cone
    rows of the data indices ``rows[j]``. The restricted program is a relaxation in the cone
    rows and a restriction in the blocks; see :mod:`.workset` for how it is made exact.
    """
    Xa, y = problem.Xa, problem.y
    n, d = Xa.shape
    P = patterns.shape[0]
    blocks = np.arange(2 * P) if blocks is None else np.asarray(blocks, dtype=np.int64)
    K = len(blocks)
    nw, nt = K * d, K
    loss = problem.loss
    n_loss = {"squared": n, "hinge": n, "logistic": 3 * n}[loss]
    has_b = problem.output_bias
    nvar = nw + nt + n_loss + int(has_b)
    o_t, o_l, o_b = nw, nw + nt, nw + nt + n_loss

    M = _block_fit(Xa, patterns, blocks)
    fit_cols = sp.hstack([M, sp.csr_matrix((n, nvar - nw))], format="csr")
    if has_b:
        fit_cols = fit_cols + _coo(np.arange(n), np.full(n, o_b), np.ones(n), (n, nvar)).tocsr()
    G, cone_keys = _block_cone(Xa, patterns, blocks, rows)
    n_cone = G.shape[0]
    G_full = sp.hstack([G, sp.csr_matrix((n_cone, nvar - nw))], format="csr")
    # second-order cones (t_k, w_k): rows -[t_k; w_k]
    base = np.arange(K) * (d + 1)
    soc_rows = np.concatenate([base, (base[:, None] + 1 + np.arange(d)).ravel()])
    soc_cols = np.concatenate([o_t + np.arange(K), np.arange(K * d)])
    A_soc = _coo(soc_rows, soc_cols, -np.ones(len(soc_rows)), (K * (d + 1), nvar))

    c = np.zeros(nvar)
    c[o_t : o_t + nt] = problem.beta
    Pmat = None
    zero_A, zero_b = [], []
    lin_A, lin_b = [-G_full], [np.zeros(n_cone)]
    exp_A, exp_b = [], []
    scale = problem.loss_scale
    if loss == "squared":
        # fit - r = y
        zero_A.append(fit_cols - _coo(np.arange(n), o_l + np.arange(n), np.ones(n), (n, nvar)))
        zero_b.append(y)
        Pmat = _coo(o_l + np.arange(n), o_l + np.arange(n), np.full(n, scale), (nvar, nvar))
        fit_rows, fit_coef = np.arange(n), np.ones(n)
    else:
        c[o_l : o_l + n] = scale
        S_cols = _coo(np.arange(n), o_l + np.arange(n), np.ones(n), (n, nvar)).tocsr()
        yfit = sp.diags(y) @ fit_cols
        if loss == "hinge":
            lin_A += [-S_cols, -(S_cols + yfit)]  # s >= 0;  s + y fit >= 1
            lin_b += [np.zeros(n), -np.ones(n)]
            fit_rows, fit_coef = n_cone + n + np.arange(n), -y.astype(float)
        else:
            Q1 = _coo(np.arange(n), o_l + n + np.arange(n), np.ones(n), (n, nvar)).tocsr()
            Q2 = _coo(np.arange(n), o_l + 2 * n + np.arange(n), np.ones(n), (n, nvar)).tocsr()
            lin_A.append(Q1 + Q2)  # 1 - q1 - q2 >= 0
            lin_b.append(np.ones(n))
            # cone i: slack = (a_i, 1, c_i) = b - A x  interleaved per cone
            first1, third1 = S_cols, -Q1  # (-s, 1, q1): a = -s -> A row = +s
            first2 = S_cols + yfit  # (-y fit - s, 1, q2): A row = y fit + s
            zero_row = sp.csr_matrix((n, nvar))
            for first, third in ((first1, third1), (first2, -Q2)):
                blk = sp.vstack([first, zero_row, third], format="csr")
                # reorder rows to (a_1, 1, c_1, a_2, ...)
                perm = np.arange(3 * n).reshape(3, n).T.ravel()
                exp_A.append(blk[perm])
                bb = np.zeros(3 * n)
                bb[1::3] = 1.0
                exp_b.append(bb)
            n_lin = n_cone + n
            fit_rows = n_lin + K * (d + 1) + 3 * n + 3 * np.arange(n)
            fit_coef = y.astype(float)
    A = sp.vstack([*zero_A, *lin_A, A_soc, *exp_A], format="csc")
    b = np.concatenate([*zero_b, *lin_b, np.zeros(K * (d + 1)), *exp_b])
    cone = {
        "z": sum(a.shape[0] for a in zero_A),
        "l": sum(a.shape[0] for a in lin_A),
        "q": [d + 1] * K,
    }
    if exp_A:
        cone["ep"] = sum(a.shape[0] for a in exp_A) // 3
    data = {"A": A, "b": b, "c": c}
    if Pmat is not None:
        data["P"] = Pmat.tocsc()
    return ConicForm(
        data=data,
        cone=cone,
        P=P,
        d=d,
        n=n,
        n_loss_vars=n_loss,
        has_b=has_b,
        blocks=blocks,
        cone_keys=cone_keys,
        fit_rows=fit_rows,
        fit_coef=fit_coef,
    )


def block_weights(form: ConicForm, x: np.ndarray) -> np.ndarray:
    """All ``2P`` blocks (2P, d) from an SCS point (absent blocks are zero)."""
    P, d = form.P, form.d
    W = np.zeros((2 * P, d))
    W[form.blocks] = x[: form.n_blocks * d].reshape(form.n_blocks, d)
    return W


def _solution_from_x(form: ConicForm, patterns: np.ndarray, x: np.ndarray) -> ConvexSolution:
    P = form.P
    W = block_weights(form, x)
    b = float(x[-1]) if form.has_b else None
    return ConvexSolution(patterns=patterns, U=W[:P].copy(), V=W[P:].copy(), b=b)


def matched_blocks(patterns: np.ndarray, start: ConvexSolution) -> np.ndarray:
    """The blocks (2P, d) of ``start`` placed at the matching patterns (zero where none)."""
    P, d = patterns.shape[0], start.U.shape[1]
    index = {p.tobytes(): i for i, p in enumerate(np.packbits(start.patterns, axis=1))}
    W = np.zeros((2 * P, d))
    for i, key in enumerate(np.packbits(patterns, axis=1)):
        j = index.get(key.tobytes())
        if j is not None:
            W[i], W[P + i] = start.U[j], start.V[j]
    return W


def warm_point(
    problem: Problem, form: ConicForm, patterns: np.ndarray, start: ConvexSolution
) -> np.ndarray:
    """A primal SCS point from a previous solution (blocks matched by pattern)."""
    P, d, n = form.P, form.d, form.n
    nb = form.n_blocks
    x = np.zeros(form.n_vars)
    W = matched_blocks(patterns, start)
    Wb = W[form.blocks]
    x[: nb * d] = Wb.ravel()
    x[nb * d : nb * d + nb] = np.linalg.norm(Wb, axis=1)
    sol = ConvexSolution(patterns, W[:P], W[P:], start.b if form.has_b else None)
    z = sol.fit(problem.Xa)
    o_l = nb * d + nb
    if problem.loss == "squared":
        x[o_l : o_l + n] = z - problem.y
    elif problem.loss == "hinge":
        x[o_l : o_l + n] = np.maximum(0.0, 1.0 - problem.y * z)
    else:
        s = np.logaddexp(0.0, -problem.y * z)
        x[o_l : o_l + n] = s
        x[o_l + n : o_l + 2 * n] = np.exp(-s)
        x[o_l + 2 * n : o_l + 3 * n] = np.exp(-problem.y * z - s)
    if form.has_b:
        x[-1] = start.b or 0.0
    return x


class SCSSolver:
    """SCS on the direct conic form. ``linear_solver`` picks SCS's backend ("auto": a
    GPU backend when the installed SCS has one and a GPU is visible, else ``qdldl``)."""

    def __init__(
        self, linear_solver: str = "auto", max_iters: int = 200_000, scale: float = 1.0, **settings
    ) -> None:
        self.linear_solver = resolve_linear_solver(linear_solver)
        self.settings = {"max_iters": max_iters, "scale": scale, **settings}
        self.name = f"scs-{self.linear_solver}"

    def solve(
        self,
        problem: Problem,
        patterns: np.ndarray,
        *,
        eps: float = 1e-6,
        warm_start: ConvexSolution | None = None,
        time_limit: float | None = None,
    ) -> SolverResult:
        import scs

        t0 = time.perf_counter()
        form = build(problem, patterns)
        settings = dict(
            self.settings, eps_abs=eps, eps_rel=eps, verbose=False, linear_solver=self.linear_solver
        )
        if time_limit is not None:
            settings["time_limit_secs"] = float(time_limit)
        solver = scs.SCS(form.data, form.cone, **settings)
        x0 = None
        if warm_start is not None:
            x0 = warm_point(problem, form, patterns, warm_start)
        out = solver.solve(warm_start=x0 is not None, x=x0)
        info = out["info"]
        sol = _solution_from_x(form, patterns, out["x"])
        status = _STATUS.get(int(info["status_val"]), "failed")
        iters = int(info["iter"])
        if status in ("failed", "optimal_inaccurate") and iters >= self.settings["max_iters"]:
            status = "max_iters"
        if (
            time_limit is not None
            and status != "optimal"
            and info.get("solve_time", 0) / 1e3 >= 0.99 * time_limit
        ):
            status = "time_limit"
        return SolverResult(
            status=status,
            objective=sol.objective(problem),
            solution=sol,
            iterations=iters,
            primal_residual=float(info["res_pri"]),
            dual_residual=float(info["res_dual"]),
            duality_gap=float(info["gap"]),
            dual_objective=float(info["dobj"]),
            wall_seconds=time.perf_counter() - t0,
            backend=self.name,
            info={
                "scs_status": info["status"],
                "setup_ms": info.get("setup_time"),
                "solve_ms": info.get("solve_time"),
                "nnz_A": int(form.data["A"].nnz),
                "rows": int(form.data["A"].shape[0]),
                "cols": int(form.n_vars),
            },
            warm={"x": out["x"], "y": out["y"], "s": out["s"]},
            dual_fit=-(form.fit_coef * out["y"][form.fit_rows]),
        )
