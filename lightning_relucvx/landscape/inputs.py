"""A network and its data from an ``.npz`` file or a Lightning checkpoint.

- ``.npz``: the names of ``relucvx solve`` (``X``, ``y``, ``beta``, ``W1``, ``b1``, ``w2``,
  ``b2``, ``loss``, ...); weights and data may come in two files (``data=``).
- A Lightning checkpoint (or a bare ``state_dict``), read with
  ``torch.load(weights_only=True)`` (never unpickles arbitrary objects): the two-layer module is
  found by its parameter names (a ``TwoLayerReLU`` -- ``hidden.*``, ``output.*`` -- or an
  ``nn.Sequential(Linear, ReLU, Linear)`` -- ``0.*``, ``2.*`` -- under any prefix), rebuilt and
  read through :func:`modules.network_from_module`. The data come from ``data=``.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..io import load_npz, problem_from_mapping
from ..problem import Problem

WEIGHT_KEYS = ("W1", "b1", "w2", "b2")
_LAYOUTS = {"two_layer_relu": ("hidden.", "output."), "sequential": ("0.", "2.")}


def _is_torch_file(path: Path) -> bool:
    if path.suffix in (".ckpt", ".pt", ".pth"):
        return True
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            return any(name.endswith("data.pkl") for name in zf.namelist())
    return False


def _state_dict(path: Path) -> Mapping[str, Any]:
    import pickle

    import torch

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(
            f"{path}: not a checkpoint readable with weights_only=True ({first})"
        ) from exc
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(k, str) for k in obj):
        raise ValueError(f"{path}: holds no state_dict")
    return obj


def _candidates(state: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(prefix, layout) of every supported two-layer module in ``state``."""
    out = []
    for key in state:
        for layout, (first, second) in _LAYOUTS.items():
            tail = first + "weight"
            if not key.endswith(tail):
                continue
            prefix = key[: -len(tail)]
            if prefix + second + "weight" not in state:
                continue
            if layout == "sequential" and any(
                k.startswith(prefix) and k[len(prefix) :].split(".")[0] not in ("0", "2")
                for k in state
            ):
                continue  # a longer Sequential: not a two-layer network
            out.append((prefix, layout))
    return out


def network_from_state(state: Mapping[str, Any], module: str | None = None):
    """The :class:`Network` of the two-layer module in a ``state_dict`` (``module``: its prefix,
    needed only when there are several)."""
    import torch
    from torch import nn

    from ..modules import TwoLayerReLU, network_from_module

    found = _candidates(state)
    if module is not None:
        want = module if module == "" or module.endswith(".") else module + "."
        found = [c for c in found if c[0] == want]
    if len(found) != 1:
        names = ", ".join(repr(p.rstrip(".")) for p, _ in found) or "none"
        raise ValueError(
            f"checkpoint: expected one TwoLayerReLU or Sequential(Linear, ReLU, Linear) "
            f"module{'' if module is None else f' named {module!r}'}, found {names}"
            + ("; pick one with --module" if len(found) > 1 else "")
        )
    prefix, layout = found[0]
    first, second = _LAYOUTS[layout]
    sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix + first)}
    sub.update({k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix + second)})
    for name, value in sub.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"checkpoint: {prefix}{name} is not a tensor")
    W1 = sub[first + "weight"]
    w2 = sub[second + "weight"]
    if W1.ndim != 2 or w2.ndim != 2 or w2.shape != (1, W1.shape[0]):
        raise ValueError(
            f"checkpoint: layer shapes {tuple(W1.shape)} and {tuple(w2.shape)} are not a "
            "two-layer network with one output"
        )
    m, d = W1.shape
    bias, out_bias = first + "bias" in sub, second + "bias" in sub
    if layout == "two_layer_relu":
        mod: nn.Module = TwoLayerReLU(d, m, bias=bias, output_bias=out_bias)
    else:
        mod = nn.Sequential(nn.Linear(d, m, bias=bias), nn.ReLU(), nn.Linear(m, 1, bias=out_bias))
    try:
        mod.load_state_dict(sub, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"checkpoint: cannot load the module {prefix!r}: {exc}") from exc
    return network_from_module(mod.double())


def load_model(
    path: str | Path,
    data: str | Path | None = None,
    module: str | None = None,
    beta: float | None = None,
) -> Problem:
    """The problem (data and network) for ``relucvx check`` / ``relucvx path``.

    ``path``: an ``.npz`` with the network (and the data unless ``data`` is given) or a
    Lightning checkpoint (then ``data`` is required). ``beta`` overrides the file's.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    arrays: dict[str, Any] = {}
    if _is_torch_file(path):
        if data is None:
            raise ValueError(f"{path}: a checkpoint holds no data; give the data with --data")
        net = network_from_state(_state_dict(path), module)
        arrays.update(net.arrays())
    else:
        if module is not None:
            raise ValueError("module: only applies to checkpoints")
        arrays.update(load_npz(path))
    if data is not None:
        if Path(data).is_file() and _is_torch_file(Path(data)):
            raise ValueError(f"{data}: the data must be an .npz file, not a torch checkpoint")
        extra = load_npz(data)
        clash = sorted(set(extra) & set(arrays))
        if clash:
            raise ValueError(f"{data}: repeats {', '.join(clash)} already given by {path}")
        arrays.update(extra)
    if beta is not None:
        arrays["beta"] = beta
    if "W1" not in arrays or "w2" not in arrays:
        raise ValueError(f"{path}: no network (W1 and w2 are needed)")
    return problem_from_mapping(arrays, source=str(path))
