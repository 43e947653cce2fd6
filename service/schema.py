"""JSON Schemas of the wire format, for the OpenAPI document (``/openapi.json``).

The server validates bodies with :mod:`lightning_relucvx.wire` (which also reads msgpack);
these schemas describe the JSON form for readers and for schema-driven tests.
"""

from __future__ import annotations

from typing import Any

from lightning_relucvx.core import DEVICE_SYNTAX, PATTERNS_SYNTAX
from lightning_relucvx.solvers import SOLVERS

_NUM = {"type": "number"}
_VEC = {"type": "array", "items": _NUM, "minItems": 1}
_MAT = {"type": "array", "items": _VEC, "minItems": 1}
_BITS = {"type": "array", "items": {"type": "array", "items": {"type": "integer", "enum": [0, 1]}}}

OPTIONS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "description": "lightning_relucvx.SolveOptions",
    "properties": {
        "patterns": {
            "type": "string",
            "pattern": PATTERNS_SYNTAX,
            "default": "auto",
        },
        "solver": {
            "type": "string",
            "enum": ["auto", *SOLVERS],
            "default": "auto",
        },
        "eps": {"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 1, "default": 1e-6},
        "linear_solver": {"type": "string", "default": "auto"},
        "cvxpy_solver": {"type": "string", "default": "CLARABEL"},
        "device": {
            "type": "string",
            "pattern": DEVICE_SYNTAX,
            "default": "auto",
            "description": "torch device of the firstorder solver",
        },
        "seed": {"type": "integer", "default": 0},
        "time_limit": {
            "type": ["number", "null"],
            "exclusiveMinimum": 0,
            "description": "seconds; capped by the server's max_time_limit",
        },
        "max_enumerate": {"type": "integer", "minimum": 1, "default": 20000},
        "lower_bound": {"type": "string", "enum": ["auto", "exact", "bound"]},
        "prune": {"type": "boolean", "default": True},
    },
}

WARM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["patterns", "U", "V"],
    "properties": {"patterns": _BITS, "U": _MAT, "V": _MAT, "b": {"type": ["number", "null"]}},
}

REQUEST_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["X", "y", "beta"],
    "description": "Same names as the CLI's npz files. X (n, d), y (n,), beta > 0; "
    "optionally a network W1 (m, d), b1 (m,), w2 (m,), b2, and patterns (P, n) of 0/1.",
    "properties": {
        "X": _MAT,
        "y": _VEC,
        "beta": {"type": "number", "exclusiveMinimum": 0},
        "W1": _MAT,
        "b1": _VEC,
        "w2": _VEC,
        "b2": {"type": "number"},
        "patterns": _BITS,
        "loss": {"type": "string", "enum": ["squared", "logistic", "hinge"]},
        "loss_scale": {"type": "number", "exclusiveMinimum": 0},
        "bias": {"type": "boolean"},
        "output_bias": {"type": "boolean"},
        "options": OPTIONS_SCHEMA,
        "warm_start": WARM_SCHEMA,
    },
}

RESULT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "The keys of `relucvx solve`'s JSON (Report.to_dict) plus optimal_weights "
    "(W1, b1, w2, b2) and solution (patterns, U, V, b: the pruned convex solution).",
    "required": ["status", "convex_objective", "lower_bound", "upper_bound"],
    "properties": {
        "status": {"type": "string"},
        "convex_objective": _NUM,
        "upper_bound": _NUM,
        "lower_bound": _NUM,
        "lower_bound_certified": {"type": "boolean"},
        "num_patterns": {"type": "integer"},
        "num_neurons": {"type": "integer"},
        "optimal_weights": {"type": "object"},
        "solution": {"type": "object"},
    },
}

JOB_STATUS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["id", "status"],
    "properties": {
        "id": {"type": "string"},
        "status": {"type": "string", "enum": ["queued", "running", "done", "failed", "cancelled"]},
        "created": _NUM,
        "updated": _NUM,
        "attempts": {"type": "integer"},
        "error": {"type": ["object", "null"]},
        "result": {"anyOf": [RESULT_SCHEMA, {"type": "null"}]},
    },
}
