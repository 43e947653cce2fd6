"""The wire format (no server): both forms round-trip, refusals name the field."""

from __future__ import annotations

import json
import math

import cases
import msgpack
import numpy as np
import pytest
from svc_helpers import instance

from lightning_relucvx import SolveOptions, solve, wire
from lightning_relucvx.core import Report


@pytest.mark.parametrize("binary", [True, False])
def test_request_round_trip(binary):
    p = instance(30, 4, 5, network=True)
    opts = SolveOptions(patterns="sample:7", eps=1e-5, seed=3, time_limit=9.0)
    body = wire.encode_request(p, opts, binary=binary)
    q, o, warm = wire.decode_request(body, wire.media_type(binary))
    assert warm is None
    np.testing.assert_array_equal(q.X, p.X)
    np.testing.assert_array_equal(q.y, p.y)
    np.testing.assert_array_equal(q.patterns, p.patterns)
    np.testing.assert_array_equal(q.network.W1, p.network.W1)
    assert (q.beta, q.bias, q.loss) == (p.beta, p.bias, p.loss)
    assert o == opts


def test_binary_patterns_are_bit_packed_and_smaller():
    p = instance(200, 5, 40)
    data = msgpack.unpackb(wire.encode_request(p, binary=True))
    assert data["patterns"]["shape"] == list(p.patterns.shape)
    assert len(data["patterns"]["packed"]) == p.patterns.shape[0] * 25
    assert len(wire.encode_request(p, binary=True)) < len(wire.encode_request(p, binary=False))


@pytest.mark.parametrize("binary", [True, False])
def test_result_round_trip_rebuilds_the_report(binary):
    p = cases.case_b()
    report = solve(p, SolveOptions(patterns="all"))
    back = wire.decode_result(wire.encode_result(report, binary=binary), wire.media_type(binary))
    assert isinstance(back, Report)
    assert back.to_dict() == report.to_dict()
    np.testing.assert_array_equal(back.optimal_network.W1, report.optimal_network.W1)
    np.testing.assert_array_equal(back.solution.U, report.solution.U)
    assert back.convex_objective == pytest.approx(cases.CASE_B_OPT, abs=1e-4)


def test_transcoded_result_equals_json_result():
    report = solve(cases.case_a(), SolveOptions(patterns="all"))
    as_json = json.loads(wire.transcode(wire.encode_result(report, binary=True), to_binary=False))
    assert as_json == json.loads(wire.encode_result(report, binary=False))


def test_report_from_dict_restores_nan():
    report = solve(cases.case_a(), SolveOptions(patterns="all"))
    d = report.to_dict()
    d["duality_gap"] = None
    assert math.isnan(Report.from_dict(d).duality_gap)


def _binary(fields: dict) -> bytes:
    return msgpack.packb(fields, use_bin_type=True)


def test_object_dtype_is_refused():
    X = {"dtype": "|O", "shape": [2, 1], "data": b"\0" * 16}
    body = _binary({"X": X, "y": [1.0, 0.5], "beta": 0.1})
    with pytest.raises(wire.WireError, match=r"X: dtype '\|O' refused"):
        wire.decode_request(body, wire.MSGPACK)


def test_binary_array_with_wrong_byte_count_is_refused():
    X = wire.pack_array(np.zeros((2, 1)))
    X["shape"] = [3, 1]
    with pytest.raises(wire.WireError, match="X: 16 bytes do not match shape"):
        wire.decode_request(_binary({"X": X, "y": [1.0, 0.5], "beta": 0.1}), wire.MSGPACK)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"X": [[1.0], [2.0]], "y": [1.0, "a"], "beta": 0.1}, "y: must contain numbers"),
        ({"X": [[1.0], [2.0, 3.0]], "y": [1.0, 2.0], "beta": 0.1}, "X: not a rectangular"),
        ({"X": [[1.0], [2.0]], "y": [1.0], "beta": 0.1}, "y: has 1 entries"),
        ({"X": [[1.0], [2.0]], "y": [1.0, 2.0], "beta": 0.1, "z": 1}, "unknown field"),
        (
            {"X": [[1.0], [2.0]], "y": [1.0, 2.0], "beta": 0.1, "options": {"seed": "x"}},
            "options.seed: must be int",
        ),
        (
            {"X": [[1.0], [2.0]], "y": [1.0, 2.0], "beta": 0.1, "patterns": [[1, 0, 1]]},
            "patterns: must have n=2 columns",
        ),
    ],
)
def test_json_refusals_name_the_field(fields, message):
    with pytest.raises(wire.WireError, match=message):
        wire.decode_request(json.dumps(fields).encode(), wire.JSON)


def test_nan_is_refused():
    body = b'{"X": [[NaN], [1.0]], "y": [1.0, 0.5], "beta": 0.1}'
    with pytest.raises(wire.WireError, match="X: contains 1 NaN"):
        wire.decode_request(body, wire.JSON)


def test_malformed_bodies():
    with pytest.raises(wire.MalformedBody):
        wire.decode_request(b'{"X": [[1', wire.JSON)
    with pytest.raises(wire.MalformedBody):
        wire.decode_request(b"\xc1\xc1\xc1", wire.MSGPACK)
    with pytest.raises(wire.WireError, match="must be an object"):
        wire.decode_request(b"[1, 2]", wire.JSON)


def test_warm_start_of_the_wrong_width_is_refused():
    p = instance(30, 4, 5, network=True)
    warm = solve(p, SolveOptions(patterns="own")).solution
    body = json.loads(wire.encode_request(p, warm_start=warm, binary=False))
    d = p.d
    body["warm_start"]["U"] = [[*row, 0.0] for row in body["warm_start"]["U"]]
    with pytest.raises(wire.WireError, match=rf"warm_start\.U: must be \(P=\d+, d={d}\)"):
        wire.decode_request(json.dumps(body).encode(), wire.JSON)
