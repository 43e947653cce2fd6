"""A two-layer ReLU head on frozen features, certified by the callback.

Data: scikit-learn's digits (1797 8x8 images, shipped with scikit-learn), task "is the digit
odd?" (labels 0/1). Features: a frozen linear projection onto the first 3 principal
components (fitted once with numpy, then never trained). The head ``classifier`` is a
two-layer ReLU network trained with ``BCEWithLogitsLoss`` (mean) and SGD weight decay; the
callback passes the probe images through ``features`` and certifies the head's objective
``(1/n) sum log(1 + exp(-y z)) + (wd/2)||theta||^2`` on 300 training images.

Run: ``python examples/frozen_features_head.py``.
"""

from __future__ import annotations

import os

import lightning as L
import numpy as np
import torch
from sklearn.datasets import load_digits
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_relucvx.callback import ConvexOptimalityCallback


class OddDigits(L.LightningModule):
    def __init__(self, components: np.ndarray, mean: np.ndarray) -> None:
        super().__init__()
        self.features = nn.Linear(64, components.shape[0])
        with torch.no_grad():
            self.features.weight.copy_(torch.tensor(components, dtype=torch.float32))
            self.features.bias.copy_(
                -self.features.weight @ torch.tensor(mean, dtype=torch.float32)
            )
        self.features.requires_grad_(False)  # frozen
        k = components.shape[0]
        self.classifier = nn.Sequential(nn.Linear(k, 24), nn.ReLU(), nn.Linear(24, 1, bias=False))

    def forward(self, x):
        return self.classifier(self.features(x)).squeeze(-1)

    def training_step(self, batch, batch_idx):
        x, t = batch
        return nn.functional.binary_cross_entropy_with_logits(self(x), t)

    def configure_optimizers(self):
        return torch.optim.SGD(self.classifier.parameters(), lr=0.5, weight_decay=1e-3)


def main() -> None:
    X, digit = load_digits(return_X_y=True)
    X = X / 16.0
    mean = X.mean(axis=0)
    _, _, vt = np.linalg.svd(X - mean, full_matrices=False)
    t = (digit % 2).astype(np.float32)
    ds = TensorDataset(torch.tensor(X, dtype=torch.float32), torch.tensor(t))
    torch.manual_seed(0)
    model = OddDigits(vt[:3], mean)
    callback = ConvexOptimalityCallback(
        every_n_epochs=5,
        probe=300,  # 300 training images, drawn once (seed 0)
        loss="bce",
        head="classifier",
        features="features",
        extra_patterns=16,
        max_pending=4,
        solve_options={"eps": 1e-5},
        tracking_uri=os.environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db"),
        experiment_name="relucvx-frozen-features",
    )
    trainer = L.Trainer(max_epochs=15, callbacks=[callback], logger=False, accelerator="cpu")
    trainer.fit(model, DataLoader(ds, batch_size=128, shuffle=True))
    for h in callback.history:
        if h["failed"]:
            print(f"step {h['step']:>4}: failed ({h['status']})")
        else:
            kind = "certified" if h["lower_bound_certified"] else "estimate"
            print(
                f"step {h['step']:>4}: F = {h['nonconvex_objective']:.4f}, p_own = "
                f"{h['convex_objective_own']:.4f}, p_S = {h['convex_objective_sampled']:.4f}, "
                f"LB = {h['lower_bound']:.4f} ({kind})"
            )


if __name__ == "__main__":
    main()
