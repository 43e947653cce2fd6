"""Encoding shared by the HTTP client and the solver service.

Two forms carry the same fields, named as in the CLI's ``.npz`` files:

- JSON (``application/json``): arrays as (nested) lists, ``patterns`` as a (P, n) list of 0/1.
- Binary (``application/msgpack``): a msgpack map whose arrays are maps
  ``{"dtype": "<f8", "shape": [...], "data": <raw little-endian bytes>}`` and whose
  ``patterns`` is ``{"packed": <bytes>, "shape": [P, n]}`` (:func:`patterns.pack`).

A request holds the problem (``X``, ``y``, ``beta``, ``W1``, ``b1``, ``w2``, ``b2``,
``patterns``, ``loss``, ``loss_scale``, ``bias``, ``output_bias``), optional ``options`` (the
fields of :class:`SolveOptions`) and an optional ``warm_start`` (``patterns``, ``U``, ``V``,
``b``). A result is ``Report.to_dict()`` plus ``optimal_weights`` and ``solution``.

Never pickles; object and non-numeric dtypes are refused. Every error is a
:class:`WireError` (a ``ValueError``) whose message names the field.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from typing import Any

import msgpack
import numpy as np

from . import patterns as pt
from .core import Report, SolveOptions
from .io import KEYS, problem_from_mapping
from .problem import Network, Problem
from .solvers import ConvexSolution

JSON = "application/json"
MSGPACK = "application/msgpack"
MSGPACK_TYPES = (MSGPACK, "application/x-msgpack", "application/vnd.msgpack")

# dtypes accepted in binary arrays (little-endian or byte-order free, numeric only)
DTYPES = ("<f8", "<f4", "<i8", "<i4", "<i2", "|i1", "<u8", "<u4", "<u2", "|u1", "|b1")
REQUEST_KEYS = (*KEYS, "options", "warm_start")
WARM_KEYS = ("patterns", "U", "V", "b")
MAX_DEPTH = 8


class WireError(ValueError):
    """A body that cannot be decoded (malformed, wrong types, refused dtypes)."""


class MalformedBody(WireError):
    """The bytes are not JSON / msgpack at all (HTTP 400 rather than 422)."""


def is_binary(content_type: str | None) -> bool:
    """Whether a ``Content-Type`` / ``Accept`` value names the binary form."""
    if not content_type:
        return False
    base = content_type.split(";")[0].strip().lower()
    return base in MSGPACK_TYPES


def media_type(binary: bool) -> str:
    return MSGPACK if binary else JSON


# ----------------------------------------------------------------------------- arrays


def pack_array(arr: Any) -> dict[str, Any]:
    """An array as ``{"dtype", "shape", "data"}`` with little-endian raw bytes."""
    a = np.asarray(arr)
    if a.dtype.kind not in "biuf":
        raise WireError(f"cannot encode an array of dtype {a.dtype}; only numeric arrays")
    a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))
    return {"dtype": a.dtype.str, "shape": list(a.shape), "data": a.tobytes()}


def unpack_array(name: str, value: Mapping[str, Any]) -> np.ndarray:
    """Inverse of :func:`pack_array`, refusing object and unknown dtypes."""
    if set(value) != {"dtype", "shape", "data"}:
        raise WireError(f"{name}: a binary array needs exactly dtype, shape and data")
    dtype, shape, data = value["dtype"], value["shape"], value["data"]
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise WireError(
            f"{name}: dtype {dtype!r} refused; use one of {', '.join(DTYPES)} "
            "(object dtypes are never accepted)"
        )
    if not isinstance(shape, list) or not all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape
    ):
        raise WireError(f"{name}: shape must be a list of non-negative integers")
    if len(shape) > 2:
        raise WireError(f"{name}: at most 2 dimensions, got shape {shape}")
    if not isinstance(data, bytes):
        raise WireError(f"{name}: data must be raw bytes")
    dt = np.dtype(dtype)
    count = math.prod(shape)
    if len(data) != count * dt.itemsize:
        raise WireError(
            f"{name}: {len(data)} bytes do not match shape {shape} and dtype {dtype} "
            f"({count * dt.itemsize} expected)"
        )
    return np.frombuffer(data, dtype=dt).reshape(shape)


def _array_from_json(name: str, value: Any) -> np.ndarray:
    if isinstance(value, (str, dict)):
        raise WireError(f"{name}: must be a number or a list of numbers")
    try:
        arr = np.asarray(value)
    except (ValueError, TypeError) as exc:
        raise WireError(f"{name}: not a rectangular array of numbers ({exc})") from exc
    if arr.dtype.kind not in "biuf":
        raise WireError(f"{name}: must contain numbers only, got {arr.dtype} entries")
    return arr


def _patterns_in(name: str, value: Any) -> np.ndarray:
    if isinstance(value, Mapping) and "packed" in value:
        if set(value) != {"packed", "shape"}:
            raise WireError(f"{name}: packed patterns need exactly packed and shape")
        shape = value["shape"]
        if (
            not isinstance(shape, list)
            or len(shape) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) for s in shape)
        ):
            raise WireError(f"{name}: shape must be [P, n]")
        if not isinstance(value["packed"], bytes):
            raise WireError(f"{name}: packed must be raw bytes")
        try:
            return pt.unpack(value["packed"], tuple(shape))
        except ValueError as exc:
            raise WireError(f"{name}: {exc}") from exc
    return _value_in(name, value)


def _value_in(name: str, value: Any) -> Any:
    """A field of a decoded body as numpy (binary maps or plain lists/numbers)."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        return unpack_array(name, value)
    return _array_from_json(name, value)


