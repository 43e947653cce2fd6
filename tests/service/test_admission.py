"""Admission: every bad input gets the right 4xx with a message, and the server stays up."""

from __future__ import annotations

import httpx
import msgpack
import numpy as np
import pytest
from svc_helpers import API_KEY, healthy, instance

from lightning_relucvx import SolveOptions, wire

GOOD = {"X": [[-1.0], [1.0]], "y": [1.0, 0.5], "beta": 0.1}
JSON = {"Content-Type": wire.JSON}
BIN = {"Content-Type": wire.MSGPACK}


def _array(arr, dtype=None):
    out = wire.pack_array(np.asarray(arr))
    if dtype:
        out["dtype"] = dtype
    return out


CASES = [
    ("malformed JSON", b'{"X": [[1.0], [2.0]', JSON, 400, "not valid JSON"),
    ("malformed msgpack", b"\xc1\x00\xff", BIN, 400, "not valid msgpack"),
    ("not an object", b"[1, 2, 3]", JSON, 422, "must be an object"),
    ("wrong media type", b"X=1", {"Content-Type": "text/plain"}, 415, "not supported"),
    ("string entries", {**GOOD, "y": ["a", "b"]}, JSON, 422, "y: must contain numbers"),
    ("ragged X", {**GOOD, "X": [[1.0], [1.0, 2.0]]}, JSON, 422, "X: not a rectangular"),
    ("3-D X", {**GOOD, "X": [[[1.0]], [[2.0]]]}, JSON, 422, "X: must be 2-D"),
    ("y length", {**GOOD, "y": [1.0]}, JSON, 422, "y: has 1 entries but X has 2 rows"),
    ("NaN", b'{"X": [[NaN], [1.0]], "y": [1.0, 0.5], "beta": 0.1}', JSON, 422, "X: contains 1 NaN"),
    ("Infinity", b'{"X": [[1.0], [1.0]], "y": [1.0, 0.5], "beta": Infinity}', JSON, 422, "beta"),
    ("negative beta", {**GOOD, "beta": -1.0}, JSON, 422, "beta: must be > 0"),
    ("unknown field", {**GOOD, "Xx": 1}, JSON, 422, "unknown field(s) Xx"),
    ("unknown option", {**GOOD, "options": {"fast": True}}, JSON, 422, "options: unknown"),
    ("bad option type", {**GOOD, "options": {"eps": "1e-3"}}, JSON, 422, "options.eps: must be"),
    ("bad pattern mode", {**GOOD, "options": {"patterns": "many"}}, JSON, 422, "patterns: must"),
    ("unknown loss", {**GOOD, "loss": "l1"}, JSON, 422, "loss: must be one of"),
    (
        "pattern width",
        {**GOOD, "patterns": [[1, 0, 1]]},
        JSON,
        422,
        "patterns: must have n=2 columns",
    ),
    ("pattern values", {**GOOD, "patterns": [[1, 2]]}, JSON, 422, "patterns: entries must be 0"),
    ("W1 width", {**GOOD, "W1": [[1.0, 2.0]], "w2": [1.0]}, JSON, 422, "W1: has 2 columns"),
    (
        "object dtype",
        {**GOOD, "X": _array([[1.0], [2.0]], "|O")},
        BIN,
        422,
        "dtype '|O' refused",
    ),
    (
        "big-endian dtype",
        {**GOOD, "X": _array([[1.0], [2.0]], ">f8")},
        BIN,
        422,
        "dtype '>f8' refused",
    ),
    (
        "binary shape mismatch",
        {**GOOD, "X": {**_array([[1.0], [2.0]]), "shape": [2, 2]}},
        BIN,
        422,
        "do not match shape",
    ),
    (
        "packed patterns width",
        {**GOOD, "patterns": {"packed": b"\x80\x80", "shape": [2, 9]}},
        BIN,
        422,
        "patterns",
    ),
    ("n beyond the limit", None, BIN, 422, "exceeds the limit max_n=3000"),
    ("patterns beyond the limit", None, BIN, 422, "more than the limit max_p=400"),
]


def _body(name, fields, headers):
    if name == "n beyond the limit":
        p = instance(3001, 2, 1)
        return wire.encode_request(p, SolveOptions(), binary=True)
    if name == "patterns beyond the limit":
        p = instance(20, 4, 3)
        return wire.encode_request(p, SolveOptions(patterns="sample:401"), binary=True)
    if isinstance(fields, bytes):
        return fields
    if headers is BIN:
        return msgpack.packb(fields, use_bin_type=True)
    import json

    return json.dumps(fields).encode()


@pytest.mark.parametrize(
    ("name", "fields", "headers", "status", "message"), CASES, ids=[c[0] for c in CASES]
)
def test_bad_input_gets_4xx_with_a_message(http, url, name, fields, headers, status, message):
    resp = http.post("/v1/solve", content=_body(name, fields, headers), headers=headers)
    assert resp.status_code == status, resp.text
    assert message in resp.json()["detail"]
    assert healthy(url)


def test_jobs_refuse_bad_input_too(http):
    resp = http.post("/v1/jobs", json={**GOOD, "y": [1.0]})
    assert resp.status_code == 422 and "y: has 1 entries" in resp.json()["detail"]


def test_oversize_body_is_413(http, url):
    big = b'{"X": [' + b"[1.0]," * 250_000 + b'[1.0]], "y": [1.0], "beta": 0.1}'
    assert len(big) > 1_000_000
    resp = http.post("/v1/solve", content=big, headers=JSON)
    assert resp.status_code == 413
    assert "exceeds the limit of 1000000 bytes" in resp.json()["detail"]

    def chunks():  # no Content-Length: the limit holds while reading
        for _ in range(30):
            yield b" " * 50_000

    resp = http.post("/v1/solve", content=chunks(), headers=JSON)
    assert resp.status_code == 413
    assert healthy(url)


def test_auth(url):
    body = {"X": [[-1.0], [1.0]], "y": [1.0, 0.5], "beta": 0.1, "options": {"patterns": "all"}}
    assert httpx.post(f"{url}/v1/solve", json=body).status_code == 401
    wrong = httpx.post(f"{url}/v1/solve", json=body, headers={"X-API-Key": API_KEY + "x"})
    assert wrong.status_code == 401 and "API key" in wrong.json()["detail"]
    assert wrong.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{url}/v1/info", headers={"Authorization": "Bearer nope"}).status_code == 401
    for headers in ({"X-API-Key": API_KEY}, {"Authorization": f"Bearer {API_KEY}"}):
        assert httpx.post(f"{url}/v1/solve", json=body, headers=headers).status_code == 200
    assert httpx.get(f"{url}/healthz").status_code == 200
    assert httpx.get(f"{url}/metrics").status_code == 200
