"""A real Trainer, a real ``mlflow server`` process: metrics at the right steps, the bracket
in order, artifacts, tags, and warm start to the convex optimum."""

from __future__ import annotations

import json

import mlflow
import pytest
from cbutil import Regressor, loader, regression_data, trainer, training_objective, two_layer
from lightning.pytorch.loggers import MLFlowLogger
from mlflow.tracking import MlflowClient

from lightning_relucvx.callback import ConvexOptimalityCallback

pytestmark = pytest.mark.slow

TOL = 1e-6  # solver accuracy, relative to the objective


def _history(client: MlflowClient, run_id: str, name: str) -> dict[int, float]:
    return {m.step: m.value for m in client.get_metric_history(run_id, f"relucvx/{name}")}


def _artifacts(client: MlflowClient, run_id: str, path: str) -> set[str]:
    return {f.path for f in client.list_artifacts(run_id, path)}


def test_mlflow_logger_run_gets_metrics_artifacts_and_warm_start(mlflow_uri, tmp_path):
    x, y = regression_data()
    model = Regressor(two_layer(1, 8), wd=1e-2, lr=0.1)
    logger = MLFlowLogger(experiment_name="callback-test", tracking_uri=mlflow_uri)
    cb = ConvexOptimalityCallback(
        every_n_train_steps=15,
        extra_patterns="all",
        warm_start="end",
        log_model=True,
        max_pending=100,  # nothing skipped: every snapshot solved in the background
    )
    tr = trainer([cb], logger=logger, max_epochs=15, log_every_n_steps=1)
    tr.fit(model, loader(x, y, batch_size=10))  # 3 steps per epoch, 45 steps

    client = MlflowClient(mlflow_uri)
    run_id = logger.run_id
    steps = [15, 30, 45]
    failed = _history(client, run_id, "failed")
    assert sorted(failed) == steps and not any(failed.values())
    F = _history(client, run_id, "nonconvex_objective")
    p_own = _history(client, run_id, "convex_objective_own")
    p_S = _history(client, run_id, "convex_objective_sampled")
    lb = _history(client, run_id, "lower_bound")
    for name in ("local_gap", "global_gap_upper", "num_patterns", "optimal_width"):
        assert sorted(_history(client, run_id, name)) == steps, name
    for s in steps:
        tol = TOL * max(1.0, F[s])
        assert lb[s] <= p_S[s] + tol <= p_own[s] + 2 * tol <= F[s] + 3 * tol, s
    # every pattern enumerated: the lower bound is certified and the bracket is tight
    assert _history(client, run_id, "lower_bound_certified")[45] == 1.0
    assert p_S[45] - lb[45] <= 1e-3 * p_S[45]
    # the Trainer's own metric and ours share the step axis
    assert client.get_metric_history(run_id, "train_loss")

    top = _artifacts(client, run_id, "relucvx")
    assert {"relucvx/gap_curve.png", "relucvx/optimal_model", "relucvx/step_00000045"} <= top
    step_files = _artifacts(client, run_id, "relucvx/step_00000045")
    assert step_files == {
        "relucvx/step_00000045/result.json",
        "relucvx/step_00000045/optimal_weights.npz",
    }
    result = json.loads(
        (
            __import__("pathlib").Path(
                client.download_artifacts(run_id, "relucvx/step_00000045/result.json", tmp_path)
            )
        ).read_text()
    )
    assert result["step"] == 45 and result["status"] == "optimal"
    assert result["loss_scale"] == pytest.approx(2 / len(x))
    assert "optimal_weights" in result
    run = client.get_run(run_id)
    assert run.data.params["relucvx.beta"] == "0.01"
    assert run.data.params["relucvx.loss_scale_formula"] == f"2/n = 2/{len(x)}"
    assert run.data.tags["relucvx.solver_backend"].startswith("scs")
    assert "relucvx.torch_version" in run.data.tags

    # warm start at the end: the model's training objective is the convex optimum
    p_opt = cb.history[-1]["optimal_objective"]
    assert training_objective(model, x, y) == pytest.approx(p_opt, rel=1e-5)
    assert training_objective(model, x, y) < F[45]
    ws = _history(client, run_id, "warm_start_objective")
    assert ws[45] == pytest.approx(p_opt, rel=1e-5)

    # the final optimal network is an MLflow model that predicts like the warm-started one
    loaded = mlflow.pytorch.load_model(f"runs:/{run_id}/relucvx/optimal_model")
    import torch

    with torch.no_grad():
        torch.testing.assert_close(loaded(x).reshape(-1), model(x), rtol=1e-4, atol=1e-5)


def test_active_mlflow_run_and_epoch_schedule(mlflow_uri):
    x, y = regression_data(seed=1)
    model = Regressor(two_layer(1, 6, seed=1), wd=2e-2)
    mlflow.set_tracking_uri(mlflow_uri)
    mlflow.set_experiment("callback-active-run")
    cb = ConvexOptimalityCallback(every_n_epochs=2, log_weights=False, log_model=False)
    with mlflow.start_run() as run:
        trainer([cb], max_epochs=4).fit(model, loader(x, y, batch_size=15))  # 2 steps/epoch
    client = MlflowClient(mlflow_uri)
    assert sorted(_history(client, run.info.run_id, "failed")) == [4, 8]
    assert _artifacts(client, run.info.run_id, "relucvx/step_00000004") == {
        "relucvx/step_00000004/result.json"
    }
    assert client.get_run(run.info.run_id).info.status == "FINISHED"


def test_own_run_honours_mlflow_tracking_uri(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'own.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    x, y = regression_data(seed=2)
    cb = ConvexOptimalityCallback(
        every_n_train_steps=3, wait=True, warm_start="every", log_model=False
    )
    model = Regressor(two_layer(1, 6, seed=2), wd=1e-2)
    trainer([cb], max_epochs=6).fit(model, loader(x, y))
    client = MlflowClient(uri)
    run = client.search_runs([client.get_experiment_by_name("relucvx").experiment_id])[0]
    assert run.info.status == "FINISHED"
    src = _history(client, run.info.run_id, "warm_start_source_objective")
    got = _history(client, run.info.run_id, "warm_start_objective")
    assert sorted(got) == [3, 6]
    for s in got:  # after each warm start the model sits exactly at the convex optimum
        assert got[s] == pytest.approx(src[s], rel=1e-5)
