"""Helpers for the landscape tests: plain gradient descent and the gradient of ``F``."""

from __future__ import annotations

import numpy as np

from lightning_relucvx import bounds
from lightning_relucvx.core import SolveOptions, solve
from lightning_relucvx.problem import Network, Problem


def _split(problem: Problem, W: np.ndarray, a: np.ndarray) -> Network:
    if problem.bias:
        return Network(W[:, :-1].copy(), a.copy(), W[:, -1].copy())
    return Network(W.copy(), a.copy())


def gradient_norm(problem: Problem, net: Network) -> float:
    """``||grad F||`` for the squared loss (``relu'(0) = 0``, as autograd has it)."""
    Xa, y, beta = problem.Xa, problem.y, problem.beta
    W, a = net.first_layer(), net.w2
    Z = Xa @ W.T
    r = problem.loss_scale * (np.maximum(Z, 0.0) @ a - y)
    ga = np.maximum(Z, 0.0).T @ r + beta * a
    gW = ((Z > 0) * r[:, None] * a).T @ Xa + beta * W
    return float(np.sqrt(np.sum(ga**2) + np.sum(gW**2)))


def gradient_descent(
    problem: Problem, seeds: list[int], width: int, steps: int, lr: float, scale: float = 1.0
) -> tuple[list[Network], np.ndarray]:
    """Full-batch gradient descent on ``F`` (squared loss, no output bias) from one Gaussian
    start per seed, all seeds at once; the end points and their gradient norms."""
    Xa, y, beta = problem.Xa, problem.y, problem.beta
    d = Xa.shape[1]
    W = np.stack([np.random.default_rng(s).standard_normal((width, d)) * scale for s in seeds])
    a = np.stack([np.random.default_rng(10_000 + s).standard_normal(width) * scale for s in seeds])
    for _ in range(steps):
        Z = np.einsum("nd,smd->snm", Xa, W)
        H = np.maximum(Z, 0.0)
        r = problem.loss_scale * (np.einsum("snm,sm->sn", H, a) - y)
        ga = np.einsum("snm,sn->sm", H, r) + beta * a
        gW = np.einsum("snm,nd->smd", (Z > 0) * r[:, :, None] * a[:, None, :], Xa) + beta * W
        W -= lr * gW
        a -= lr * ga
    nets = [_split(problem, W[i], a[i]) for i in range(len(seeds))]
    return nets, np.array([gradient_norm(problem, n) for n in nets])


def random_network(problem: Problem, width: int, rng: np.random.Generator) -> Network:
    W = rng.standard_normal((width, problem.d))
    a = rng.standard_normal(width)
    net = _split(problem, W, a)
    if problem.output_bias:
        net = Network(net.W1, net.w2, net.b1, float(rng.standard_normal()))
    return net


def own_pattern_fixed_point(problem: Problem, net: Network) -> Network:
    """Re-solve over the network's own patterns until the network solves that problem: a
    stationary point in the paper's sense (``F = p_own``)."""
    opts = SolveOptions(patterns="own", eps=1e-8, lower_bound="bound")
    for _ in range(30):
        rep = solve(problem.with_network(net), opts)
        F = bounds.nonconvex_objective(problem, net)
        if F - rep.convex_objective_own <= 1e-8 * F:
            return net
        net = rep.optimal_network
    raise AssertionError("no fixed point")