def _patterns_out(patterns: np.ndarray, binary: bool) -> Any:
    if binary:
        packed, shape = pt.pack(patterns)
        return {"packed": packed, "shape": list(shape)}
    return np.asarray(patterns, dtype=np.uint8).tolist()


def _array_out(arr: Any, binary: bool) -> Any:
    if binary:
        return pack_array(arr)
    return np.asarray(arr).tolist()


# ----------------------------------------------------------------------------- bodies


def _loads(body: bytes, binary: bool) -> Any:
    try:
        if binary:
            return msgpack.unpackb(body, raw=False, strict_map_key=True, max_bin_len=len(body))
        return json.loads(body)
    except RecursionError as exc:
        raise MalformedBody("body is nested too deeply") from exc
    except (ValueError, TypeError, msgpack.ExtraData, msgpack.FormatError) as exc:
        kind = "msgpack" if binary else "JSON"
        raise MalformedBody(f"body is not valid {kind}: {exc}") from exc
    except Exception as exc:  # msgpack raises assorted errors on garbage
        raise MalformedBody(f"body is not valid msgpack: {exc}") from exc


def _dumps(obj: Any, binary: bool) -> bytes:
    if binary:
        return msgpack.packb(obj, use_bin_type=True)
    return json.dumps(obj, allow_nan=False, separators=(",", ":")).encode()


_OPTION_TYPES: dict[str, tuple[type, ...]] = {
    "patterns": (str,),
    "solver": (str,),
    "eps": (int, float),
    "linear_solver": (str,),
    "cvxpy_solver": (str,),
    "device": (str,),
    "seed": (int,),
    "time_limit": (int, float, type(None)),
    "max_enumerate": (int,),
    "lower_bound": (str,),
    "prune": (bool,),
}


def options_from_mapping(data: Any) -> SolveOptions:
    """:class:`SolveOptions` from a mapping, checking names and types."""
    if data is None:
        return SolveOptions()
    if not isinstance(data, Mapping):
        raise WireError("options: must be an object")
    unknown = sorted(set(data) - set(_OPTION_TYPES))
    if unknown:
        raise WireError(
            f"options: unknown field(s) {', '.join(map(str, unknown))}; "
            f"expected some of {', '.join(_OPTION_TYPES)}"
        )
    for key, value in data.items():
        types = _OPTION_TYPES[key]
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            want = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise WireError(f"options.{key}: must be {want}, got {type(value).__name__}")
    if "max_enumerate" in data and data["max_enumerate"] < 1:
        raise WireError("options.max_enumerate: must be >= 1")
    return SolveOptions(**data)


