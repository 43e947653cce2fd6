"""Train with the callback solving on the solver service instead of in-process.

Start the service first (in another terminal, or use the Docker image)::

    relucvx serve --host 127.0.0.1 --port 8080

then ``python examples/with_service.py [URL]`` (default ``$RELUCVX_URL`` or
``http://127.0.0.1:8080``; ``$RELUCVX_API_KEY`` is sent as a bearer token when set).
Data: a synthetic 1-D regression task, ``y = sin(2x) + 0.1 * noise`` on 200 points of
[-2, 2] (seed 0). Training never waits for the service: if it is down or slow, the affected
snapshots are logged with ``relucvx/failed = 1`` and training goes on.
"""

from __future__ import annotations

import os
import sys

import lightning as L
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_relucvx.callback import ConvexOptimalityCallback
from lightning_relucvx.client import HTTPSolver


class Regressor(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(1, 32), nn.ReLU(), nn.Linear(32, 1, bias=False))

    def forward(self, x):
        return self.net(x).squeeze(-1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.mse_loss(self(x), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2, weight_decay=1e-3)  # coupled L2


def main() -> None:
    url = (
        sys.argv[1] if len(sys.argv) > 1 else os.environ.get("RELUCVX_URL", "http://127.0.0.1:8080")
    )
    rng = np.random.default_rng(0)
    x = np.linspace(-2, 2, 200)[:, None]
    y = np.sin(2 * x[:, 0]) + 0.1 * rng.standard_normal(200)
    ds = TensorDataset(torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32))
    solver = HTTPSolver(url, api_key=os.environ.get("RELUCVX_API_KEY"), retries=2)
    callback = ConvexOptimalityCallback(
        every_n_epochs=5,
        extra_patterns=32,
        solver=solver,
        warm_start="end",
        max_pending=4,
        tracking_uri=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"),
        experiment_name="relucvx-with-service",
    )
    torch.manual_seed(0)
    trainer = L.Trainer(max_epochs=40, callbacks=[callback], logger=False, accelerator="cpu")
    trainer.fit(Regressor(), DataLoader(ds, batch_size=50, shuffle=True))
    solver.close()
    for h in callback.history:
        if h["failed"]:
            print(f"step {h['step']:>4}: failed ({h['status']}: {h['error']})")
        else:
            print(
                f"step {h['step']:>4}: {h['lower_bound']:.5f} <= p* <= "
                f"{min(h['convex_objective_sampled'], h['nonconvex_objective']):.5f}"
                f"  (F = {h['nonconvex_objective']:.5f})"
            )


if __name__ == "__main__":
    main()
