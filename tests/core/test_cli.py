"""``relucvx solve``: JSON on stdout, exit 2 with one clear line for bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from cases import CASE_B_OPT, CASE_C_OPT, case_b, case_c

from lightning_relucvx import patterns as pt
from lightning_relucvx.io import load_npz, save_problem

REQUIRED = {
    "status",
    "convex_objective",
    "nonconvex_objective",
    "local_gap",
    "lower_bound",
    "lower_bound_certified",
    "num_patterns",
    "num_neurons",
    "solver",
    "iterations",
    "solve_seconds",
}


def run(*args, check_rc=None):
    proc = subprocess.run(
        [sys.executable, "-m", "lightning_relucvx.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check_rc is not None:
        assert proc.returncode == check_rc, proc.stderr
    return proc


def test_solve_all_patterns_on_case_c(tmp_path):
    path = tmp_path / "c.npz"
    save_problem(path, case_c())
    out = json.loads(run("solve", path, "--patterns", "all", "--eps", "1e-8", check_rc=0).stdout)
    assert out["status"] == "optimal" and out["num_patterns"] == 382
    assert out["convex_objective"] == pytest.approx(CASE_C_OPT, rel=1e-5)
    assert out["lower_bound_certified"] is True
    assert out["lower_bound"] == pytest.approx(CASE_C_OPT, rel=1e-5)


def test_solve_with_weights_defaults_to_own_and_writes_weights(tmp_path):
    p = case_b()
    rng = np.random.default_rng(0)
    path = tmp_path / "net.npz"
    np.savez(
        path,
        X=p.X,
        y=p.y,
        beta=p.beta,
        W1=rng.standard_normal((5, 1)),
        b1=rng.standard_normal(5),
        w2=rng.standard_normal(5),
    )
    weights = tmp_path / "opt.npz"
    proc = run("solve", path, "--solver", "cvxpy", "--weights-out", weights, check_rc=0)
    out = json.loads(proc.stdout)
    assert out.keys() >= REQUIRED
    assert out["pattern_mode"] == "own"
    assert out["local_gap"] == pytest.approx(
        out["nonconvex_objective"] - out["convex_objective_own"]
    )
    assert out["lower_bound"] <= out["convex_objective"] <= out["nonconvex_objective"]
    w = load_npz(weights)
    assert w["W1"].shape[0] == out["num_neurons"] and "b1" in w
    # sampling more patterns can only lower the convex objective
    more = json.loads(
        run("solve", path, "--solver", "cvxpy", "--patterns", "sample:40", check_rc=0).stdout
    )
    assert more["convex_objective"] <= out["convex_objective"] + 1e-6


def test_patterns_in_file_are_used_exactly(tmp_path):
    p = case_b()
    pats = pt.enumerate_all(p.Xa)
    path = tmp_path / "p.npz"
    np.savez(path, X=p.X, y=p.y, beta=p.beta, patterns=pats.astype(np.uint8), bias=True)
    out = json.loads(run("solve", path, "--solver", "cvxpy", check_rc=0).stdout)
    assert out["pattern_mode"] == "given" and out["num_patterns"] == 11
    assert out["convex_objective"] == pytest.approx(CASE_B_OPT, rel=1e-5)
    sub = tmp_path / "sub.npz"
    np.savez(sub, X=p.X, y=p.y, beta=p.beta, patterns=pats[:3].astype(np.uint8), bias=True)
    out3 = json.loads(run("solve", sub, "--solver", "cvxpy", check_rc=0).stdout)
    assert out3["num_patterns"] == 3 and out3["convex_objective"] > CASE_B_OPT


@pytest.mark.parametrize(
    ("arrays", "flags", "message"),
    [
        ({"X": np.full((4, 2), np.nan), "y": np.zeros(4), "beta": 0.1}, [], "X: contains"),
        ({"X": np.zeros((4, 2)), "y": np.zeros(3), "beta": 0.1}, [], "y: has 3 entries"),
        ({"X": np.ones((4, 2)), "y": np.zeros(4), "beta": -1.0}, [], "beta: must be > 0"),
        ({"X": np.ones((4, 2)), "y": np.zeros(4)}, [], "beta: missing"),
        (
            {"X": np.ones((4, 2)), "y": np.zeros(4), "beta": 0.1, "patterns": np.ones((2, 5))},
            [],
            "patterns: must have n=4 columns",
        ),
        (
            {"X": np.ones((4, 2)), "y": np.zeros(4), "beta": 0.1, "loss": "logistic"},
            [],
            "labels in {-1, +1}",
        ),
        (
            {"X": np.ones((4, 2)), "y": np.zeros(4), "beta": 0.1},
            ["--patterns", "some"],
            "patterns: must be",
        ),
        (
            {"X": np.ones((4, 2)), "y": np.zeros(4), "beta": 0.1},
            ["--patterns", "own"],
            "needs network weights",
        ),
        ({"X": np.ones((4, 2)), "y": np.zeros(4), "beta": 0.1}, ["--eps", "2"], "eps:"),
        (
            {"X": np.ones((4, 2)), "y": np.zeros(4), "beta": 0.1},
            ["--solver", "firstorder", "--device", "tpu"],
            "device: must be auto, cpu, cuda or cuda:N",
        ),
        (
            {"X": np.ones((4, 2)), "y": np.ones(4), "beta": 0.1, "loss": "hinge"},
            ["--solver", "firstorder", "--device", "cpu"],
            "needs a smooth loss",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, arrays, flags, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    proc = run("solve", path, *flags)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert message in lines[0], lines[0]


def test_missing_and_corrupt_files_exit_2(tmp_path):
    proc = run("solve", tmp_path / "nope.npz")
    assert proc.returncode == 2 and "no such file" in proc.stderr
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"this is not a zip archive")
    proc = run("solve", bad)
    assert proc.returncode == 2 and "not a readable .npz" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_progress_line_on_a_terminal_only(tmp_path):
    import os
    import pty

    path = tmp_path / "c.npz"
    save_problem(path, case_c())
    args = [
        sys.executable,
        "-m",
        "lightning_relucvx.cli",
        "solve",
        str(path),
        "--patterns",
        "all",
        "--eps",
        "1e-9",
    ]
    master, slave = pty.openpty()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 1024)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    stdout, _ = proc.communicate(timeout=300)
    os.close(master)
    assert proc.returncode == 0
    assert b"relucvx solve" in b"".join(chunks)  # the progress line went to the terminal
    assert json.loads(stdout)["num_patterns"] == 382  # and stdout is still pure JSON
    piped = run("solve", path, "--patterns", "all", "--eps", "1e-9", check_rc=0)
    assert piped.stderr == ""
