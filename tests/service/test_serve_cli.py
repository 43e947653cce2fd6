"""``relucvx serve`` is registered by ``service.cli``; ``relucvx solve`` works without the
service's dependencies (fastapi, uvicorn) and ``serve`` then says what is missing."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

SCRIPT = """
import sys
for name in ("fastapi", "uvicorn", "prometheus_client", "redis"):
    sys.modules[name] = None  # as if the service extra were not installed
from lightning_relucvx.cli import main
rc_solve = main(["solve", sys.argv[1], "--patterns", "all"])
rc_serve = main(["serve", "--port", "1"])
print("RC", rc_solve, rc_serve)
"""


def test_solve_without_the_service_extra(tmp_path):
    path = tmp_path / "a.npz"
    np.savez(path, X=np.array([[-1.0], [1.0]]), y=np.array([1.0, 0.5]), beta=np.array(0.1))
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(path)], capture_output=True, text=True, timeout=120
    )
    assert '"convex_objective": 0.14' in out.stdout
    assert "RC 0 2" in out.stdout, out.stdout + out.stderr
    assert "needs the 'service' extra" in out.stderr
    assert "uvicorn is missing" in out.stderr


def test_serve_help_lists_the_options():
    out = subprocess.run(
        [sys.executable, "-m", "lightning_relucvx.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0
    for opt in ("--host", "--port", "--workers"):
        assert opt in out.stdout
