"""DDP with two CPU processes (gloo): one writer, identical replicas after warm start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from cbutil import Regressor, regression_data, training_objective, two_layer
from mlflow.tracking import MlflowClient

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent


def test_ddp_two_processes(tmp_path):
    uri = f"sqlite:///{tmp_path / 'ddp.db'}"
    proc = subprocess.run(
        [sys.executable, str(HERE / "ddp_train.py"), str(tmp_path), uri],
        cwd=HERE,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    r0, r1 = (np.load(tmp_path / f"rank{r}.npz") for r in (0, 1))
    assert sorted(r0.files) == sorted(r1.files)
    for k in r0.files:  # replicas identical, bit for bit
        np.testing.assert_array_equal(r0[k], r1[k])

    # one writer: a single run, each snapshot step logged once
    client = MlflowClient(uri)
    runs = client.search_runs([client.get_experiment_by_name("relucvx").experiment_id])
    assert len(runs) == 1
    hist = client.get_metric_history(runs[0].info.run_id, "relucvx/failed")
    assert sorted(m.step for m in hist) == [3, 6, 9, 12]
    assert not any(m.value for m in hist)

    # the final warm start put both replicas at the last convex optimum (on all the data)
    step, p_opt = (tmp_path / "optimum.txt").read_text().split()
    x, y = regression_data(n=32, seed=4)
    model = Regressor(two_layer(1, 8), wd=1e-2)
    model.net.load_state_dict({k: torch.tensor(r0[k], dtype=torch.float32) for k in r0.files})
    assert int(step) == 12
    assert training_objective(model, x, y) == pytest.approx(float(p_opt), rel=1e-5)
