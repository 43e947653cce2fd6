"""The solver service as a real process: solving over HTTP, and a service that is down or
slower than training never stops training; every snapshot is logged as solved or failed."""

from __future__ import annotations

import pytest
from cbutil import Regressor, loader, regression_data, trainer, two_layer
from mlflow.tracking import MlflowClient
from servers import free_port, solver_service

from lightning_relucvx.callback import ConvexOptimalityCallback
from lightning_relucvx.client import HTTPSolver

pytestmark = pytest.mark.slow


def _failed_by_step(uri: str) -> dict[int, float]:
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("relucvx").experiment_id])
    return {m.step: m.value for m in client.get_metric_history(run.info.run_id, "relucvx/failed")}


def test_service_down_never_stops_training(tmp_path):
    uri = f"sqlite:///{tmp_path / 'down.db'}"
    dead = HTTPSolver(f"http://127.0.0.1:{free_port()}", retries=1, backoff=0.05)
    x, y = regression_data(seed=5)
    cb = ConvexOptimalityCallback(
        every_n_train_steps=2, solver=dead, tracking_uri=uri, max_pending=1, drain_timeout=30
    )
    tr = trainer([cb], max_epochs=10)
    tr.fit(Regressor(two_layer(1, 6, seed=5)), loader(x, y, batch_size=15))
    assert tr.global_step == 20  # every step trained
    failed = _failed_by_step(uri)
    assert sorted(failed) == list(range(2, 21, 2))
    assert all(v == 1.0 for v in failed.values())
    statuses = {h["status"] for h in cb.history}
    assert statuses <= {"error", "skipped"} and "error" in statuses
    dead.close()


def test_slow_service_every_snapshot_solved_or_failed(tmp_path):
    uri = f"sqlite:///{tmp_path / 'slow.db'}"
    x, y = regression_data(seed=6)
    with solver_service(tmp_path / "svc") as url:
        # training takes milliseconds per step, a solve far longer: most snapshots find the
        # queue full; the ones sent are solved by the real service
        cb = ConvexOptimalityCallback(
            every_n_train_steps=2, solver=url, tracking_uri=uri, max_pending=1, log_model=False
        )
        tr = trainer([cb], max_epochs=10)
        tr.fit(Regressor(two_layer(1, 6, seed=6)), loader(x, y, batch_size=15))
    assert tr.global_step == 20
    failed = _failed_by_step(uri)
    assert sorted(failed) == list(range(2, 21, 2))
    solved = [h for h in cb.history if not h["failed"]]
    assert solved and solved[0]["step"] == 2
    for h in solved:
        assert h["lower_bound"] <= h["convex_objective_own"] * (1 + 1e-6)
        assert h["convex_objective_own"] <= h["nonconvex_objective"] * (1 + 1e-6)
    assert {h["status"] for h in cb.history if h["failed"]} <= {"skipped", "error", "timeout"}


def test_an_in_process_solver_that_cannot_start_never_stops_training(tmp_path):
    from lightning_relucvx.client import InProcessSolver

    class Broken(InProcessSolver):
        def start(self) -> None:
            raise OSError("no processes left")

        def solve(self, *args, **kwargs):
            raise OSError("no processes left")

    uri = f"sqlite:///{tmp_path / 'broken.db'}"
    broken = Broken()
    x, y = regression_data(seed=5)
    cb = ConvexOptimalityCallback(
        every_n_train_steps=5, solver=broken, tracking_uri=uri, drain_timeout=30
    )
    tr = trainer([cb], max_epochs=5)
    with pytest.warns(UserWarning, match="the solver did not start: OSError: no processes left"):
        tr.fit(Regressor(two_layer(1, 6, seed=5)), loader(x, y, batch_size=15))
    assert tr.global_step == 10  # every step trained
    failed = _failed_by_step(uri)
    assert sorted(failed) == [5, 10] and all(v == 1.0 for v in failed.values())
    assert {h["status"] for h in cb.history} == {"error"}
    broken.close()


def test_max_solver_load_defers_snapshots_and_counts_them(tmp_path):
    """With the in-process solver (a real child process) and a load cap of 1%: the first
    snapshot is solved; every later due step comes while it is solved or during the rest
    that follows (99x the solve), so it is deferred, not taken, skipped or failed, and the
    count reaches MLflow at the last step."""
    uri = f"sqlite:///{tmp_path / 'load.db'}"
    x, y = regression_data(seed=7)
    cb = ConvexOptimalityCallback(
        every_n_train_steps=1, tracking_uri=uri, max_solver_load=0.01, log_model=False
    )
    tr = trainer([cb], max_epochs=10)
    with pytest.warns(UserWarning, match="deferred to keep the solver's load under"):
        tr.fit(Regressor(two_layer(1, 6, seed=7)), loader(x, y, batch_size=15))
    assert tr.global_step == 20
    assert [(h["step"], h["failed"]) for h in cb.history] == [(1, False)]
    assert cb.deferred_snapshots == 19
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("relucvx").experiment_id])
    hist = client.get_metric_history(run.info.run_id, "relucvx/deferred_snapshots")
    assert sorted((m.step, m.value) for m in hist) == [(1, 0.0), (20, 19.0)]
    assert cb.state_dict()["deferred_snapshots"] == 19
