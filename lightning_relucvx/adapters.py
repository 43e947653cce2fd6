"""Model adapters: find the two-layer ReLU head inside a model and move weights in and out.

Supported heads (see :func:`lightning_relucvx.modules.layers_of`):

- ``nn.Sequential(nn.Linear(d, m), nn.ReLU(), nn.Linear(m, 1))``;
- the package's :class:`~lightning_relucvx.modules.TwoLayerReLU`;
- either of them as a named submodule of a LightningModule (``head="classifier"``), or
  found automatically when the model holds exactly one;
- with ``features``: a two-layer head on top of frozen features. The probe inputs pass
  through ``features`` (a callable, or the name of a submodule) before reaching the head.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .modules import layers_of, load_network, network_from_module
from .problem import Network

SUPPORTED = (
    "nn.Sequential(nn.Linear(d, m), nn.ReLU(), nn.Linear(m, 1)) or lightning_relucvx."
    "TwoLayerReLU, as the model itself, as its only such submodule, or named with "
    "head='<submodule name>'; a two-layer head on frozen features takes features=<callable>"
)


class UnsupportedModelError(TypeError):
    """The model has no two-layer ReLU head the callback can certify."""


def _is_head(module: nn.Module) -> bool:
    try:
        layers_of(module)
    except TypeError:
        return False
    return True


@dataclass
class Head:
    """The two-layer head of a model and how probe inputs reach it."""

    module: nn.Module
    name: str
    features: Callable[[torch.Tensor], torch.Tensor] | None = None

    @property
    def hidden(self) -> nn.Linear:
        return layers_of(self.module)[0]

    @property
    def output(self) -> nn.Linear:
        return layers_of(self.module)[1]

    @property
    def width(self) -> int:
        return self.hidden.out_features

    def parameters(self) -> dict[str, nn.Parameter]:
        """The head's parameters by role: ``W1``, ``b1``, ``w2``, ``b2`` (present ones)."""
        out = {"W1": self.hidden.weight, "w2": self.output.weight}
        if self.hidden.bias is not None:
            out["b1"] = self.hidden.bias
        if self.output.bias is not None:
            out["b2"] = self.output.bias
        return out

    def network(self) -> Network:
        """A float64 copy of the head's weights (safe to hand to another thread)."""
        return network_from_module(self.module)

    def load(self, network: Network) -> int:
        """Load ``network`` into the head in place; returns the number of dropped neurons."""
        return load_network(self.module, network)

    @torch.no_grad()
    def inputs(self, x: torch.Tensor) -> np.ndarray:
        """The head's inputs for raw model inputs ``x`` (through ``features`` if any)."""
        feats = _call_in_eval(self.features, x) if self.features is not None else x
        feats = feats.detach().to("cpu", torch.float64)
        if feats.ndim != 2:
            feats = feats.reshape(feats.shape[0], -1)
        if feats.shape[1] != self.hidden.in_features:
            raise UnsupportedModelError(
                f"the head expects {self.hidden.in_features} inputs but the probe "
                f"{'features' if self.features is not None else 'inputs'} have {feats.shape[1]}"
            )
        return feats.numpy().copy()


def _call_in_eval(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Call ``fn`` without touching batch-norm statistics or dropout (eval mode, restored)."""
    if not isinstance(fn, nn.Module):
        return fn(x)
    modes = {m: m.training for m in fn.modules()}
    fn.eval()
    try:
        return fn(x)
    finally:
        for m, mode in modes.items():
            m.train(mode)


def resolve_head(
    model: nn.Module,
    head: str | None = None,
    features: Callable[[torch.Tensor], torch.Tensor] | str | None = None,
) -> Head:
    """Find the two-layer head of ``model`` (see the module docstring for what is supported).

    Raises :class:`UnsupportedModelError` saying what is supported.
    """
    if head is not None:
        try:
            module = model.get_submodule(head)
        except AttributeError as exc:
            raise UnsupportedModelError(
                f"head={head!r}: the model has no submodule of that name"
            ) from exc
        if not _is_head(module):
            raise UnsupportedModelError(
                f"head={head!r} is a {type(module).__name__}; supported: {SUPPORTED}"
            )
        name = head
    elif _is_head(model):
        module, name = model, ""
    else:
        found = [(n, m) for n, m in model.named_modules() if n and _is_head(m)]
        if len(found) != 1:
            what = (
                "no supported head"
                if not found
                else "several candidate heads (" + ", ".join(n for n, _ in found) + "); pick one"
            )
            raise UnsupportedModelError(
                f"{type(model).__name__} has {what}. Supported: {SUPPORTED}"
            )
        name, module = found[0]
    feat_fn = None
    if isinstance(features, str):
        try:
            feat_fn = model.get_submodule(features)
        except AttributeError as exc:
            raise UnsupportedModelError(
                f"features={features!r}: the model has no submodule of that name"
            ) from exc
    elif features is not None:
        if not callable(features):
            raise UnsupportedModelError(
                f"features: must be a callable or a submodule name, got {type(features).__name__}"
            )
        feat_fn = features
    return Head(module=module, name=name, features=feat_fn)
