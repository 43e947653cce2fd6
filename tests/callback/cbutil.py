"""Shared pieces of the callback tests: a small regression task and LightningModules."""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lightning_relucvx import TwoLayerReLU

N = 30


def regression_data(n: int = N, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """1-D inputs (rank 2 with the bias: every activation pattern can be enumerated)."""
    rng = np.random.default_rng(seed)
    x = np.linspace(-2.0, 2.0, n)
    y = np.sin(2.0 * x) + 0.1 * rng.standard_normal(n)
    return torch.tensor(x[:, None], dtype=torch.float32), torch.tensor(y, dtype=torch.float32)


def loader(x: torch.Tensor, y: torch.Tensor, batch_size: int | None = None) -> DataLoader:
    return DataLoader(TensorDataset(x, y), batch_size=batch_size or len(x), shuffle=False)


class Regressor(L.LightningModule):
    """``net`` trained with MSELoss(mean) and SGD(weight_decay=wd) on every parameter."""

    def __init__(self, net: nn.Module, wd: float = 1e-2, lr: float = 0.1, optimizer: str = "sgd"):
        super().__init__()
        self.net = net
        self.wd, self.lr, self.optimizer = wd, lr, optimizer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).reshape(-1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self):
        if self.optimizer == "adamw":
            return torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.wd)
        return torch.optim.SGD(self.parameters(), lr=self.lr, weight_decay=self.wd)


def two_layer(d: int = 1, m: int = 8, seed: int = 0) -> TwoLayerReLU:
    torch.manual_seed(seed)
    return TwoLayerReLU(d, m)


def training_objective(model: Regressor, x: torch.Tensor, y: torch.Tensor) -> float:
    """What training minimizes on (x, y): MSE(mean) + wd/2 * ||theta||^2, in float64."""
    with torch.no_grad():
        params = {k: p.double() for k, p in model.net.named_parameters()}
        net = model.net
        h = torch.relu(
            x.double() @ params[_name(net, "hidden.weight")].T
            + params.get(_name(net, "hidden.bias"), 0.0)
        )
        out = h @ params[_name(net, "output.weight")][0]
        if _name(net, "output.bias") in params:
            out = out + params[_name(net, "output.bias")][0]
        mse = torch.mean((out - y.double()) ** 2)
        return float(mse + model.wd / 2 * sum((p**2).sum() for p in params.values()))


def _name(net: nn.Module, role: str) -> str:
    if isinstance(net, nn.Sequential):
        return {
            "hidden.weight": "0.weight",
            "hidden.bias": "0.bias",
            "output.weight": "2.weight",
            "output.bias": "2.bias",
        }[role]
    return role


def trainer(callbacks, logger=False, max_epochs: int = 10, **kw) -> L.Trainer:
    return L.Trainer(
        max_epochs=max_epochs,
        callbacks=callbacks,
        logger=logger,
        enable_checkpointing=kw.pop("enable_checkpointing", False),
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
        **kw,
    )
