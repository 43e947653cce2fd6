"""``ConvexOptimalityCallback``: certify, during Lightning training, how far a two-layer ReLU
network is from the global optimum, and where that optimum lies.

At each snapshot (every N steps or epochs, rank 0 only) the head's weights are copied on the
training thread; one background worker has the solver (in-process by default, or the solver
service) solve the convex program over the network's own activation patterns (plus
``extra_patterns`` sampled ones); the results are logged to MLflow at the snapshot's
``global_step``. Training never waits for a solve unless ``wait=True``, and a failing or
slow solver never stops it: every snapshot is logged either as solved or with
``relucvx/failed = 1``.

The certified objective (DESIGN.md section 1) on the probe set is::

    F = loss_scale * l(yhat, y) + (beta/2) * (||W1||^2 + ||b1||^2 + ||w2||^2)

``loss="mse"`` is ``MSELoss(reduction="mean")``, i.e. ``l = 1/2 ||yhat - y||^2`` with
``loss_scale = 2/n``; ``beta`` defaults to the optimizer's coupled ``weight_decay`` (SGD,
Adam, ...; AdamW is refused, see :mod:`lightning_relucvx.training_objective`). When the probe
set is the whole training set, ``F`` is exactly the objective training minimizes; an output
bias ``b2`` is unpenalized in the program, so if the optimizer decays it too, training's
objective is ``F + (wd/2) b2^2`` and that term is logged as ``relucvx/output_bias_penalty``.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from . import __version__
from .adapters import Head, UnsupportedModelError, resolve_head
from .bounds import nonconvex_objective
from .client import InProcessSolver, SolverClient
from .core import Report, SolveOptions
from .mlflow_sink import MLflowSink
from .pl import VERSION as LIGHTNING_VERSION
from .pl import Callback, LightningModule, MisconfigurationException, Trainer
from .problem import Network, Problem
from .training_objective import (
    LOSS_NAMES,
    DecayInfo,
    LossSpec,
    ObjectiveError,
    decay_from_optimizers,
    loss_spec,
)

WARM_START_MODES = ("never", "end", "every")


@dataclass
class SnapshotRecord:
    """The outcome of one snapshot: what is logged at its step and kept for the gap curve."""

    step: int
    epoch: int
    failed: bool
    status: str
    error: str | None = None
    nonconvex_objective: float | None = None
    convex_objective_own: float | None = None
    convex_objective_sampled: float | None = None
    local_gap: float | None = None
    relative_local_gap: float | None = None
    lower_bound: float | None = None
    lower_bound_certified: bool | None = None
    global_gap_lower: float | None = None
    global_gap_upper: float | None = None
    num_patterns: int | None = None
    optimal_width: int | None = None
    optimal_objective: float | None = None  # objective of the optimal network (= p_S)
    solve_seconds: float | None = None
    output_bias_penalty: float | None = None
    deferred_snapshots: int | None = None  # due snapshots deferred so far (max_solver_load)

    def metrics(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {
            k: getattr(self, k)
            for k in (
                "nonconvex_objective",
                "convex_objective_own",
                "convex_objective_sampled",
                "local_gap",
                "relative_local_gap",
                "lower_bound",
                "global_gap_lower",
                "global_gap_upper",
                "num_patterns",
                "optimal_width",
                "solve_seconds",
                "output_bias_penalty",
                "deferred_snapshots",
            )
        }
        out["failed"] = 1.0 if self.failed else 0.0
        if self.lower_bound_certified is not None:
            out["lower_bound_certified"] = float(self.lower_bound_certified)
        return out


@dataclass
class _Snapshot:
    step: int
    epoch: int
    problem: Problem
    options: SolveOptions
    deferred: int | None = None  # due snapshots deferred before this one (max_solver_load)
    submitted: float = field(default_factory=time.perf_counter)


@dataclass
class _Solved:
    record: SnapshotRecord
    problem: Problem
    network: Network


def _misconf(name: str, value: Any, why: str) -> MisconfigurationException:
    return MisconfigurationException(f"ConvexOptimalityCallback: {name}={value!r}: {why}")


class ConvexOptimalityCallback(Callback):
    """Certify a two-layer ReLU network's distance to the global optimum while it trains.

    Args:
        every_n_train_steps: snapshot when ``global_step`` is a multiple of this.
        every_n_epochs: snapshot at the end of every N-th epoch. Mutually exclusive with
            ``every_n_train_steps``; with neither, once per epoch.
        probe: the data the objective is certified on: ``(X, y)`` tensors or arrays, a
            ``Dataset`` of ``(x, y)`` pairs, or an int ``k``: ``k`` samples drawn once
            (seeded by ``probe_seed``) from the training dataset, or all of it when it has at
            most ``k`` items. With the whole training set, the certified objective is exactly
            the training objective.
        beta: the weight-decay strength; default: the optimizer's coupled ``weight_decay``.
        loss: ``"mse"`` (MSELoss mean, scale ``2/n``), ``"bce"`` (BCEWithLogitsLoss mean on
            {0, 1} targets, scale ``1/n``), or ``"squared"`` / ``"logistic"`` / ``"hinge"``
            with an explicit ``loss_scale`` (see :mod:`lightning_relucvx.training_objective`).
        extra_patterns: sampled activation patterns added to the network's own (``p_S``); an
            int, or ``"all"`` to enumerate every pattern (small data rank only).
        solver: ``None`` (in-process), a service URL, or a :class:`SolverClient`.
        solve_options: further :class:`SolveOptions` fields (``eps``, ``solver``, ...).
        solve_timeout: seconds one solve may take.
        warm_start: ``"never"``, ``"end"`` (load the last optimum at the end of training) or
            ``"every"`` (at every snapshot, load the newest optimum available).
        log_weights: log the optimal weights of each snapshot as artifacts.
        log_model: log the final optimal network as an MLflow model.
        wait: solve on the training thread and wait for each result.
        max_pending: snapshots waiting or being solved at most; a snapshot taken beyond this
            is logged as failed with status ``skipped``.
        max_solver_load: the largest fraction of wall time the background solver may be
            busy (0 < load <= 1; None: no limit). After a solve of ``s`` seconds the next
            snapshot waits at least ``s (1/load - 1)`` seconds, and none is taken while one is
            being solved; due snapshots in between are deferred (not taken), counted in
            ``relucvx/deferred_snapshots``. The training slowdown grows with the solver's
            load (``benchmarks/README.md``), so this bounds what the callback costs when the
            time a solve takes is not known in advance.
        drain_timeout: seconds to wait at the end of training for pending solves.
        head: name of the head submodule (default: the model itself, or its only head).
        features: for a head on frozen features: a callable or submodule name applied to the
            probe inputs before the head.
        tracking_uri, experiment_name, run_name: for a run of the callback's own (used when
            the Trainer has no ``MLFlowLogger`` and no ``mlflow`` run is active).
    """

    def __init__(
        self,
        *,
        every_n_train_steps: int | None = None,
        every_n_epochs: int | None = None,
        probe: Any = 1024,
        probe_seed: int = 0,
        beta: float | None = None,
        loss: str = "mse",
        loss_scale: float | None = None,
        extra_patterns: int | str = 0,
        solver: str | SolverClient | None = None,
        solve_options: dict[str, Any] | None = None,
        solve_timeout: float = 120.0,
        warm_start: str = "never",
        log_weights: bool = True,
        log_model: bool = True,
        wait: bool = False,
        max_pending: int = 2,
        max_solver_load: float | None = None,
        drain_timeout: float = 300.0,
        head: str | None = None,
        features: Any = None,
        tracking_uri: str | None = None,
        experiment_name: str = "relucvx",
        run_name: str | None = None,
    ) -> None:
        super().__init__()
        for name, val in (
            ("every_n_train_steps", every_n_train_steps),
            ("every_n_epochs", every_n_epochs),
        ):
            if val is not None and (isinstance(val, bool) or not isinstance(val, int) or val < 1):
                raise _misconf(name, val, "must be a positive int or None")
        if every_n_train_steps is not None and every_n_epochs is not None:
            raise _misconf(
                "every_n_epochs", every_n_epochs, "give every_n_train_steps or every_n_epochs"
            )
        if every_n_train_steps is None and every_n_epochs is None:
            every_n_epochs = 1
        if beta is not None and not (isinstance(beta, (int, float)) and beta > 0):
            raise _misconf("beta", beta, "must be a number > 0 (or None: the optimizer's)")
        if loss not in LOSS_NAMES:
            raise _misconf("loss", loss, f"must be one of {', '.join(LOSS_NAMES)}")
        try:
            loss_spec(loss, 1, loss_scale)
        except ObjectiveError as exc:
            raise _misconf("loss_scale", loss_scale, str(exc)) from exc
        if loss_scale is not None and not loss_scale > 0:
            raise _misconf("loss_scale", loss_scale, "must be > 0")
        if not (
            extra_patterns == "all"
            or (
                (isinstance(extra_patterns, int) and not isinstance(extra_patterns, bool))
                and extra_patterns >= 0
            )
        ):
            raise _misconf("extra_patterns", extra_patterns, "must be an int >= 0 or 'all'")
        if warm_start not in WARM_START_MODES:
            raise _misconf("warm_start", warm_start, f"must be one of {WARM_START_MODES}")
        if not (isinstance(max_pending, int) and max_pending >= 1):
            raise _misconf("max_pending", max_pending, "must be an int >= 1")
        if max_solver_load is not None and not (
            isinstance(max_solver_load, (int, float))
            and not isinstance(max_solver_load, bool)
            and 0 < max_solver_load <= 1
        ):
            raise _misconf("max_solver_load", max_solver_load, "must be in (0, 1] or None")
        for name, val in (("solve_timeout", solve_timeout), ("drain_timeout", drain_timeout)):
            if not (isinstance(val, (int, float)) and val > 0):
                raise _misconf(name, val, "must be a number of seconds > 0")
        if isinstance(probe, bool) or (isinstance(probe, int) and probe < 1):
            raise _misconf("probe", probe, "an int probe size must be >= 1")
        if not (
            solver is None
            or (isinstance(solver, str) and solver.startswith(("http://", "https://")))
            or isinstance(solver, SolverClient)
        ):
            raise _misconf(
                "solver", solver, "must be None (in-process), an http(s):// URL or a SolverClient"
            )
        try:
            self._base_options = SolveOptions(**(solve_options or {}))
        except (TypeError, ValueError) as exc:
            raise _misconf("solve_options", solve_options, str(exc)) from exc

        self.every_n_train_steps = every_n_train_steps
        self.every_n_epochs = every_n_epochs
        self.probe = probe
        self.probe_seed = probe_seed
        self.beta = beta
        self.loss = loss
        self.loss_scale = loss_scale
        self.extra_patterns = extra_patterns
        self.solver = solver
        self.solve_timeout = float(solve_timeout)
        self.warm_start = warm_start
        self.log_weights = log_weights
        self.log_model = log_model
        self.wait = wait
        self.max_pending = max_pending
        self.max_solver_load = None if max_solver_load is None else float(max_solver_load)
        self.drain_timeout = float(drain_timeout)
        self.head = head
        self.features = features
        self.tracking_uri = tracking_uri
        self.experiment_name = experiment_name
        self.run_name = run_name

        # run state
        self.history: list[dict[str, Any]] = []
        self.last_snapshot_step: int = -1
        self.warm_started_step: int = -1
        self._run_id: str | None = None  # own run, for resume
        self._state_key: tuple[tuple[int | None, int | None], str] | None = None
        self._head: Head | None = None
        self._decay: DecayInfo | None = None
        self._beta: float | None = None
        self._client: SolverClient | None = None
        self._owns_client = False
        self._sink: MLflowSink | None = None
        self._solve_pool: ThreadPoolExecutor | None = None
        self._log_pool: ThreadPoolExecutor | None = None
        self._pending: list[tuple[int, Future]] = []
        self._logged: set[int] = set()
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._latest: _Solved | None = None
        self._warned_skip = False
        self.deferred_snapshots = 0  # due snapshots not taken (max_solver_load)
        self._next_allowed = 0.0  # perf_counter time before which no snapshot is taken
        self._warned_defer = False
        self._probe_x: torch.Tensor | None = None
        self._probe_X: np.ndarray | None = None
        self._probe_y: np.ndarray | None = None
        self._loss: LossSpec | None = None
        self._last_log: Future | None = None

    # -- Lightning plumbing --------------------------------------------------------------

    @property
    def state_key(self) -> str:
        # Lightning reads this on every hook call (for its profiler's names): cache it
        schedule = (self.every_n_train_steps, self.every_n_epochs)
        if self._state_key is None or self._state_key[0] != schedule:
            key = self._generate_state_key(
                every_n_train_steps=schedule[0], every_n_epochs=schedule[1]
            )
            self._state_key = (schedule, key)
        return self._state_key[1]

    def state_dict(self) -> dict[str, Any]:
        return {
            "last_snapshot_step": self.last_snapshot_step,
            "warm_started_step": self.warm_started_step,
            "history": [dict(h) for h in self.history],
            "deferred_snapshots": self.deferred_snapshots,
            "run_id": self._sink.run_id if self._sink and self._sink.owns_run else self._run_id,
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.last_snapshot_step = int(state_dict.get("last_snapshot_step", -1))
        self.warm_started_step = int(state_dict.get("warm_started_step", -1))
        self.history = [dict(h) for h in state_dict.get("history", [])]
        self.deferred_snapshots = int(state_dict.get("deferred_snapshots", 0))
        self._run_id = state_dict.get("run_id")

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        try:
            self._head = resolve_head(pl_module, self.head, self.features)
        except UnsupportedModelError as exc:
            raise MisconfigurationException(f"ConvexOptimalityCallback: {exc}") from exc

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        assert self._head is not None
        params = self._head.parameters()
        self._decay = None
        if self.beta is None:
            try:
                self._decay = decay_from_optimizers(list(trainer.optimizers), params)
            except ObjectiveError as exc:
                raise MisconfigurationException(f"ConvexOptimalityCallback: {exc}") from exc
            self._beta = self._decay.beta
        else:
            self._beta = float(self.beta)
            try:
                found = decay_from_optimizers(list(trainer.optimizers), params)
            except ObjectiveError:
                found = None
            if found is not None:
                self._decay = found
                if not np.isclose(found.beta, self._beta):
                    warnings.warn(
                        f"ConvexOptimalityCallback: beta={self._beta} but the optimizer's "
                        f"weight_decay is {found.beta}: the certified objective uses "
                        f"beta={self._beta} plus the decay; training minimizes "
                        f"beta={self._beta + found.beta} if your loss also holds the penalty",
                        stacklevel=2,
                    )
        if self._decay is not None and self._decay.output_bias_decay > 0:
            warnings.warn(
                "ConvexOptimalityCallback: the optimizer decays the output bias "
                f"(weight_decay={self._decay.output_bias_decay}); the convex program leaves it "
                "unpenalized, so training's objective is F + (wd/2) b2^2. That term is logged "
                "as relucvx/output_bias_penalty. Put the output bias in a parameter group "
                "with weight_decay=0 (or use no output bias) for an exact match.",
                stacklevel=2,
            )
        feats = self._head.features
        if isinstance(feats, torch.nn.Module):
            trained = {
                id(p) for o in trainer.optimizers for g in o.param_groups for p in g["params"]
            }
            if any(id(p) in trained and p.requires_grad for p in feats.parameters()):
                warnings.warn(
                    "ConvexOptimalityCallback: the features are trained too; each snapshot "
                    "certifies the head on the features of that moment only",
                    stacklevel=2,
                )

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._cancel.clear()
        self._pending = []
        self._logged = set()
        self._latest = None
        self._warned_skip = False
        self._warned_defer = False
        self._next_allowed = 0.0
        if not trainer.is_global_zero:
            return
        self._load_probe(trainer)
        self._client, self._owns_client = self._make_client()
        try:
            self._sink = MLflowSink.resolve(
                trainer.loggers,
                tracking_uri=self.tracking_uri,
                experiment_name=self.experiment_name,
                run_name=self.run_name,
                run_id=self._run_id,
            )
        except Exception as exc:  # MLflow unreachable: train anyway, results only in memory
            warnings.warn(
                f"ConvexOptimalityCallback: MLflow not available ({exc}); results are kept "
                "in callback.history only",
                stacklevel=2,
            )
            self._sink = None
        start = getattr(self._client, "start", None)
        if callable(start):  # e.g. spawn the solver process now, not at the first snapshot
            try:
                start()
            except Exception as exc:  # each snapshot's solve will try again and record it
                warnings.warn(
                    f"ConvexOptimalityCallback: the solver did not start: "
                    f"{type(exc).__name__}: {exc}",
                    stacklevel=2,
                )
        self._solve_pool = ThreadPoolExecutor(1, thread_name_prefix="relucvx-callback")
        self._log_pool = ThreadPoolExecutor(1, thread_name_prefix="relucvx-mlflow")
        self._guarded(self._log_setup)  # before the first step, not during it

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        n = self.every_n_train_steps
        step = trainer.global_step
        if n is None or step == 0 or step % n or step == self.last_snapshot_step:
            return
        self._at_snapshot(trainer, pl_module)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        n = self.every_n_epochs
        if n is None or (trainer.current_epoch + 1) % n:
            return
        if trainer.global_step == self.last_snapshot_step:
            return
        self._at_snapshot(trainer, pl_module)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.is_global_zero:
            self._drain()
            if self.max_solver_load is not None:  # including those after the last snapshot
                self._log(
                    self._log_metrics,
                    {"deferred_snapshots": float(self.deferred_snapshots)},
                    trainer.global_step,
                )
        if self.warm_start in ("end", "every"):
            self._apply_warm_start(trainer, pl_module)
        if trainer.is_global_zero:
            self._log(self._log_final, pl_module)
            self._log(self._finish_sink, "FINISHED")
            self._close(wait_logs=True)

    def on_exception(
        self, trainer: Trainer, pl_module: LightningModule, exception: BaseException
    ) -> None:
        if not trainer.is_global_zero or self._solve_pool is None:
            return
        self._cancel.set()
        for step, fut in list(self._pending):
            if fut.cancel():
                self._record_failure(step, trainer.current_epoch, "cancelled", "training failed")
        self._log(self._finish_sink, "FAILED")
        self._close(wait_logs=False)

    # -- snapshots -----------------------------------------------------------------------

    def _at_snapshot(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.last_snapshot_step = trainer.global_step
        if trainer.is_global_zero:
            self._take_snapshot(trainer)
        if self.warm_start == "every":
            self._apply_warm_start(trainer, pl_module)

    def _over_load(self) -> bool:
        """Taking a snapshot now would push the solver's load above ``max_solver_load``."""
        load = self.max_solver_load
        if load is None:
            return False
        if time.perf_counter() < self._next_allowed:
            return True
        return load < 1 and any(not f.done() for _, f in self._pending)

    def _take_snapshot(self, trainer: Trainer) -> None:
        step, epoch = trainer.global_step, trainer.current_epoch
        if self._over_load():
            self.deferred_snapshots += 1
            if not self._warned_defer:
                self._warned_defer = True
                warnings.warn(
                    f"ConvexOptimalityCallback: the snapshot at step {step} is deferred to keep "
                    f"the solver's load under max_solver_load={self.max_solver_load}; deferred "
                    "snapshots are counted in relucvx/deferred_snapshots.",
                    stacklevel=2,
                )
            return
        try:
            snap = self._snapshot(step, epoch)
        except Exception as exc:
            warnings.warn(f"ConvexOptimalityCallback: snapshot at step {step}: {exc}", stacklevel=2)
            self._record_failure(step, epoch, "invalid", f"{type(exc).__name__}: {exc}")
            return
        if self.wait:
            self._solve_and_record(snap)
            return
        self._pending = [(s, f) for s, f in self._pending if not f.done()]
        if len(self._pending) >= self.max_pending or self._solve_pool is None:
            if not self._warned_skip and self._solve_pool is not None:
                self._warned_skip = True
                warnings.warn(
                    f"ConvexOptimalityCallback: the solver is not keeping up: the snapshot at "
                    f"step {step} is skipped ({len(self._pending)} pending, max_pending="
                    f"{self.max_pending}). Snapshot less often (every_n_train_steps) to have "
                    "every snapshot solved and the solver idle between them.",
                    stacklevel=2,
                )
            self._record_failure(
                step, epoch, "skipped", f"{len(self._pending)} snapshots pending (max_pending)"
            )
            return
        self._pending.append((step, self._solve_pool.submit(self._solve_and_record, snap)))

    def _snapshot(self, step: int, epoch: int) -> _Snapshot:
        """Copy everything a solve needs (on the training thread)."""
        assert self._head is not None and self._probe_y is not None and self._loss is not None
        X = self._probe_X
        if X is None:  # features: recompute, they may change
            X = self._head.inputs(self._probe_x.to(self._head.hidden.weight.device))
        net = self._head.network()
        problem = Problem.create(
            X,
            self._probe_y,
            self._beta,
            loss=self._loss.core,
            loss_scale=self._loss.scale,
            bias=net.b1 is not None,
            output_bias=net.b2 is not None,
            W1=net.W1,
            b1=net.b1,
            w2=net.w2,
            b2=net.b2,
        )
        if self.extra_patterns == "all":
            patterns = "all"
        elif self.extra_patterns:
            patterns = f"sample:{self.extra_patterns}"
        else:
            patterns = "own"
        options = SolveOptions(
            **{
                **self._base_options.__dict__,
                "patterns": patterns,
                "seed": self.probe_seed + step,
                "time_limit": self.solve_timeout,
            }
        )
        deferred = self.deferred_snapshots if self.max_solver_load is not None else None
        return _Snapshot(step, epoch, problem, options, deferred)

    def _solve_and_record(self, snap: _Snapshot) -> None:
        """Solve one snapshot and log its outcome (runs on the worker thread)."""
        if self._cancel.is_set():
            self._record_failure(snap.step, snap.epoch, "cancelled", "training stopped")
            return
        try:
            assert self._client is not None
            t0 = time.perf_counter()
            try:
                report = self._client.solve(snap.problem, snap.options, timeout=self.solve_timeout)
            finally:
                self._rest_after(time.perf_counter() - t0)
        except Exception as exc:
            warnings.warn(
                f"ConvexOptimalityCallback: solve for step {snap.step} failed: "
                f"{type(exc).__name__}: {exc}",
                stacklevel=2,
            )
            self._record_failure(snap.step, snap.epoch, "error", f"{type(exc).__name__}: {exc}")
            return
        self._record_report(snap, report)

    def _rest_after(self, seconds: float) -> None:
        """After a solve of ``seconds``: no snapshot for ``seconds (1/load - 1)``."""
        if self.max_solver_load is not None:
            rest = seconds * (1.0 / self.max_solver_load - 1.0)
            self._next_allowed = max(self._next_allowed, time.perf_counter() + rest)

    def _record_report(self, snap: _Snapshot, report: Report) -> None:
        ok = report.ok and report.optimal_network is not None
        net = report.optimal_network
        rec = SnapshotRecord(
            step=snap.step,
            epoch=snap.epoch,
            failed=not ok,
            status=report.status,
            error=None if ok else f"solver status {report.status}",
            nonconvex_objective=report.nonconvex_objective,
            solve_seconds=report.solve_seconds,
            output_bias_penalty=self._output_bias_penalty(snap.problem),
            deferred_snapshots=snap.deferred,
        )
        if ok:
            rec.convex_objective_own = report.convex_objective_own
            rec.convex_objective_sampled = report.convex_objective
            rec.local_gap = report.local_gap
            rec.relative_local_gap = report.relative_local_gap
            rec.lower_bound = report.lower_bound
            rec.lower_bound_certified = report.lower_bound_certified
            rec.global_gap_lower = report.global_gap_lower
            rec.global_gap_upper = report.global_gap_upper
            rec.num_patterns = report.num_patterns
            rec.optimal_width = report.num_neurons
            rec.optimal_objective = report.upper_bound
        result = {
            **report.to_dict(include_weights=self.log_weights),
            "step": snap.step,
            "epoch": snap.epoch,
            "failed": rec.failed,
            "loss_name": self._loss.name if self._loss else None,
            "loss_scale": snap.problem.loss_scale,
        }
        if not self._claim(snap.step, rec):
            return
        if ok:
            with self._lock:
                self._latest = _Solved(rec, snap.problem, net)
        self._log(self._log_snapshot, rec, result, net if (ok and self.log_weights) else None)

    def _record_failure(self, step: int, epoch: int, status: str, error: str) -> None:
        rec = SnapshotRecord(step=step, epoch=epoch, failed=True, status=status, error=error)
        if self._claim(step, rec):
            result = {
                "step": step,
                "epoch": epoch,
                "failed": True,
                "status": status,
                "error": error,
            }
            self._log(self._log_snapshot, rec, result, None)

    def _claim(self, step: int, rec: SnapshotRecord) -> bool:
        """Record ``rec`` unless the step already has an outcome (exactly one per step)."""
        with self._lock:
            if step in self._logged:
                return False
            self._logged.add(step)
            self.history = [h for h in self.history if h["step"] != step]
            self.history.append(asdict(rec))
            self.history.sort(key=lambda h: h["step"])
        return True

    def _output_bias_penalty(self, problem: Problem) -> float | None:
        wd = self._decay.output_bias_decay if self._decay else 0.0
        b2 = problem.network.b2 if problem.network else None
        return 0.5 * wd * b2**2 if wd and b2 is not None else None

    def _drain(self) -> None:
        deadline = time.monotonic() + self.drain_timeout
        for step, fut in list(self._pending):
            try:
                fut.result(timeout=max(deadline - time.monotonic(), 0.0))
            except FutureTimeout:
                fut.cancel()
                self._record_failure(
                    step, -1, "timeout", f"not solved within drain_timeout={self.drain_timeout} s"
                )
            except Exception as exc:  # _solve_and_record catches; this is a last resort
                self._record_failure(step, -1, "error", f"{type(exc).__name__}: {exc}")
        self._pending = []

    # -- warm start ----------------------------------------------------------------------

    def _apply_warm_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Load the newest optimum into the head on every rank (all ranks call this)."""
        assert self._head is not None
        solved = None
        if trainer.is_global_zero:
            with self._lock:
                solved = self._latest
            if solved is not None and solved.record.step == self.warm_started_step:
                solved = None
        step = trainer.strategy.broadcast(None if solved is None else solved.record.step, src=0)
        if step is None:
            return
        dropped = 0
        if trainer.is_global_zero:
            dropped = self._head.load(solved.network)
        params = list(self._head.parameters().values())
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            with torch.no_grad():
                for p in params:
                    torch.distributed.broadcast(p.data, src=0)
        for opt in trainer.optimizers:  # stale momentum belongs to other weights
            for p in params:
                opt.state.pop(p, None)
        self.warm_started_step = int(step)
        if trainer.is_global_zero:
            loaded = nonconvex_objective(solved.problem, self._head.network())
            self._log(
                self._log_metrics,
                {
                    "warm_start_objective": loaded,
                    "warm_start_source_objective": solved.record.optimal_objective,
                    "warm_start_source_step": float(step),
                    "warm_start_dropped_neurons": float(dropped),
                },
                trainer.global_step,
            )

    # -- setup helpers -------------------------------------------------------------------

    def _make_client(self) -> tuple[SolverClient, bool]:
        if self.solver is None:
            return InProcessSolver(max_workers=1), True
        if isinstance(self.solver, str):
            from . import client as client_mod

            http = getattr(client_mod, "HTTPSolver", None)
            if http is None:
                raise _misconf("solver", self.solver, "this version has no HTTPSolver")
            return http(self.solver), True
        return self.solver, False

    def _load_probe(self, trainer: Trainer) -> None:
        assert self._head is not None
        x, y = _probe_tensors(self.probe, trainer, self.probe_seed)
        n = int(x.shape[0])
        try:
            self._loss = loss_spec(self.loss, n, self.loss_scale)
            self._probe_y = self._loss.targets(
                y.detach().to("cpu", torch.float64).reshape(-1).numpy()
            )
        except ObjectiveError as exc:
            raise MisconfigurationException(f"ConvexOptimalityCallback: {exc}") from exc
        if self._probe_y.shape[0] != n:
            raise _misconf("probe", "...", f"{n} inputs but {self._probe_y.shape[0]} targets")
        self._probe_x = x.detach()
        if self._head.features is None:
            try:
                self._probe_X = self._head.inputs(self._probe_x)
            except UnsupportedModelError as exc:
                raise MisconfigurationException(f"ConvexOptimalityCallback: {exc}") from exc
        else:
            self._probe_X = None
            self._head.inputs(self._probe_x.to(self._head.hidden.weight.device))  # check shape

    # -- logging (on the MLflow thread) ----------------------------------------------------

    def _log(self, fn, *args) -> None:
        if self._log_pool is None:
            return
        with contextlib.suppress(RuntimeError):  # pool shut down
            self._last_log = self._log_pool.submit(self._guarded, fn, *args)

    def _guarded(self, fn, *args) -> None:
        if self._sink is None:
            return
        try:
            fn(*args)
        except Exception as exc:
            warnings.warn(
                f"ConvexOptimalityCallback: MLflow {fn.__name__} failed: "
                f"{type(exc).__name__}: {exc}",
                stacklevel=2,
            )

    def _log_setup(self) -> None:
        import scs

        assert self._sink is not None and self._loss is not None
        info = {}
        try:
            info = self._client.info() if self._client else {}
        except Exception as exc:
            info = {"error": str(exc)}
        self._sink.log_params(
            {
                "beta": self._beta,
                "beta_source": f"{self._decay.optimizer}.weight_decay"
                if self.beta is None and self._decay
                else "given",
                "loss": self._loss.name,
                "core_loss": self._loss.core,
                "loss_scale": self._loss.scale,
                "loss_scale_formula": self._loss.scale_formula,
                "probe_size": len(self._probe_y),
                "extra_patterns": self.extra_patterns,
                "every_n_train_steps": self.every_n_train_steps,
                "every_n_epochs": self.every_n_epochs,
                "warm_start": self.warm_start,
                "head": self._head.name or "<model>",
            }
        )
        self._sink.set_tags(
            {
                "client": getattr(self._client, "name", type(self._client).__name__),
                "solver": self._base_options.solver,
                "solver_info": json.dumps(info, default=str)[:4000],
                "version": __version__,
                "torch_version": torch.__version__,
                "lightning_version": LIGHTNING_VERSION,
                "scs_version": getattr(scs, "__version__", "?"),
            }
        )

    def _log_snapshot(
        self, rec: SnapshotRecord, result: dict[str, Any], network: Network | None
    ) -> None:
        assert self._sink is not None
        self._sink.log_snapshot(rec.step, rec.metrics(), result, network)
        if not rec.failed and "solver" in result:
            self._sink.set_tags({"solver_backend": result["solver"]})

    def _log_metrics(self, metrics: dict[str, float | None], step: int) -> None:
        assert self._sink is not None
        self._sink.log_metrics(metrics, step)

    def _log_final(self, pl_module: LightningModule) -> None:
        assert self._sink is not None
        self._sink.log_gap_curve(self.history)
        with self._lock:
            solved = self._latest
        if solved is None or not self.log_model:
            return
        from .modules import TwoLayerReLU, load_network

        net = solved.network
        dtype = self._head.hidden.weight.dtype
        model = TwoLayerReLU(
            net.W1.shape[1], net.width, bias=net.b1 is not None, output_bias=net.b2 is not None
        ).to(dtype)
        load_network(model, net)
        example = solved.problem.X[:4].astype(np.float32 if dtype == torch.float32 else np.float64)
        self._sink.log_torch_model(model, example)
        self._sink.set_tags(
            {"optimal_model_step": solved.record.step, "optimal_model_width": net.width}
        )

    def _finish_sink(self, status: str) -> None:
        assert self._sink is not None
        self._sink.finish(status)

    def _close(self, wait_logs: bool) -> None:
        if self._solve_pool is not None:
            self._solve_pool.shutdown(wait=False, cancel_futures=True)
            self._solve_pool = None
        if self._log_pool is not None:
            last = self._last_log
            self._log_pool.shutdown(wait=False)
            if wait_logs and last is not None:
                try:
                    last.result(timeout=self.drain_timeout)
                except Exception:
                    warnings.warn(
                        "ConvexOptimalityCallback: MLflow logging did not finish in time",
                        stacklevel=2,
                    )
            self._log_pool = None
        if self._owns_client and self._client is not None:
            with contextlib.suppress(Exception):
                self._client.close()
        self._client = None


def _as_tensor(v: Any) -> torch.Tensor:
    return v if isinstance(v, torch.Tensor) else torch.as_tensor(np.asarray(v))


def _probe_tensors(probe: Any, trainer: Trainer, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` of the probe set: given tensors, a dataset, or k samples of the training set."""
    if isinstance(probe, (tuple, list)) and len(probe) == 2:
        return _as_tensor(probe[0]), _as_tensor(probe[1])
    if isinstance(probe, int):
        loader = trainer.train_dataloader
        dataset = getattr(loader, "dataset", None)
        if dataset is None or not hasattr(dataset, "__len__"):
            raise _misconf(
                "probe", probe, "the training dataloader has no sized dataset; pass (X, y)"
            )
        size = len(dataset)
        idx = np.arange(size)
        if size > probe:
            idx = np.sort(np.random.default_rng(seed).choice(size, probe, replace=False))
        return _stack(dataset, idx)
    if hasattr(probe, "__getitem__") and hasattr(probe, "__len__"):
        return _stack(probe, np.arange(len(probe)))
    raise _misconf("probe", probe, "must be (X, y), a Dataset of (x, y) pairs or an int")


def _stack(dataset: Any, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for i in idx:
        item = dataset[int(i)]
        if not (isinstance(item, (tuple, list)) and len(item) >= 2):
            raise _misconf("probe", type(dataset).__name__, "items must be (x, y) pairs")
        xs.append(_as_tensor(item[0]))
        ys.append(_as_tensor(item[1]).reshape(-1))
    return torch.stack(xs), torch.cat(ys)