def options_to_mapping(options: SolveOptions) -> dict[str, Any]:
    return dataclasses.asdict(options)


def _warm_in(data: Any, n: int, d: int) -> ConvexSolution | None:
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise WireError("warm_start: must be an object with patterns, U, V and optionally b")
    unknown = sorted(set(data) - set(WARM_KEYS))
    if unknown:
        raise WireError(f"warm_start: unknown field(s) {', '.join(map(str, unknown))}")
    for key in ("patterns", "U", "V"):
        if key not in data:
            raise WireError(f"warm_start.{key}: missing")
    pats = _patterns_in("warm_start.patterns", data["patterns"]).astype(bool)
    U = np.asarray(_value_in("warm_start.U", data["U"]), dtype=np.float64)
    V = np.asarray(_value_in("warm_start.V", data["V"]), dtype=np.float64)
    b = data.get("b")
    if b is not None and (isinstance(b, bool) or not isinstance(b, (int, float))):
        raise WireError("warm_start.b: must be a number or null")
    warm = ConvexSolution(pats, U, V, None if b is None else float(b))
    try:
        warm.check_fits(n, d)
    except ValueError as exc:
        raise WireError(str(exc)) from None
    if not (np.all(np.isfinite(U)) and np.all(np.isfinite(V))):
        raise WireError("warm_start.U/V: contain NaN or inf")
    return warm


