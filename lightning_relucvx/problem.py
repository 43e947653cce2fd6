"""Validated description of one solve: data, loss, beta, network weights, patterns.

Conventions (see DESIGN.md): a first-layer bias is a column of ones appended to ``X``
(so it belongs to ``w_j`` and is weight-decayed with it); the optional output bias is
unpenalized. Every validation failure raises ``ValueError`` naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .losses import LOSSES, check_labels


def _as_float_array(name: str, value: Any, ndim: int | tuple[int, ...]) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except Exception as exc:  # pragma: no cover - numpy rarely refuses
        raise ValueError(f"{name}: cannot be read as an array ({exc})") from exc
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise ValueError(f"{name}: must be numeric, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{name}: must be real, got dtype {arr.dtype}")
    dims = (ndim,) if isinstance(ndim, int) else ndim
    if arr.ndim not in dims:
        want = " or ".join(f"{d}-D" for d in dims)
        raise ValueError(f"{name}: must be {want}, got shape {arr.shape}")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"{name}: contains {bad} NaN or inf value(s)")
    return arr


def _as_scalar(name: str, value: Any) -> float:
    arr = _as_float_array(name, value, (0, 1))
    if arr.size != 1:
        raise ValueError(f"{name}: must be a scalar, got shape {arr.shape}")
    return float(arr.reshape(()))


@dataclass(frozen=True)
class Network:
    """A two-layer ReLU network ``yhat = relu(X W1^T + b1) w2 + b2``.

    ``W1`` is (m, d_raw) as in ``torch.nn.Linear``; ``b1`` (m,) or None; ``w2`` (m,);
    ``b2`` a float or None.
    """

    W1: np.ndarray
    w2: np.ndarray
    b1: np.ndarray | None = None
    b2: float | None = None

    @property
    def width(self) -> int:
        return int(self.W1.shape[0])

    def first_layer(self) -> np.ndarray:
        """Rows ``w_j`` in the augmented space (``[W1_j, b1_j]`` when there is a bias)."""
        if self.b1 is None:
            return self.W1
        return np.hstack([self.W1, self.b1[:, None]])

    def predict(self, X_raw: np.ndarray) -> np.ndarray:
        hidden = X_raw @ self.W1.T
        if self.b1 is not None:
            hidden = hidden + self.b1
        out = np.maximum(hidden, 0.0) @ self.w2
        if self.b2 is not None:
            out = out + self.b2
        return out

    def penalty(self) -> float:
        """``1/2 sum_j (||w_j||^2 + alpha_j^2)`` (first-layer bias included, b2 excluded)."""
        return 0.5 * float(np.sum(self.first_layer() ** 2) + np.sum(self.w2**2))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"W1": self.W1.tolist(), "w2": self.w2.tolist()}
        if self.b1 is not None:
            out["b1"] = self.b1.tolist()
        if self.b2 is not None:
            out["b2"] = float(self.b2)
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        """The weights as arrays under the npz / wire names."""
        out = {"W1": self.W1, "w2": self.w2}
        if self.b1 is not None:
            out["b1"] = self.b1
        if self.b2 is not None:
            out["b2"] = np.asarray(self.b2)
        return out


@dataclass(frozen=True)
class Problem:
    """One convex-certification problem for a two-layer ReLU network.

    Build it with :meth:`Problem.create`, which validates every field. ``X`` is the raw
    data (n, d_raw); :attr:`Xa` is the data the convex program sees (ones column
    appended when ``bias`` is true).
    """

    X: np.ndarray
    y: np.ndarray
    beta: float
    loss: str = "squared"
    loss_scale: float = 1.0
    bias: bool = True
    output_bias: bool = False
    network: Network | None = None
    patterns: np.ndarray | None = None
    Xa: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        Xa = np.hstack([self.X, np.ones((self.X.shape[0], 1))]) if self.bias else self.X
        object.__setattr__(self, "Xa", np.ascontiguousarray(Xa))

    @property
    def n(self) -> int:
        return int(self.X.shape[0])

    @property
    def d(self) -> int:
        """Dimension of the convex program's blocks (``d_raw + 1`` with a bias)."""
        return int(self.Xa.shape[1])

    @classmethod
    def create(
        cls,
        X: Any,
        y: Any,
        beta: Any,
        *,
        loss: str = "squared",
        loss_scale: Any = 1.0,
        bias: bool | None = None,
        output_bias: bool | None = None,
        W1: Any = None,
        b1: Any = None,
        w2: Any = None,
        b2: Any = None,
        patterns: Any = None,
    ) -> Problem:
        """Validate and build a problem.

        ``bias`` defaults to "``b1`` is given" and ``output_bias`` to "``b2`` is given";
        without weights both default to false.
        """
        X = _as_float_array("X", X, 2)
        n, d_raw = X.shape
        if n == 0 or d_raw == 0:
            raise ValueError(f"X: must be non-empty, got shape {X.shape}")
        y = _as_float_array("y", y, (1, 2))
        if y.ndim == 2:
            if 1 not in y.shape:
                raise ValueError(f"y: must be a vector, got shape {y.shape}")
            y = y.reshape(-1)
        if y.shape[0] != n:
            raise ValueError(f"y: has {y.shape[0]} entries but X has {n} rows")
        beta_f = _as_scalar("beta", beta)
        if beta_f <= 0:
            raise ValueError(f"beta: must be > 0, got {beta_f}")
        if not isinstance(loss, str) or loss not in LOSSES:
            raise ValueError(f"loss: must be one of {', '.join(LOSSES)}, got {loss!r}")
        scale = _as_scalar("loss_scale", loss_scale)
        if scale <= 0:
            raise ValueError(f"loss_scale: must be > 0, got {scale}")
        check_labels(loss, y)

        network = None
        if W1 is not None or w2 is not None:
            if W1 is None or w2 is None:
                raise ValueError("W1/w2: both are needed to describe a network")
            W1a = _as_float_array("W1", W1, 2)
            if W1a.shape[1] != d_raw:
                raise ValueError(f"W1: has {W1a.shape[1]} columns but X has {d_raw}")
            m = W1a.shape[0]
            if m == 0:
                raise ValueError("W1: the network has no hidden neurons")
            w2a = _as_float_array("w2", w2, (1, 2))
            if w2a.ndim == 2:
                if w2a.shape[0] != 1:
                    raise ValueError(f"w2: must be (m,) or (1, m), got shape {w2a.shape}")
                w2a = w2a[0]
            if w2a.shape[0] != m:
                raise ValueError(f"w2: has {w2a.shape[0]} entries but W1 has {m} rows")
            b1a = None
            if b1 is not None:
                b1a = _as_float_array("b1", b1, 1)
                if b1a.shape[0] != m:
                    raise ValueError(f"b1: has {b1a.shape[0]} entries but W1 has {m} rows")
            b2f = None if b2 is None else _as_scalar("b2", b2)
            network = Network(W1=W1a, w2=w2a, b1=b1a, b2=b2f)
        elif b1 is not None or b2 is not None:
            raise ValueError("b1/b2: given without W1 and w2")

        use_bias = (b1 is not None) if bias is None else bool(bias)
        use_out = (b2 is not None) if output_bias is None else bool(output_bias)
        if network is not None:
            if use_bias != (network.b1 is not None):
                raise ValueError("bias: must match whether b1 is given")
            if use_out and network.b2 is None:
                network = replace(network, b2=0.0)
            if not use_out and network.b2 is not None:
                raise ValueError("output_bias: b2 is given but output_bias is false")

        pats = None
        if patterns is not None:
            pats = validate_patterns(patterns, n)
        return cls(
            X=X,
            y=y,
            beta=beta_f,
            loss=loss,
            loss_scale=scale,
            bias=use_bias,
            output_bias=use_out,
            network=network,
            patterns=pats,
        )

    def with_network(self, network: Network | None) -> Problem:
        return replace(self, network=network)

    def with_patterns(self, patterns: np.ndarray | None) -> Problem:
        return replace(
            self, patterns=None if patterns is None else validate_patterns(patterns, self.n)
        )


def validate_patterns(patterns: Any, n: int) -> np.ndarray:
    """Check a (P, n) 0/1 matrix and return it as ``bool``."""
    arr = np.asarray(patterns)
    if arr.dtype == object:
        raise ValueError("patterns: must be numeric 0/1, got dtype object")
    if arr.ndim == 1 and arr.size == n:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"patterns: must be 2-D (P, n), got shape {arr.shape}")
    if arr.shape[1] != n:
        raise ValueError(f"patterns: must have n={n} columns, got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError("patterns: is empty (P=0)")
    if arr.dtype != np.bool_:
        if not np.issubdtype(arr.dtype, np.number):
            raise ValueError(f"patterns: must be numeric 0/1, got dtype {arr.dtype}")
        if not np.all(np.isin(arr, (0, 1))):
            raise ValueError("patterns: entries must be 0 or 1")
        arr = arr.astype(bool)
    return arr
