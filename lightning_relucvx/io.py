"""Reading problems from ``.npz`` files and plain mappings (the CLI's and the wire's names).

Keys: ``X``, ``y``, ``beta``; optional ``W1`` (m, d), ``b1`` (m,), ``w2`` (m,), ``b2`` (scalar),
``patterns`` (P, n) of 0/1, ``loss`` (string), ``loss_scale``, ``bias``, ``output_bias``.
Never unpickles: ``numpy.load(allow_pickle=False)``.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .problem import Network, Problem

ARRAY_KEYS = ("X", "y", "beta", "W1", "b1", "w2", "b2", "patterns", "loss_scale")
FLAG_KEYS = ("bias", "output_bias")
KEYS = (*ARRAY_KEYS, "loss", *FLAG_KEYS)


def problem_from_mapping(data: Mapping[str, Any], *, source: str = "input") -> Problem:
    """Build a :class:`Problem` from a mapping with the npz / wire names."""
    unknown = sorted(set(data) - set(KEYS))
    if unknown:
        raise ValueError(
            f"{source}: unknown field(s) {', '.join(unknown)}; expected some of {', '.join(KEYS)}"
        )
    for key in ("X", "y", "beta"):
        if key not in data or data[key] is None:
            raise ValueError(f"{key}: missing from {source}")
    loss = data.get("loss", "squared")
    if isinstance(loss, np.ndarray):
        if loss.dtype.kind not in "US" or loss.size != 1:
            raise ValueError(f"loss: must be a string, got an array of dtype {loss.dtype}")
        loss = str(loss.reshape(()))
    kwargs: dict[str, Any] = {}
    for key in FLAG_KEYS:
        if data.get(key) is not None:
            value = np.asarray(data[key])
            if value.size != 1 or value.dtype.kind not in "biu":
                raise ValueError(f"{key}: must be a boolean")
            kwargs[key] = bool(value.reshape(()))
    return Problem.create(
        data["X"],
        data["y"],
        data["beta"],
        loss=loss,
        loss_scale=data.get("loss_scale", 1.0) if data.get("loss_scale") is not None else 1.0,
        W1=data.get("W1"),
        b1=data.get("b1"),
        w2=data.get("w2"),
        b2=data.get("b2"),
        patterns=data.get("patterns"),
        **kwargs,
    )


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` file, refusing pickled (object) arrays."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not a readable .npz file (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files}
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable .npz file ({exc})") from exc
    except ValueError as exc:  # object arrays need pickle, which we refuse
        raise ValueError(
            f"{path}: contains an object array; only numeric arrays and "
            f"strings are accepted ({exc})"
        ) from exc


def load_problem(path: str | Path) -> Problem:
    return problem_from_mapping(load_npz(path), source=str(path))


def save_problem(path: str | Path, problem: Problem) -> None:
    """Write a problem in the npz format that :func:`load_problem` reads."""
    arrays: dict[str, Any] = {
        "X": problem.X,
        "y": problem.y,
        "beta": np.asarray(problem.beta),
        "loss": np.asarray(problem.loss),
        "loss_scale": np.asarray(problem.loss_scale),
        "bias": np.asarray(problem.bias),
        "output_bias": np.asarray(problem.output_bias),
    }
    if problem.network is not None:
        arrays.update(problem.network.arrays())
    if problem.patterns is not None:
        arrays["patterns"] = problem.patterns.astype(np.uint8)
    np.savez(path, **arrays)


def save_network(path: str | Path, network: Network) -> None:
    np.savez(path, **network.arrays())
