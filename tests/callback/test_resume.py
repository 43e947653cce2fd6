"""Resume from a checkpoint: the snapshot schedule and the history continue, in the same run."""

from __future__ import annotations

import pytest
from cbutil import Regressor, loader, regression_data, trainer, two_layer
from lightning.pytorch.callbacks import ModelCheckpoint
from mlflow.tracking import MlflowClient

from lightning_relucvx.callback import ConvexOptimalityCallback

pytestmark = pytest.mark.slow


def _callback(uri: str) -> ConvexOptimalityCallback:
    return ConvexOptimalityCallback(
        every_n_train_steps=2, wait=True, log_weights=False, log_model=False, tracking_uri=uri
    )


def test_resume_continues_schedule_and_run(tmp_path):
    uri = f"sqlite:///{tmp_path / 'resume.db'}"
    x, y = regression_data(seed=3)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, every_n_epochs=1)
    first = _callback(uri)
    trainer([first, ckpt], max_epochs=2, enable_checkpointing=True).fit(
        Regressor(two_layer(1, 6, seed=3)), loader(x, y, batch_size=10)
    )  # 3 steps per epoch
    assert [h["step"] for h in first.history] == [2, 4, 6]

    second = _callback(uri)
    assert second.state_key == first.state_key
    trainer([second, ckpt], max_epochs=4, enable_checkpointing=True).fit(
        Regressor(two_layer(1, 6, seed=99)),
        loader(x, y, batch_size=10),
        ckpt_path=str(tmp_path / "ckpt" / "last.ckpt"),
    )
    assert [h["step"] for h in second.history] == [2, 4, 6, 8, 10, 12]
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("relucvx").experiment_id])
    assert len(runs) == 1  # the resumed run goes on in the callback's own run
    steps = [m.step for m in client.get_metric_history(runs[0].info.run_id, "relucvx/failed")]
    assert sorted(steps) == [2, 4, 6, 8, 10, 12]