def _check_depth(obj: Any, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise WireError(f"body is nested deeper than {MAX_DEPTH} levels")
    if isinstance(obj, Mapping):
        for v in obj.values():
            if isinstance(v, (Mapping, list)):
                _check_depth(v, depth + 1)
    elif isinstance(obj, list) and obj and isinstance(obj[0], (Mapping, list)):
        for v in obj:
            _check_depth(v, depth + 1)


def load_body(body: bytes, content_type: str | None) -> dict[str, Any]:
    """Parse a request body into a mapping (no validation of the fields yet)."""
    data = _loads(body, is_binary(content_type))
    if not isinstance(data, dict):
        raise WireError("body: must be an object (a map of field names)")
    _check_depth(data)
    return data


def decode_request(
    body: bytes | Mapping[str, Any], content_type: str | None = JSON
) -> tuple[Problem, SolveOptions, ConvexSolution | None]:
    """A request body -> (problem, options, warm start). Raises :class:`WireError`."""
    data = body if isinstance(body, Mapping) else load_body(body, content_type)
    unknown = sorted(str(k) for k in set(data) - set(REQUEST_KEYS))
    if unknown:
        raise WireError(
            f"body: unknown field(s) {', '.join(unknown)}; expected some of "
            f"{', '.join(REQUEST_KEYS)}"
        )
    fields: dict[str, Any] = {}
    for key, value in data.items():
        if key in ("options", "warm_start"):
            continue
        if key == "loss":
            if value is not None and not isinstance(value, str):
                raise WireError("loss: must be a string")
            fields[key] = value
        elif key in ("bias", "output_bias"):
            if value is not None and not isinstance(value, bool):
                raise WireError(f"{key}: must be true or false")
            fields[key] = value
        elif key == "patterns":
            fields[key] = None if value is None else _patterns_in(key, value)
        else:
            fields[key] = _value_in(key, value)
    if fields.get("loss") is None:
        fields.pop("loss", None)
    try:
        problem = problem_from_mapping(fields, source="body")
    except WireError:
        raise
    except ValueError as exc:
        raise WireError(str(exc)) from exc
    options = options_from_mapping(data.get("options"))
    warm = _warm_in(data.get("warm_start"), problem.n, problem.d)
    return problem, options, warm


def encode_request(
    problem: Problem,
    options: SolveOptions | None = None,
    warm_start: ConvexSolution | None = None,
    *,
    binary: bool = True,
) -> bytes:
    """The request body for ``problem`` (the inverse of :func:`decode_request`)."""
    out: dict[str, Any] = {
        "X": _array_out(problem.X, binary),
        "y": _array_out(problem.y, binary),
        "beta": problem.beta,
        "loss": problem.loss,
        "loss_scale": problem.loss_scale,
        "bias": problem.bias,
        "output_bias": problem.output_bias,
    }
    if problem.network is not None:
        for key, value in problem.network.arrays().items():
            out[key] = float(value) if key == "b2" else _array_out(value, binary)
    if problem.patterns is not None:
        out["patterns"] = _patterns_out(problem.patterns, binary)
    if options is not None:
        out["options"] = options_to_mapping(options)
    if warm_start is not None:
        out["warm_start"] = _solution_out(warm_start, binary)
    return _dumps(out, binary)


# ----------------------------------------------------------------------------- results


def _solution_out(sol: ConvexSolution, binary: bool) -> dict[str, Any]:
    return {
        "patterns": _patterns_out(sol.patterns, binary),
        "U": _array_out(sol.U, binary),
        "V": _array_out(sol.V, binary),
        "b": sol.b,
    }


def result_to_mapping(report: Report, *, binary: bool) -> dict[str, Any]:
    """``Report.to_dict()`` plus ``optimal_weights`` and ``solution`` (wire arrays)."""
    out = report.to_dict(include_weights=False)
    if report.optimal_network is not None:
        out["optimal_weights"] = {
            k: (float(v) if k == "b2" else _array_out(v, binary))
            for k, v in report.optimal_network.arrays().items()
        }
    if report.solution is not None:
        out["solution"] = _solution_out(report.solution, binary)
    return out


def encode_result(report: Report, *, binary: bool) -> bytes:
    return _dumps(result_to_mapping(report, binary=binary), binary)


def decode_result(body: bytes | Mapping[str, Any], content_type: str | None = JSON) -> Report:
    """A result body (or its parsed mapping) -> :class:`Report` with weights and solution."""
    data = dict(body) if isinstance(body, Mapping) else load_body(body, content_type)
    weights = data.pop("optimal_weights", None)
    sol = data.pop("solution", None)
    network = None
    if weights is not None:
        arrays = {
            k: (v if k == "b2" else np.asarray(_value_in(f"optimal_weights.{k}", v), float))
            for k, v in weights.items()
        }
        network = Network(
            W1=arrays["W1"], w2=arrays["w2"], b1=arrays.get("b1"), b2=arrays.get("b2")
        )
    solution = None
    if sol is not None:
        pats = _patterns_in("solution.patterns", sol["patterns"]).astype(bool)
        solution = ConvexSolution(
            pats,
            np.asarray(_value_in("solution.U", sol["U"]), float),
            np.asarray(_value_in("solution.V", sol["V"]), float),
            sol.get("b"),
        )
    return Report.from_dict(data, optimal_network=network, solution=solution)


def to_plain(obj: Any) -> Any:
    """A decoded binary structure with its arrays turned into lists (for JSON output)."""
    if isinstance(obj, Mapping):
        if set(obj) == {"dtype", "shape", "data"} and isinstance(obj.get("data"), bytes):
            return unpack_array("array", obj).tolist()
        if set(obj) == {"packed", "shape"} and isinstance(obj.get("packed"), bytes):
            return pt.unpack(obj["packed"], tuple(obj["shape"])).astype(np.uint8).tolist()
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_plain(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def transcode(body: bytes, *, to_binary: bool) -> bytes:
    """A binary (msgpack) body in the form asked for: itself, or the same content as JSON."""
    if to_binary:
        return body
    return _dumps(to_plain(msgpack.unpackb(body, raw=False)), False)


def dumps(obj: Any, binary: bool) -> bytes:
    """Serialize plain data (already wire arrays) in either form."""
    return _dumps(obj if binary else to_plain(obj), binary)


def loads(body: bytes, content_type: str | None) -> Any:
    return _loads(body, is_binary(content_type))
