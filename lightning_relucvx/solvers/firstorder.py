"""A structured first-order solver in PyTorch: matrix-free, on the CPU or a GPU.

It never builds the conic form. The blocks are one matrix ``W`` (2P, d) (rows ``0..P-1``
the ``u_i``, ``P..2P-1`` the ``v_i``) and every product is one ``X @ W^T`` or one
``R^T @ X`` with ``R`` (n, 2P), so memory is ``O(n P + P d)`` and a GPU runs it as dense
matrix products.

Method: an augmented Lagrangian on the cone rows ``c_k(w) = (2D_k - I) X w_k >= 0`` with
multipliers ``Lam`` (n, 2P) >= 0 and penalty ``rho``,

    l(fit(W) + b) + beta sum_k ||w_k|| + 1/(2 rho) sum_k (||(Lam_k - rho c_k)_+||^2 - ||Lam_k||^2),

minimised over ``W`` (and the output bias ``b``) by FISTA with backtracking and adaptive
restart (the group norm is the proximal term), then ``Lam <- (Lam - rho c)_+``; ``rho``
grows while the cone violation does not fall (Mishkin, Sahiner & Pilanci, 2022, solve the
same program this way).

After every multiplier update the point is certified on the full program like the
working set's rounds (:mod:`.certificate`): an exactly feasible point (violating blocks
projected onto their cones) and the dual bound from the fit's multiplier scaled by
``min(1, beta / s)``, where ``s`` is the largest block residual with ``mu_k = Lam_k``. The
solve ends when the certified relative gap is within ``gap_tol`` (default ``eps``).

Smooth losses only (squared, logistic); the hinge loss raises ``ValueError``.
"""

from __future__ import annotations

import math
import time

import numpy as np

from .. import losses
from ..problem import Problem
from .base import ConvexSolution, SolverResult
from .certificate import Certificate, feasible_point, scaled_bound
from .workset import carried_blocks


def resolve_device(device: str) -> str:
    """``auto``: ``cuda`` when torch sees a GPU, else ``cpu``; other names are checked."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device: not a torch device: {device!r} ({exc})") from exc
    if dev.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device: {device!r} asked for, but torch sees no GPU")
        if dev.index is not None and dev.index >= count:
            raise ValueError(f"device: {device!r} asked for, but torch sees {count} GPU(s)")
    elif dev.type != "cpu":
        raise ValueError(f"device: must be cpu or cuda[:N], got {device!r}")
    return device


class _Program:
    """The program's data on one device and its matrix-free pieces."""

    def __init__(self, problem: Problem, patterns: np.ndarray, device: str) -> None:
        import torch

        self.torch = torch
        kw = {"device": device, "dtype": torch.float64}
        self.X = torch.as_tensor(problem.Xa, **kw)  # (n, d)
        D = torch.as_tensor(patterns.T, **kw)  # (n, P) 0/1
        self.P = patterns.shape[0]
        self.DS = torch.cat([D, -D], dim=1)  # (n, 2P): fit = sum_k DS[:, k] * (X w_k)
        self.S = torch.cat([2 * D - 1, 2 * D - 1], dim=1)  # (n, 2P): cone rows' signs
        self.y = torch.as_tensor(problem.y, **kw)
        self.loss, self.scale = problem.loss, problem.loss_scale
        self.beta = problem.beta
        self.xnorm = torch.linalg.vector_norm(self.X, dim=1).clamp_min(1e-300)

    def fit(self, XW, b):
        z = (XW * self.DS).sum(dim=1)
        return z if b is None else z + b

    def loss_value_grad(self, z):
        t = self.torch
        if self.loss == "squared":
            r = z - self.y
            return 0.5 * self.scale * float(r @ r), self.scale * r
        m = -self.y * z  # logistic
        value = self.scale * float(t.nn.functional.softplus(m).sum())
        return value, -self.scale * self.y * t.sigmoid(m)

    def curvature(self) -> float:
        """An upper bound on the loss's second derivative."""
        return self.scale if self.loss == "squared" else 0.25 * self.scale


