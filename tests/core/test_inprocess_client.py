"""The default in-process client: solves in a persistent, lower-priority child process."""

from __future__ import annotations

import os
import signal
import time

import pytest
from cases import CASE_C_OPT, case_b, case_c

from lightning_relucvx.client import InProcessSolver
from lightning_relucvx.core import SolveOptions, solve


def test_child_process_solve_equals_direct_solve_and_errors_propagate():
    client = InProcessSolver()
    try:
        options = SolveOptions(patterns="all", eps=1e-8)
        remote = client.submit(case_c(), options).result(timeout=300)
        direct = solve(case_c(), options)
        assert remote.convex_objective == pytest.approx(direct.convex_objective, rel=1e-12)
        assert remote.convex_objective == pytest.approx(CASE_C_OPT, rel=1e-5)
        assert remote.optimal_network.width == direct.optimal_network.width
        with pytest.raises(ValueError, match="needs network weights"):
            client.solve(case_b(), SolveOptions(patterns="own"))
        (proc,) = client._all  # one persistent child served all three requests
        assert proc.alive
    finally:
        client.close()
    assert not proc.alive


def test_a_killed_child_fails_its_solve_and_the_next_one_works():
    client = InProcessSolver()
    try:
        client.solve(case_b(), SolveOptions(patterns="all"))
        (proc,) = client._all
        os.kill(proc._proc.pid, signal.SIGKILL)
        proc._proc.wait()
        with pytest.raises(RuntimeError, match="solver process exited"):
            client.solve(case_b(), SolveOptions(patterns="all"))
        report = client.solve(case_b(), SolveOptions(patterns="all"))
        assert report.ok and client._all[0] is not proc
    finally:
        client.close()


def test_a_warm_start_that_does_not_fit_the_problem_is_refused_by_name():
    from lightning_relucvx.solvers import ConvexSolution

    p = case_c()
    good = solve(p, SolveOptions(patterns="all")).solution
    wide = ConvexSolution(good.patterns, good.U[:, :1], good.V[:, :1], good.b)
    with pytest.raises(ValueError, match=r"warm_start\.U: must be \(P=\d+, d=3\)"):
        solve(p, SolveOptions(patterns="all"), warm_start=wide)
    short = ConvexSolution(good.patterns[:, :-1], good.U, good.V, good.b)
    with pytest.raises(ValueError, match=r"warm_start\.patterns: must be \(P, n="):
        solve(p, SolveOptions(patterns="all"), warm_start=short)
    # a fitting warm start changes nothing but the time
    again = solve(p, SolveOptions(patterns="all"), warm_start=good)
    assert again.convex_objective == pytest.approx(CASE_C_OPT, rel=1e-5)


@pytest.mark.skipif(not os.path.exists("/proc/self/environ"), reason="reads /proc")
def test_solver_processes_start_early_and_cap_their_threads():
    client = InProcessSolver(threads=1)
    try:
        client.start()  # the callback starts them before the first training step
        (proc,) = client._all
        deadline = time.monotonic() + 10
        while True:  # right after exec the kernel may still show an empty environment
            with open(f"/proc/{proc._proc.pid}/environ", "rb") as fh:
                env = dict(kv.split(b"=", 1) for kv in fh.read().split(b"\0") if b"=" in kv)
            if env or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "RAYON_NUM_THREADS"):
            assert env[var.encode()] == b"1"
        rep = client.solve(case_b(), SolveOptions(patterns="all"))
        assert rep.ok and client._all == [proc]  # the started process did the solve
    finally:
        client.close()
