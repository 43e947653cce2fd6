"""DESIGN.md's reference problems and their optima (squared loss, all patterns)."""

from __future__ import annotations

import numpy as np

from lightning_relucvx.problem import Problem

# DESIGN.md's reference values (squared loss, all patterns)
CASE_A_OPT = 0.14
CASE_B_OPT = 0.168652
CASE_C_OPT = 4.263049


def case_a() -> Problem:
    return Problem.create([[-1.0], [1.0]], [1.0, 0.5], 0.1, bias=False)


def case_b() -> Problem:
    x = np.array([-2, -1, -0.5, 0.5, 1, 2.0])
    return Problem.create(x[:, None], [2.0, 0.5, -0.3, 0.4, 1.0, 2.5], 0.05, bias=True)


def case_c() -> Problem:
    rng = np.random.default_rng(0)
    X = rng.standard_normal((20, 3))
    y = rng.standard_normal(20)
    return Problem.create(X, y, 0.1, bias=False)
