"""Arguments, model adapters and the mapping from training setup to the certified objective."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cbutil import Regressor, two_layer
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch import nn

from lightning_relucvx import Problem, TwoLayerReLU
from lightning_relucvx.adapters import UnsupportedModelError, resolve_head
from lightning_relucvx.bounds import nonconvex_objective
from lightning_relucvx.callback import ConvexOptimalityCallback
from lightning_relucvx.modules import network_from_module
from lightning_relucvx.training_objective import (
    ObjectiveError,
    decay_from_optimizers,
    loss_spec,
)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"every_n_train_steps": 5, "every_n_epochs": 1}, "every_n_epochs=1"),
        ({"every_n_train_steps": 0}, "every_n_train_steps=0"),
        ({"every_n_epochs": 2.5}, "every_n_epochs=2.5"),
        ({"beta": -1.0}, "beta=-1.0"),
        ({"loss": "l1"}, "loss='l1'"),
        ({"loss": "mse", "loss_scale": 0.5}, "loss_scale=0.5"),
        ({"extra_patterns": -3}, "extra_patterns=-3"),
        ({"warm_start": "always"}, "warm_start='always'"),
        ({"max_pending": 0}, "max_pending=0"),
        ({"max_solver_load": 0}, "max_solver_load=0"),
        ({"max_solver_load": 1.5}, "max_solver_load=1.5"),
        ({"max_solver_load": True}, "max_solver_load=True"),
        ({"solver": "ftp://host"}, "solver='ftp://host'"),
        ({"solve_options": {"eps": 2.0}}, "solve_options="),
        ({"probe": 0}, "probe=0"),
        ({"drain_timeout": -1}, "drain_timeout=-1"),
    ],
)
def test_bad_arguments_name_the_value(kwargs, named):
    with pytest.raises(MisconfigurationException, match=named.replace("(", r"\(")):
        ConvexOptimalityCallback(**kwargs)


def test_default_schedule_is_once_per_epoch():
    cb = ConvexOptimalityCallback()
    assert cb.every_n_epochs == 1 and cb.every_n_train_steps is None
    assert "every_n_epochs" in cb.state_key


class WithClassifier(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(5, 3), nn.Tanh())
        self.classifier = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))


def test_adapters_find_supported_heads():
    seq = nn.Sequential(nn.Linear(2, 6), nn.ReLU(), nn.Linear(6, 1))
    assert resolve_head(seq).module is seq
    tl = TwoLayerReLU(2, 3)
    assert resolve_head(Regressor(tl)).module is tl  # the only head inside
    model = WithClassifier()
    head = resolve_head(model, head="classifier", features="backbone")
    assert head.module is model.classifier and head.width == 4
    x = torch.randn(7, 5)
    np.testing.assert_allclose(
        head.inputs(x), model.backbone(x).detach().double().numpy(), rtol=1e-6
    )


@pytest.mark.parametrize(
    ("model", "kwargs", "match"),
    [
        (nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)), {}, "no supported head"),
        (nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 2)), {}, "no supported head"),
        (WithClassifier(), {"head": "backbone"}, "head='backbone' is a Sequential"),
        (WithClassifier(), {"head": "nope"}, "no submodule"),
        (WithClassifier(), {"head": "classifier", "features": 3}, "features"),
    ],
)
def test_unsupported_models_say_what_is_supported(model, kwargs, match):
    with pytest.raises(UnsupportedModelError, match=match):
        resolve_head(model, **kwargs)


def test_two_heads_need_a_name():
    model = nn.Module()
    model.a = TwoLayerReLU(2, 3)
    model.b = TwoLayerReLU(2, 3)
    with pytest.raises(UnsupportedModelError, match=r"several candidate heads \(a, b\)"):
        resolve_head(model)


def _head_params(net: nn.Module) -> dict[str, torch.Tensor]:
    return resolve_head(net).parameters()


def test_beta_is_sgd_weight_decay():
    net = TwoLayerReLU(3, 4)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, weight_decay=3e-3)
    info = decay_from_optimizers([opt], _head_params(net))
    assert info.beta == 3e-3 and info.optimizer == "SGD" and info.output_bias_decay == 0.0


def test_decayed_output_bias_is_reported():
    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 1))
    opt = torch.optim.Adam(net.parameters(), weight_decay=1e-3)
    assert decay_from_optimizers([opt], _head_params(net)).output_bias_decay == 1e-3
    groups = [
        {"params": [net[0].weight, net[0].bias, net[2].weight], "weight_decay": 1e-3},
        {"params": [net[2].bias], "weight_decay": 0.0},
    ]
    opt = torch.optim.SGD(groups, lr=0.1)
    assert decay_from_optimizers([opt], _head_params(net)).output_bias_decay == 0.0


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda p: torch.optim.AdamW(p, weight_decay=1e-2), "AdamW uses decoupled weight decay"),
        (
            lambda p: torch.optim.Adam(p, weight_decay=1e-2, decoupled_weight_decay=True),
            "decoupled",
        ),
        (lambda p: torch.optim.SGD(p, lr=0.1), "weight_decay on the head is 0.0"),
        (lambda p: torch.optim.Rprop(p), "cannot tell what weight_decay means for Rprop"),
    ],
)
def test_objectives_that_cannot_be_certified_are_refused(make, match):
    net = TwoLayerReLU(3, 4)
    with pytest.raises(ObjectiveError, match=match):
        decay_from_optimizers([make(net.parameters())], _head_params(net))


def test_unequal_decays_are_refused():
    net = TwoLayerReLU(3, 4)
    groups = [
        {"params": [net.hidden.weight, net.hidden.bias], "weight_decay": 1e-3},
        {"params": [net.output.weight], "weight_decay": 2e-3},
    ]
    with pytest.raises(ObjectiveError, match="differs"):
        decay_from_optimizers([torch.optim.SGD(groups, lr=0.1)], _head_params(net))


def test_mse_scale_makes_the_certified_objective_the_training_objective():
    """F from the core with loss_scale 2/n == MSELoss(mean) + wd/2 ||theta||^2 in torch."""
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 1, bias=False)).double()
    x, y = torch.randn(25, 3, dtype=torch.float64), torch.randn(25, dtype=torch.float64)
    wd = 0.05
    with torch.no_grad():
        torch_obj = nn.functional.mse_loss(net(x).reshape(-1), y) + wd / 2 * sum(
            (p**2).sum() for p in net.parameters()
        )
    spec = loss_spec("mse", 25)
    assert spec.core == "squared" and spec.scale == pytest.approx(2 / 25)
    w = network_from_module(net)
    problem = Problem.create(
        x.numpy(), y.numpy(), wd, loss=spec.core, loss_scale=spec.scale, W1=w.W1, b1=w.b1, w2=w.w2
    )
    assert nonconvex_objective(problem, w) == pytest.approx(torch_obj.item(), rel=1e-12)


def test_bce_scale_and_labels_match_bce_with_logits():
    torch.manual_seed(2)
    net = two_layer(3, 5).double()
    x = torch.randn(20, 3, dtype=torch.float64)
    t = (torch.rand(20) > 0.5).double()
    with torch.no_grad():
        torch_obj = nn.functional.binary_cross_entropy_with_logits(net(x), t)
    spec = loss_spec("bce", 20)
    w = network_from_module(net)
    problem = Problem.create(
        x.numpy(),
        spec.targets(t.numpy()),
        1.0,
        loss=spec.core,
        loss_scale=spec.scale,
        W1=w.W1,
        b1=w.b1,
        w2=w.w2,
    )
    fit = nonconvex_objective(problem, w) - problem.beta * w.penalty()
    assert fit == pytest.approx(float(torch_obj), rel=1e-12)
    with pytest.raises(ObjectiveError, match="0 or 1"):
        spec.targets(np.array([0.0, 2.0]))
