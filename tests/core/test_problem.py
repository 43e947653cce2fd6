"""Validation of the problem model: every bad input raises a ValueError naming the field."""

from __future__ import annotations

import numpy as np
import pytest

from lightning_relucvx.io import problem_from_mapping
from lightning_relucvx.problem import Problem

rng = np.random.default_rng(0)
X = rng.standard_normal((6, 2))
y = rng.standard_normal(6)
W1 = rng.standard_normal((3, 2))
w2 = rng.standard_normal(3)


def test_valid_problem_with_bias_appends_ones_column():
    p = Problem.create(X, y, 0.1, W1=W1, b1=np.zeros(3), w2=w2)
    assert p.bias and not p.output_bias
    assert p.Xa.shape == (6, 3) and np.all(p.Xa[:, -1] == 1.0)
    assert p.network.first_layer().shape == (3, 3)


def test_w2_accepts_torch_linear_shape():
    p = Problem.create(X, y, 0.1, W1=W1, w2=w2[None, :], bias=False)
    assert p.network.w2.shape == (3,)


@pytest.mark.parametrize(
    ("kwargs", "field", "message"),
    [
        ({"X": np.zeros((0, 2)), "y": np.zeros(0)}, "X", "non-empty"),
        ({"X": np.zeros(6)}, "X", "2-D"),
        ({"X": X.astype(object)}, "X", "numeric"),
        ({"X": np.where(np.eye(6, 2) > 0, np.nan, X)}, "X", "NaN"),
        ({"X": np.where(np.eye(6, 2) > 0, np.inf, X)}, "X", "inf"),
        ({"y": y[:5]}, "y", "5 entries"),
        ({"y": np.full(6, np.nan)}, "y", "NaN"),
        ({"beta": 0.0}, "beta", "> 0"),
        ({"beta": -1.0}, "beta", "> 0"),
        ({"beta": np.nan}, "beta", "NaN"),
        ({"beta": [0.1, 0.2]}, "beta", "scalar"),
        ({"loss": "cross_entropy"}, "loss", "one of"),
        ({"loss": "logistic"}, "y", "{-1, +1}"),
        ({"loss": "hinge"}, "y", "{-1, +1}"),
        ({"loss_scale": 0.0}, "loss_scale", "> 0"),
        ({"W1": W1[:, :1], "w2": w2}, "W1", "columns"),
        ({"W1": W1, "w2": w2[:2]}, "w2", "entries"),
        ({"W1": W1}, "W1/w2", "both"),
        ({"W1": W1, "w2": w2, "b1": np.zeros(2)}, "b1", "entries"),
        ({"W1": W1, "w2": np.array([1.0, np.inf, 0.0])}, "w2", "inf"),
        ({"b2": 0.5}, "b1/b2", "without"),
        ({"patterns": np.ones((3, 5))}, "patterns", "n=6 columns"),
        ({"patterns": np.full((3, 6), 2)}, "patterns", "0 or 1"),
        ({"patterns": np.ones((0, 6))}, "patterns", "empty"),
    ],
)
def test_bad_input_names_the_field(kwargs, field, message):
    args = {"X": X, "y": y, "beta": 0.1, **kwargs}
    with pytest.raises(ValueError) as info:
        Problem.create(args.pop("X"), args.pop("y"), args.pop("beta"), **args)
    text = str(info.value)
    assert text.startswith(field + ":"), text
    assert message in text, text


def test_mapping_rejects_unknown_and_missing_fields():
    with pytest.raises(ValueError, match="unknown field"):
        problem_from_mapping({"X": X, "y": y, "beta": 0.1, "gamma": 1})
    with pytest.raises(ValueError, match=r"^beta: missing"):
        problem_from_mapping({"X": X, "y": y})


def test_mapping_reads_string_loss_from_npz_array(tmp_path):
    labels = np.sign(y) + (y == 0)
    path = tmp_path / "p.npz"
    np.savez(path, X=X, y=labels, beta=0.1, loss="hinge")
    from lightning_relucvx.io import load_problem

    assert load_problem(path).loss == "hinge"


def test_npz_with_object_array_is_refused_without_unpickling(tmp_path):
    from lightning_relucvx.io import load_npz

    path = tmp_path / "evil.npz"
    np.savez(path, X=np.array([{"a": 1}], dtype=object), y=y, beta=0.1)
    with pytest.raises(ValueError, match="object array"):
        load_npz(path)
