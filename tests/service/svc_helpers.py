"""Helpers for the solver-service tests: problem builders and the shared settings."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).parent.parent))

from lightning_relucvx import patterns as pt
from lightning_relucvx.problem import Problem

API_KEY = "test-key-0123456789"
MAIN_ENV = {
    "RELUCVX_API_KEY": API_KEY,
    "RELUCVX_MAX_BODY_BYTES": "1000000",
    "RELUCVX_MAX_N": "3000",
    "RELUCVX_MAX_P": "400",
    "RELUCVX_QUEUE_SIZE": "8",
    "RELUCVX_MAX_TIME_LIMIT": "60",
}
AUTH = {"Authorization": f"Bearer {API_KEY}"}


def instance(n: int, d: int, P: int, seed: int = 0, network: bool = False) -> Problem:
    """Gaussian data, ``P`` patterns of Gaussian directions, ``beta = 0.1 max_i ||X^T D_i y||``
    (the benchmark's family; M is n=1000, d=20, P=50)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = rng.standard_normal(n)
    pats = pt.unique(pt.sample(X, P, seed))
    beta = 0.1 * float(np.max(np.linalg.norm((pats * y) @ X, axis=1)))
    kw = {}
    if network:
        kw = {"W1": rng.standard_normal((4, d)), "w2": rng.standard_normal(4)}
    return Problem.create(X, y, beta, bias=False, patterns=pats, **kw)


def healthy(url: str) -> bool:
    return httpx.get(f"{url}/healthz", timeout=10).status_code == 200