class FirstOrderSolver:
    """Augmented Lagrangian + FISTA in PyTorch (see the module docstring).

    ``device``: ``auto`` (a GPU when torch sees one), ``cpu``, ``cuda``, ``cuda:1``...;
    ``max_iters``: FISTA iterations in all; ``gap_tol``: the certified relative gap that
    ends the solve (default ``eps``); ``rho``: the initial penalty in units of the loss's
    curvature (default 1), then balanced: multiplied by 4 while the cone violation is 10x
    the stationarity residual, divided by 4 in the opposite case; ``check_every``: FISTA
    iterations at most between two multiplier updates (each is certified).

    On this project's 2-core CPU it is far slower than the working set: benchmark instance
    S reaches a certified relative gap of about 3e-5 in 30 s, M about 7e-5, where the
    working set certifies 4e-7 in about 1 s. It is here for GPUs (every iteration is two
    dense products) and for programs whose working set would not fit.
    """

    def __init__(
        self,
        device: str = "auto",
        max_iters: int = 100_000,
        gap_tol: float | None = None,
        rho: float | None = None,
        check_every: int = 2000,
    ) -> None:
        self.device = resolve_device(device)
        if max_iters < 1:
            raise ValueError(f"max_iters: must be >= 1, got {max_iters}")
        self.max_iters = int(max_iters)
        if rho is not None and not rho > 0:
            raise ValueError(f"rho: must be > 0, got {rho}")
        if check_every < 1:
            raise ValueError(f"check_every: must be >= 1, got {check_every}")
        self.gap_tol = gap_tol
        self.rho = rho
        self.check_every = int(check_every)
        self.name = f"firstorder-torch-{self.device}"

    def solve(
        self,
        problem: Problem,
        patterns: np.ndarray,
        *,
        eps: float = 1e-6,
        warm_start: ConvexSolution | None = None,
        time_limit: float | None = None,
    ) -> SolverResult:
        if problem.loss not in ("squared", "logistic"):
            raise ValueError(
                f"loss: the first-order solver needs a smooth loss (squared or logistic), "
                f"got {problem.loss!r}; use the scs or workset solver"
            )
        t0 = time.perf_counter()
        import torch

        pr = _Program(problem, patterns, self.device)
        X, P, beta = pr.X, pr.P, pr.beta
        n, d = X.shape
        gap_tol = self.gap_tol if self.gap_tol is not None else eps
        x_norm2 = float(torch.linalg.matrix_norm(X, ord=2)) ** 2
        curv = pr.curvature()
        rho = (self.rho if self.rho is not None else 1.0) * curv
        # a first guess of the smooth part's Lipschitz constant; backtracking corrects it
        L = curv * x_norm2 + rho * x_norm2

        W = torch.zeros((2 * P, d), dtype=torch.float64, device=self.device)
        b = None
        if problem.output_bias:
            b = float(np.mean(problem.y)) if problem.loss == "squared" else 0.0
        if warm_start is not None:
            W0 = carried_blocks(problem.Xa, patterns, warm_start)
            W = torch.as_tensor(W0, device=self.device)
            if problem.output_bias and warm_start.b is not None:
                b = float(warm_start.b)
        Lam = torch.zeros((n, 2 * P), dtype=torch.float64, device=self.device)

        def smooth(XW, bb):
            """The smooth part's value, the loss gradient and the penalty's multipliers."""
            fval, g = pr.loss_value_grad(pr.fit(XW, bb))
            Q = torch.relu(Lam - rho * (pr.S * XW))
            pen = (float((Q * Q).sum()) - lam_sq) / (2 * rho)
            return fval + pen, g, Q

        def grad(g, Q, bb):
            R = pr.DS * g[:, None] - pr.S * Q  # (n, 2P)
            GW = R.T @ X  # (2P, d)
            gb = float(g.sum()) if bb is not None else 0.0
            return GW, gb

        def prox(V, tau):
            norms = torch.linalg.vector_norm(V, dim=1, keepdim=True)
            return V * torch.clamp(1 - tau * beta / norms.clamp_min(1e-300), min=0.0)

        iters, outer = 0, 0
        history: list[dict] = []
        cert: Certificate | None = None
        status = "max_iters"
        tol_in = 1e-2
        prev_viol = math.inf
        XWx = X @ W.T
        # the inner loop leaves time for the certificate (the last one's time, at first 10%)
        cert_seconds = 0.1 * time_limit if time_limit is not None else 0.0
        cert_done = t0
        while iters < self.max_iters:
            stop_at = t0 + (time_limit or 0.0) - 1.2 * cert_seconds
            lam_sq = float((Lam * Lam).sum())
            # FISTA on the augmented Lagrangian, from the current point
            xW, xb, XW_x = W, b, XWx
            yW, yb, XW_y = xW, xb, XW_x
            t = 1.0
            fy, g, Q = smooth(XW_y, yb)
            inner = 0
            while True:
                GW, gb = grad(g, Q, yb)
                while True:  # backtracking on L
                    nW = prox(yW - GW / L, 1.0 / L)
                    nb = None if yb is None else yb - gb / L
                    XW_n = X @ nW.T
                    fn, gn, Qn = smooth(XW_n, nb)
                    dW = nW - yW
                    db = 0.0 if nb is None else nb - yb
                    quad = float((GW * dW).sum()) + gb * db
                    quad += 0.5 * L * (float((dW * dW).sum()) + db * db)
                    if fn <= fy + quad + 1e-12 * abs(fy):
                        break
                    if not math.isfinite(fn) or L > 1e30:
                        raise FloatingPointError(
                            "first-order solver: the objective is not finite (overflow?)"
                        )
                    L *= 2.0
                iters += 1
                inner += 1
                # stationarity: the gradient mapping per block, relative to beta
                step_res = float(torch.linalg.vector_norm(dW, dim=1).max()) * L / beta
                # O'Donoghue & Candes: restart when (y - x+)^T (x+ - x) > 0 (momentum uphill)
                restart = float((dW * (nW - xW)).sum()) < 0
                t_new = 1.0 if restart else (1 + math.sqrt(1 + 4 * t * t)) / 2
                mom = 0.0 if restart else (t - 1) / t_new
                pW, pb, XW_p = xW, xb, XW_x
                xW, xb, XW_x = nW, nb, XW_n
                t = t_new
                if step_res <= tol_in or inner >= self.check_every or iters >= self.max_iters:
                    break
                if time_limit is not None and time.perf_counter() > stop_at:
                    break
                if mom == 0.0:
                    yW, yb, XW_y, fy, g, Q = xW, xb, XW_x, fn, gn, Qn
                else:
                    yW = xW + mom * (xW - pW)
                    yb = None if xb is None else xb + mom * (xb - pb)
                    XW_y = XW_x + mom * (XW_x - XW_p)
                    fy, g, Q = smooth(XW_y, yb)
                L *= 0.95  # let the step grow back
            W, b, XWx = xW, xb, XW_x
            converged = step_res <= tol_in
            # multiplier update; the point is certified unless a certificate was made less
            # than 3 of its own durations ago (on a GPU the projections on the CPU could
            # otherwise cost more than the iterations); the last point always is
            C = pr.S * XWx
            Lam = torch.relu(Lam - rho * C)
            viol = float(torch.relu(-C).max() / (pr.xnorm.max() * _max_norm(W)))
            outer += 1
            now = time.perf_counter()
            out_of_time = time_limit is not None and now > stop_at
            last = out_of_time or iters >= self.max_iters
            if last or cert is None or now - cert_done >= 3 * cert_seconds:
                cert = self._certificate(problem, patterns, pr, W, XWx, b, Lam)
                cert_done = time.perf_counter()
                cert_seconds = cert_done - now
                history.append(
                    {
                        "outer": outer,
                        "iters": iters,
                        "rho": rho,
                        "stationarity": step_res,
                        "max_violation": viol,
                        "objective": cert.primal,
                        "lower_bound": cert.lower,
                        "relative_gap": cert.relative_gap(),
                        "seconds": cert_done - t0,
                    }
                )
                if cert.relative_gap() <= gap_tol:
                    status = "optimal"
                    break
            if out_of_time:
                status = "time_limit"
                break
            # residual balancing: a larger rho pulls the cone rows in faster, a smaller one
            # makes the inner problem better conditioned
            if viol > 10 * step_res and (converged or viol > 0.5 * prev_viol):
                L += 3.0 * rho * x_norm2
                rho *= 4.0
            elif step_res > 10 * viol and rho > 1e-3 * curv:
                rho /= 4.0
            prev_viol = viol
            tol_in = max(0.3 * tol_in, 0.3 * gap_tol)
        assert cert is not None
        return SolverResult(
            status=status,
            objective=cert.primal,
            solution=cert.point,
            iterations=iters,
            primal_residual=history[-1]["max_violation"],
            dual_residual=history[-1]["stationarity"],
            duality_gap=cert.gap,
            dual_objective=cert.lower,
            wall_seconds=time.perf_counter() - t0,
            backend=self.name,
            info={
                "outer_iterations": outer,
                "rho": rho,
                "max_violation": cert.point.max_violation(problem.Xa),
                "history": history,
            },
        )

    @staticmethod
    def _certificate(problem, patterns, pr, W, XW, b, Lam) -> Certificate:
        """The certificate of blocks ``W`` (``XW = X @ W.T``) with cone multipliers ``Lam``
        (see the module docstring)."""
        point, primal = feasible_point(problem, patterns, W.cpu().numpy(), b)
        _, g = pr.loss_value_grad(pr.fit(XW, b))
        # the dual point is -lam: project it onto the conjugate's domain (and sum zero)
        lam = -losses.project_dual(
            problem.loss, -g.cpu().numpy(), problem.y, problem.loss_scale, problem.output_bias
        )
        lam_t = pr.torch.as_tensor(lam, device=W.device)
        R = pr.DS * lam_t[:, None] - pr.S * Lam
        s_max = float(pr.torch.linalg.vector_norm(R.T @ pr.X, dim=1).max())
        return Certificate(point, primal, scaled_bound(problem, lam, s_max))


def _max_norm(W) -> float:
    import torch

    return max(float(torch.linalg.vector_norm(W, dim=1).max()), 1e-300)
