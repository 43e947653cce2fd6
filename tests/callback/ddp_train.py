"""Two CPU processes (gloo DDP) training with the callback; run by test_ddp.py.

Usage: python ddp_train.py OUTDIR TRACKING_URI. Each rank writes its head weights after fit.
"""

from __future__ import annotations

import sys
from pathlib import Path

import lightning as L
import numpy as np
from cbutil import Regressor, loader, regression_data, two_layer

from lightning_relucvx.callback import ConvexOptimalityCallback


def main() -> None:
    out, uri = Path(sys.argv[1]), sys.argv[2]
    x, y = regression_data(n=32, seed=4)
    cb = ConvexOptimalityCallback(
        every_n_train_steps=3,
        wait=True,
        warm_start="every",
        log_weights=False,
        log_model=False,
        tracking_uri=uri,
    )
    model = Regressor(two_layer(1, 8, seed=4), wd=1e-2)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=2,
        strategy="ddp",
        max_epochs=6,
        callbacks=[cb],
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, loader(x, y, batch_size=8))  # 2 ranks x 4 per batch: 2 steps/epoch
    w = {k: v.detach().double().numpy() for k, v in model.net.state_dict().items()}
    np.savez(out / f"rank{trainer.global_rank}.npz", **w)
    if trainer.is_global_zero:
        last = cb.history[-1]
        (out / "optimum.txt").write_text(f"{last['step']} {last['optimal_objective']!r}\n")


if __name__ == "__main__":
    main()
