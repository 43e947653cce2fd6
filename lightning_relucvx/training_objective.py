"""What training minimizes, in the convex program's terms: the loss, its scale and ``beta``.

DESIGN.md section 1: the certified objective is
``F = loss_scale * l(yhat, y) + (beta/2) * sum_j (||w_j||^2 + alpha_j^2)`` on the probe set.

Losses (``n`` = probe size):

- ``"mse"``: ``torch.nn.MSELoss(reduction="mean")``, ``(1/n) ||yhat - y||^2``. That is the
  default loss ``1/2 ||yhat - y||^2`` times ``loss_scale = 2/n``.
- ``"bce"``: ``torch.nn.BCEWithLogitsLoss(reduction="mean")`` on targets in {0, 1}. That is
  the logistic loss on labels ``2 t - 1`` in {-1, +1} times ``loss_scale = 1/n``.
- ``"squared"``, ``"logistic"``, ``"hinge"``: the core's losses (sums), times ``loss_scale``
  (default 1.0; give the factor your training loop really uses).

``beta`` from the optimizer: ``torch.optim.SGD(weight_decay=wd)`` (and the other optimizers
whose ``weight_decay`` adds ``wd * theta`` to the gradient: Adam, Adamax, Adagrad, RMSprop,
ASGD, NAdam and RAdam without ``decoupled_weight_decay``) minimizes
``l + (wd/2) ||theta||^2``, so ``beta = wd``. AdamW's decoupled decay (and
``decoupled_weight_decay=True``) shrinks the weights outside the gradient; its fixed points
are not stationary points of ``l + (beta/2) ||theta||^2`` for any ``beta``, so it is refused.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

LOSS_NAMES = ("mse", "bce", "squared", "logistic", "hinge")

# optimizers whose weight_decay is an L2 term added to the gradient
COUPLED_DECAY = ("SGD", "Adam", "Adamax", "Adagrad", "RMSprop", "ASGD", "NAdam", "RAdam")
DECOUPLED_DECAY = ("AdamW",)


class ObjectiveError(ValueError):
    """The training setup does not define an objective the callback can certify."""


@dataclass(frozen=True)
class LossSpec:
    """The core loss name and scale for a training loss on ``n`` probe points."""

    name: str  # as given: mse, bce, squared, logistic, hinge
    core: str  # squared, logistic, hinge
    scale: float
    scale_formula: str

    def targets(self, y: np.ndarray) -> np.ndarray:
        """Probe targets as the core loss wants them (``bce``: {0, 1} -> {-1, +1})."""
        if self.name == "bce":
            if not np.all(np.isin(y, (0.0, 1.0))):
                raise ObjectiveError("loss='bce': probe targets must be 0 or 1")
            return 2.0 * y - 1.0
        return y


def loss_spec(loss: str, n: int, loss_scale: float | None = None) -> LossSpec:
    """The explicit scale factor of ``loss`` on ``n`` probe points."""
    if loss == "mse":
        if loss_scale is not None:
            raise ObjectiveError("loss_scale: 'mse' fixes it to 2/n; use loss='squared' instead")
        return LossSpec("mse", "squared", 2.0 / n, f"2/n = 2/{n}")
    if loss == "bce":
        if loss_scale is not None:
            raise ObjectiveError("loss_scale: 'bce' fixes it to 1/n; use loss='logistic' instead")
        return LossSpec("bce", "logistic", 1.0 / n, f"1/n = 1/{n}")
    if loss in ("squared", "logistic", "hinge"):
        scale = 1.0 if loss_scale is None else float(loss_scale)
        return LossSpec(loss, loss, scale, "given" if loss_scale is not None else "1 (sum)")
    raise ObjectiveError(f"loss: must be one of {', '.join(LOSS_NAMES)}, got {loss!r}")


@dataclass(frozen=True)
class DecayInfo:
    """``beta`` read from an optimizer, and the output bias's decay (not in the program)."""

    beta: float
    optimizer: str
    output_bias_decay: float  # weight_decay on b2 (0: none); training adds (wd/2) b2^2


def _group_decay(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> float | None:
    for group in optimizer.param_groups:
        if any(p is param for p in group["params"]):
            return float(group.get("weight_decay", 0.0) or 0.0)
    return None


def decay_from_optimizers(
    optimizers: list[torch.optim.Optimizer], params: dict[str, torch.Tensor]
) -> DecayInfo:
    """``beta = weight_decay`` of the optimizer that trains the head ``params``
    (``W1``, ``w2``, optional ``b1``, ``b2``).

    Raises :class:`ObjectiveError` for decoupled decay, unknown optimizers, unequal decays
    on the penalized weights, or zero decay.
    """
    owners = [o for o in optimizers if _group_decay(o, params["W1"]) is not None]
    if not owners:
        raise ObjectiveError(
            "beta: no optimizer trains the head's first layer; pass beta= explicitly"
        )
    opt = owners[0]
    kind = type(opt).__name__
    decays = {k: _group_decay(opt, p) for k, p in params.items()}
    penalized = {k: v for k, v in decays.items() if k != "b2"}
    decoupled = kind in DECOUPLED_DECAY or any(
        g.get("decoupled_weight_decay", False) for g in opt.param_groups
    )
    if decoupled and any(v for v in decays.values()):
        raise ObjectiveError(
            f"beta: {kind} uses decoupled weight decay, which is not an L2 penalty: training "
            "does not minimize loss + (beta/2)||theta||^2 for any beta, so there is nothing to "
            "certify. Use SGD or Adam with weight_decay=beta (coupled L2), or set the decay "
            "to 0 and add (beta/2)||theta||^2 to the loss yourself and pass beta="
        )
    if kind not in COUPLED_DECAY:
        raise ObjectiveError(
            f"beta: cannot tell what weight_decay means for {kind}; pass beta= explicitly"
        )
    if None in penalized.values():
        missing = [k for k, v in penalized.items() if v is None]
        raise ObjectiveError(f"beta: the optimizer does not train {', '.join(missing)}")
    values = set(penalized.values())
    if len(values) != 1:
        raise ObjectiveError(
            f"beta: weight_decay differs across the head's weights ({penalized}); the convex "
            "program needs one beta for W1, b1 and w2"
        )
    beta = values.pop()
    if beta <= 0:
        raise ObjectiveError(
            f"beta: the optimizer's weight_decay on the head is {beta}; the convex program "
            "needs beta > 0 (set weight_decay, or pass beta= if the penalty is in your loss)"
        )
    return DecayInfo(beta=beta, optimizer=kind, output_bias_decay=float(decays.get("b2") or 0.0))
