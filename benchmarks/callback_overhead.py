"""Overhead of ConvexOptimalityCallback on training throughput, with background solving.

One process, one run: the same model and data trained without and with the callback
(in-process solver, background worker, a snapshot every ``--every`` steps) in ABBA order
(without, with, with, without, ...: a drift of the machine's speed over the run cancels),
``--repeats`` pairs; prints steps/second of each, the ratio with/without, and what the solver
did: snapshots solved, skipped or deferred, seconds per solve and its duty cycle (solve
seconds over training seconds; at 1.0 the solver never rests and snapshots are skipped).
``--max-solver-load`` passes the callback's load cap (due snapshots beyond it are deferred).

    python benchmarks/callback_overhead.py [--steps 3000] [--every 250] [--repeats 4]
    python benchmarks/callback_overhead.py --every 250 --max-solver-load 0.1
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import lightning as L
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_relucvx import TwoLayerReLU
from lightning_relucvx.callback import ConvexOptimalityCallback
from lightning_relucvx.client import THREAD_VARIABLES, InProcessSolver


class Regressor(L.LightningModule):
    def __init__(self, d: int, m: int) -> None:
        super().__init__()
        self.net = TwoLayerReLU(d, m, bias=True)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, weight_decay=1e-3)


class StepClock(L.Callback):
    """Wall time of the training steps only (setup, teardown and the final drain excluded)."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if batch_idx == 0 and trainer.current_epoch == 0:
            self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.t1 = time.perf_counter()
        self.steps = trainer.global_step


def run(with_callback: bool, args, data: TensorDataset, db: str) -> dict:
    torch.manual_seed(0)
    clock = StepClock()
    cbs: list[L.Callback] = [clock]
    client = InProcessSolver(processes=not args.thread_solver)
    cb = None
    if with_callback:
        cb = ConvexOptimalityCallback(
            every_n_train_steps=args.every,
            probe=args.probe,
            extra_patterns=args.extra,
            log_model=False,
            tracking_uri=db,
            solver=client,
            max_solver_load=args.max_solver_load,
        )
        cbs.append(cb)
    trainer = L.Trainer(
        max_steps=args.steps,
        callbacks=cbs,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    try:
        trainer.fit(
            Regressor(data.tensors[0].shape[1], args.width), DataLoader(data, batch_size=64)
        )
    finally:
        client.close()
    seconds = clock.t1 - clock.t0
    out = {"steps_per_s": (clock.steps - 1) / seconds}
    if cb is not None:
        solved = [h for h in cb.history if not h["failed"]]
        solve_s = [h["solve_seconds"] for h in solved]
        out.update(
            snapshots=len(cb.history),
            solved=len(solved),
            skipped=sum(h["status"] == "skipped" for h in cb.history),
            deferred=cb.deferred_snapshots,
            mean_solve_s=statistics.mean(solve_s) if solve_s else None,
            duty_cycle=sum(solve_s) / seconds,
        )
    return out


@contextlib.contextmanager
def background_load():
    """A plain numerical process beside training: the same one thread at the same low
    priority as the solver process, busy with cache-sized matrix products throughout."""
    code = "import numpy as np\na = np.random.rand(600, 600)\nwhile True:\n    a @ a\n"
    env = {**os.environ, **dict.fromkeys(THREAD_VARIABLES, "1")}
    proc = subprocess.Popen(["nice", "-n", "10", sys.executable, "-c", code], env=env)
    time.sleep(1.0)  # past numpy's import
    try:
        yield
    finally:
        proc.kill()
        proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--every", type=int, default=250)
    ap.add_argument("--repeats", type=int, default=4, help="ABBA pairs")
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--d", type=int, default=8)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--probe", type=int, default=256)
    ap.add_argument("--extra", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1, help="torch threads for training")
    ap.add_argument(
        "--max-solver-load",
        type=float,
        default=None,
        help="the callback's max_solver_load (default: none; snapshots every --every steps)",
    )
    ap.add_argument(
        "--thread-solver",
        action="store_true",
        help="solve on a thread of the training process instead of the default child process",
    )
    ap.add_argument(
        "--reference-load",
        action="store_true",
        help="also time training (no callback) beside a plain numpy process that never rests",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    rng = np.random.default_rng(0)
    X = rng.standard_normal((args.n, args.d)).astype(np.float32)
    y = np.maximum(X @ rng.standard_normal(args.d), 0) + 0.1 * rng.standard_normal(args.n)
    data = TensorDataset(torch.tensor(X), torch.tensor(y.astype(np.float32)))
    with tempfile.TemporaryDirectory() as tmp:
        db = f"sqlite:///{tmp}/bench.db"
        run(True, args, data, db)  # warm-up (imports, MLflow tables)
        without, with_cb, loaded = [], [], []
        for i in range(args.repeats):  # ABBA: without, with, with, without, ...
            for mode in (False, True) if i % 2 == 0 else (True, False):
                (with_cb if mode else without).append(run(mode, args, data, db))
            if args.reference_load:
                with background_load():
                    loaded.append(run(False, args, data, db))
    a = [r["steps_per_s"] for r in without]
    b = [r["steps_per_s"] for r in with_cb]
    ratios = [y / x for x, y in zip(a, b)]
    out = {
        "steps_per_s_without": statistics.median(a),
        "steps_per_s_with": statistics.median(b),
        "ratio_with_over_without": statistics.median(b) / statistics.median(a),
        "pair_ratios": ratios,
        "solver": {
            k: statistics.median(r[k] for r in with_cb if r[k] is not None)
            for k in ("snapshots", "solved", "skipped", "deferred", "mean_solve_s", "duty_cycle")
            if any(r[k] is not None for r in with_cb)
        },
        "runs_without": without,
        "runs_with": with_cb,
        "args": vars(args),
    }
    out["overhead_percent"] = 100 * (1 - out["ratio_with_over_without"])
    # the mean of the pair ratios and its standard error (pairs ran next to each other)
    out["overhead_percent_pairs"] = 100 * (1 - statistics.mean(ratios))
    if len(ratios) > 1:
        out["overhead_percent_pairs_stderr"] = 100 * statistics.stdev(ratios) / len(ratios) ** 0.5
    if loaded:
        c = [r["steps_per_s"] for r in loaded]
        out["reference_load"] = {
            "what": "no callback; a numpy matrix-product process (one thread, nice 10) runs "
            "throughout, as the solver process would without rest",
            "steps_per_s": statistics.median(c),
            "ratio_over_without": statistics.median(c) / statistics.median(a),
        }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
