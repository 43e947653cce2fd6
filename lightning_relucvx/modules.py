"""Torch side: the package's ``TwoLayerReLU`` module and loading networks into modules."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .problem import Network


class TwoLayerReLU(nn.Module):
    """``x -> relu(x W1^T + b1) w2 + b2``: one hidden ReLU layer, scalar output.

    ``bias`` adds the first-layer bias (as ``nn.Linear``); ``output_bias`` the output one.
    """

    def __init__(
        self, in_features: int, width: int, bias: bool = True, output_bias: bool = False
    ) -> None:
        super().__init__()
        self.hidden = nn.Linear(in_features, width, bias=bias)
        self.output = nn.Linear(width, 1, bias=output_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.output(torch.relu(self.hidden(x))).squeeze(-1)

    @property
    def width(self) -> int:
        return self.hidden.out_features


def layers_of(module: nn.Module) -> tuple[nn.Linear, nn.Linear]:
    """The (hidden, output) ``nn.Linear`` pair of a supported module."""
    if isinstance(module, TwoLayerReLU):
        return module.hidden, module.output
    if isinstance(module, nn.Sequential):
        mods = list(module)
        if (
            len(mods) == 3
            and isinstance(mods[0], nn.Linear)
            and isinstance(mods[1], nn.ReLU)
            and isinstance(mods[2], nn.Linear)
            and mods[2].out_features == 1
        ):
            return mods[0], mods[2]
    raise TypeError(
        f"unsupported module {type(module).__name__}: expected TwoLayerReLU or "
        "nn.Sequential(nn.Linear(d, m), nn.ReLU(), nn.Linear(m, 1))"
    )


def network_from_module(module: nn.Module) -> Network:
    """The weights of a supported module as a :class:`Network` (float64 numpy)."""
    hidden, output = layers_of(module)

    def arr(t: torch.Tensor | None) -> np.ndarray | None:
        return None if t is None else t.detach().to("cpu", torch.float64).numpy().copy()

    b2 = arr(output.bias)
    return Network(
        W1=arr(hidden.weight),
        w2=arr(output.weight)[0],
        b1=arr(hidden.bias),
        b2=None if b2 is None else float(b2[0]),
    )


def fit_width(network: Network, width: int) -> tuple[Network, int]:
    """Pad with zero neurons, or keep the ``width`` largest; returns the network and how many
    neurons were dropped."""
    m = network.width
    if m <= width:
        pad = width - m
        W1 = np.vstack([network.W1, np.zeros((pad, network.W1.shape[1]))])
        b1 = None if network.b1 is None else np.concatenate([network.b1, np.zeros(pad)])
        return Network(W1, np.concatenate([network.w2, np.zeros(pad)]), b1, network.b2), 0
    size = np.linalg.norm(network.first_layer(), axis=1) * np.abs(network.w2)
    keep = np.sort(np.argsort(-size)[:width])
    b1 = None if network.b1 is None else network.b1[keep]
    return Network(network.W1[keep], network.w2[keep], b1, network.b2), m - width


@torch.no_grad()
def load_network(module: nn.Module, network: Network) -> int:
    """Copy ``network`` into a supported module in place (padding or truncating to its width).

    Returns the number of neurons that did not fit (0 when the whole network was loaded).
    """
    hidden, output = layers_of(module)
    if hidden.in_features != network.W1.shape[1]:
        raise ValueError(
            f"network has {network.W1.shape[1]} inputs, module has {hidden.in_features}"
        )
    if (hidden.bias is None) != (network.b1 is None):
        raise ValueError("first-layer bias: the module and the network disagree")
    net, dropped = fit_width(network, hidden.out_features)
    dev, dt = hidden.weight.device, hidden.weight.dtype
    hidden.weight.copy_(torch.as_tensor(net.W1, dtype=dt, device=dev))
    if hidden.bias is not None:
        hidden.bias.copy_(torch.as_tensor(net.b1, dtype=dt, device=dev))
    output.weight.copy_(torch.as_tensor(net.w2[None, :], dtype=dt, device=dev))
    if output.bias is not None:
        output.bias.fill_(float(net.b2 or 0.0))
    elif net.b2:
        raise ValueError("the network has an output bias but the module has none")
    return dropped
