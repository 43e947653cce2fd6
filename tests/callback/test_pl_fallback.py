"""With only ``pytorch_lightning`` importable, the callback trains with its Trainer."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("pytorch_lightning")

SCRIPT = textwrap.dedent(
    """
    import importlib.abc, json, sys

    class NoLightning(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "lightning" or name.startswith("lightning."):
                raise ImportError(f"{name} hidden for this test")
            return None

    sys.meta_path.insert(0, NoLightning())

    import numpy as np
    import pytorch_lightning as pl
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    from lightning_relucvx import TwoLayerReLU
    from lightning_relucvx import pl as compat
    from lightning_relucvx.callback import ConvexOptimalityCallback

    class Model(pl.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = TwoLayerReLU(1, 8)

        def training_step(self, batch, batch_idx):
            x, y = batch
            return torch.nn.functional.mse_loss(self.net(x).reshape(-1), y)

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1, weight_decay=1e-2)

    torch.manual_seed(0)
    x = torch.linspace(-2, 2, 24)[:, None]
    y = torch.sin(2 * x[:, 0])
    cb = ConvexOptimalityCallback(
        every_n_train_steps=5, probe=(x, y), tracking_uri=sys.argv[1], log_model=False
    )
    trainer = pl.Trainer(
        max_steps=10, callbacks=[cb], logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
    )
    trainer.fit(Model(), DataLoader(TensorDataset(x, y), batch_size=24))
    print(json.dumps({
        "package": compat.PACKAGE,
        "lightning_loaded": any(m == "lightning" or m.startswith("lightning.")
                                for m in sys.modules),
        "history": [[h["step"], h["failed"], h["lower_bound"], h["nonconvex_objective"]]
                    for h in cb.history],
    }))
    """
)


def test_callback_runs_on_pytorch_lightning(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, uri],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["package"] == "pytorch_lightning"
    assert not out["lightning_loaded"]
    assert [h[0] for h in out["history"]] == [5, 10]
    for _, failed, lb, F in out["history"]:
        assert not failed and lb <= F
