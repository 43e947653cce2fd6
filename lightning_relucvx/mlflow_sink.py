"""Where snapshot results go: an MLflow run.

The run is, in this order: the run of Lightning's ``MLFlowLogger`` when the Trainer has one;
the active ``mlflow`` run; or a run of its own (tracking URI: the argument, else
``MLFLOW_TRACKING_URI``, else ``sqlite:///mlflow.db``). Every call goes through an explicit
``MlflowClient`` and run id, so it is safe from a background thread and never changes the
global ``mlflow`` state.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .problem import Network

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
PREFIX = "relucvx"


def step_dir(step: int) -> str:
    return f"{PREFIX}/step_{step:08d}"


class MLflowSink:
    """Writes metrics at a given step, artifacts and tags to one MLflow run."""

    def __init__(self, client: Any, run_id: str, owns_run: bool, tracking_uri: str) -> None:
        self.client = client
        self.run_id = run_id
        self.owns_run = owns_run
        self.tracking_uri = tracking_uri

    @classmethod
    def resolve(
        cls,
        loggers: Sequence[Any] = (),
        tracking_uri: str | None = None,
        experiment_name: str = "relucvx",
        run_name: str | None = None,
        run_id: str | None = None,
    ) -> MLflowSink:
        """The sink for a Trainer's ``loggers`` (see the module docstring for the order).

        ``run_id`` resumes a run this sink created earlier (when no logger or active run).
        """
        import mlflow
        from mlflow.tracking import MlflowClient

        from .pl import MLFlowLogger

        for lg in loggers:
            if isinstance(lg, MLFlowLogger):
                return cls(lg.experiment, lg.run_id, False, lg.experiment.tracking_uri)
        active = mlflow.active_run()
        if active is not None:
            uri = mlflow.get_tracking_uri()
            return cls(MlflowClient(uri), active.info.run_id, False, uri)
        uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
        client = MlflowClient(uri)
        if run_id is not None:
            client.update_run(run_id, status="RUNNING")
            return cls(client, run_id, True, uri)
        exp = client.get_experiment_by_name(experiment_name)
        exp_id = exp.experiment_id if exp is not None else client.create_experiment(experiment_name)
        run = client.create_run(exp_id, run_name=run_name)
        return cls(client, run.info.run_id, True, uri)

    # -- writing -------------------------------------------------------------------------

    def log_params(self, params: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        self.client.log_batch(
            self.run_id, params=[Param(f"{PREFIX}.{k}", str(v)) for k, v in params.items()]
        )

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        from mlflow.entities import RunTag

        self.client.log_batch(
            self.run_id, tags=[RunTag(f"{PREFIX}.{k}", str(v)) for k, v in tags.items()]
        )

    def log_metrics(self, metrics: Mapping[str, float | None], step: int) -> None:
        """``relucvx/<name>`` at ``step``; None and non-finite values are left out."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [
            Metric(f"{PREFIX}/{k}", float(v), now, int(step))
            for k, v in metrics.items()
            if v is not None and np.isfinite(float(v))
        ]
        if batch:
            self.client.log_batch(self.run_id, metrics=batch)

    def log_snapshot(
        self,
        step: int,
        metrics: Mapping[str, float | None],
        result: Mapping[str, Any],
        network: Network | None = None,
    ) -> None:
        """Metrics at ``step`` and ``relucvx/step_{step:08d}/result.json`` (and the optimal
        weights as ``optimal_weights.npz`` when ``network`` is given)."""
        self.log_metrics(metrics, step)
        self.client.log_text(
            self.run_id, json.dumps(result, indent=1), f"{step_dir(step)}/result.json"
        )
        if network is not None:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / "optimal_weights.npz"
                np.savez(path, **network.arrays())
                self.client.log_artifact(self.run_id, str(path), step_dir(step))

    def log_gap_curve(self, history: Sequence[Mapping[str, Any]]) -> bool:
        """``relucvx/gap_curve.png``: F, p_own, p_S and LB against step. False if empty."""
        rows = [h for h in history if not h.get("failed")]
        if not rows:
            return False
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4.2))
        steps = [h["step"] for h in rows]
        series = (
            ("nonconvex_objective", "F (network)", "-o"),
            ("convex_objective_own", "p_own (own patterns)", "-s"),
            ("convex_objective_sampled", "p_S (upper bound on p*)", "-^"),
            ("lower_bound", "LB (certified lower bound on p*)", "-v"),
        )
        for key, label, style in series:
            vals = [h.get(key) for h in rows]
            pts = [(s, v) for s, v in zip(steps, vals) if v is not None]
            if pts:
                ax.plot(*zip(*pts), style, label=label, markersize=4)
        ax.set_xlabel("global step")
        ax.set_ylabel("objective (training units)")
        ax.set_title("Distance to the global optimum: LB <= p* <= min(p_S, F)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        try:
            self.client.log_figure(self.run_id, fig, f"{PREFIX}/gap_curve.png")
        finally:
            plt.close(fig)
        return True

    def log_torch_model(
        self,
        model: Any,
        input_example: np.ndarray,
        artifact_path: str = f"{PREFIX}/optimal_model",
    ) -> None:
        """``model`` as an MLflow model directory (``mlflow.pytorch`` flavor, the safe ``pt2``
        graph format, no pickle) under ``artifact_path``; load it with
        ``mlflow.pytorch.load_model("runs:/<run id>/relucvx/optimal_model")``."""
        import mlflow.pytorch
        import torch

        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model"
            mlflow.pytorch.save_model(
                model,
                str(path),
                input_example=input_example,
                serialization_format="pt2",
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}"],
            )
            self.client.log_artifacts(self.run_id, str(path), artifact_path)

    def finish(self, status: str = "FINISHED") -> None:
        """End the run if this sink created it."""
        if self.owns_run:
            self.client.set_terminated(self.run_id, status)
