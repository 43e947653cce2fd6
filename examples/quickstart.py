"""Quickstart: certify how far a two-layer ReLU network is from the global optimum while it
trains, and look at it in the MLflow UI.

Data: scikit-learn's diabetes dataset (442 patients, shipped with scikit-learn), predicting
disease progression one year on from body-mass index alone, both standardized. One input
feature keeps every activation pattern enumerable, so the lower bound is certified and tight.

Training: ``TwoLayerReLU(1, 16)``, ``MSELoss`` (mean), SGD with ``weight_decay=1e-2``. The
callback certifies exactly that objective on the whole training set:
``F = (1/n)||yhat - y||^2 + (wd/2)||theta||^2`` (the paper's loss ``1/2||.||^2`` times
``2/n``, beta = wd).

Run: ``python examples/quickstart.py`` (about 2 minutes on 2 CPU cores). Results go to
``$MLFLOW_TRACKING_URI`` if set, else ``sqlite:///mlflow.db`` in the current directory.
"""

from __future__ import annotations

import os
import time

import lightning as L
import torch
from sklearn.datasets import load_diabetes
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_relucvx import TwoLayerReLU
from lightning_relucvx.callback import ConvexOptimalityCallback

WEIGHT_DECAY = 1e-2


class Regressor(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = TwoLayerReLU(in_features=1, width=16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self(x), y)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05, momentum=0.9, weight_decay=WEIGHT_DECAY)


def data() -> TensorDataset:
    X, y = load_diabetes(return_X_y=True)
    bmi = X[:, [2]]
    bmi = (bmi - bmi.mean()) / bmi.std()
    y = (y - y.mean()) / y.std()
    return TensorDataset(
        torch.tensor(bmi, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    )


def main() -> None:
    torch.manual_seed(0)
    uri = os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    dataset = data()
    callback = ConvexOptimalityCallback(
        every_n_train_steps=70,  # 7 steps per epoch: every 10 epochs
        probe=len(dataset),  # the whole training set: F is exactly the training objective
        extra_patterns=16,  # sampled activation patterns beyond the network's own
        max_pending=6,  # queue every snapshot (training outruns the solver here)
        warm_start="end",  # load the best convex optimum into the model at the end
        solve_options={"eps": 1e-5},
        tracking_uri=uri,
        experiment_name="relucvx-quickstart",
    )
    trainer = L.Trainer(
        max_epochs=60,
        callbacks=[callback],
        logger=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        accelerator="cpu",
    )
    t0 = time.perf_counter()
    model = Regressor()
    trainer.fit(model, DataLoader(dataset, batch_size=64, shuffle=True))
    print(f"\ntrained and certified in {time.perf_counter() - t0:.0f} s")

    print(f"\n{'step':>6} {'F':>10} {'p_own':>10} {'p_S':>10} {'LB':>10}  status")
    for h in callback.history:
        cells = [h.get(k) for k in ("nonconvex_objective", "convex_objective_own")]
        cells += [h.get("convex_objective_sampled"), h.get("lower_bound")]
        txt = " ".join(f"{c:10.5f}" if c is not None else f"{'-':>10}" for c in cells)
        print(f"{h['step']:>6} {txt}  {h['status']}")
    solved = [h for h in callback.history if not h["failed"]]
    if solved:
        h = solved[-1]
        upper = min(h["convex_objective_sampled"], h["nonconvex_objective"])
        kind = "certified" if h["lower_bound_certified"] else "estimated"
        print(
            f"\nfinal bracket at step {h['step']}: {h['lower_bound']:.5f} <= p* <= {upper:.5f}"
            f"  ({kind} lower bound; the network was at F = {h['nonconvex_objective']:.5f},"
            f" optimal width <= {h['optimal_width']})"
        )
        with torch.no_grad():
            x, y = dataset.tensors
            fit = nn.functional.mse_loss(model(x), y)
            pen = WEIGHT_DECAY / 2 * sum((p.double() ** 2).sum() for p in model.parameters())
        print(f"after warm start the model's training objective is {float(fit + pen):.5f}")
    print(f"\nlook at it:  mlflow ui --backend-store-uri {uri}")
    print("then open http://127.0.0.1:5000, experiment 'relucvx-quickstart', metrics relucvx/*,")
    print("artifact relucvx/gap_curve.png and the optimal model in relucvx/optimal_model")


if __name__ == "__main__":
    main()
