"""The real service over HTTP: same answers as in-process, both wire forms, jobs,
idempotency, info, metrics and the OpenAPI document."""

from __future__ import annotations

import re
import threading
import time
import uuid

import cases
import httpx
import msgpack
import numpy as np
import pytest
from svc_helpers import API_KEY, instance

from lightning_relucvx import SolveOptions, solve, wire
from lightning_relucvx.client import HTTPSolver, SolverClient, SolverRejected


@pytest.fixture
def client(url):
    c = HTTPSolver(url, api_key=API_KEY, retries=2, backoff=0.2)
    yield c
    c.close()


def test_http_solve_equals_in_process(client):
    problem = cases.case_b()
    opts = SolveOptions(patterns="all")
    assert isinstance(client, SolverClient)
    remote = client.solve(problem, opts)
    local = solve(problem, opts)
    assert remote.convex_objective == pytest.approx(cases.CASE_B_OPT, abs=1e-4)
    assert remote.convex_objective == local.convex_objective
    assert remote.lower_bound == local.lower_bound
    assert remote.lower_bound_certified and remote.status == local.status
    np.testing.assert_array_equal(remote.optimal_network.W1, local.optimal_network.W1)
    np.testing.assert_array_equal(remote.optimal_network.w2, local.optimal_network.w2)
    np.testing.assert_array_equal(remote.solution.U, local.solution.U)


def test_submit_returns_a_future_with_the_report(client):
    futures = [client.submit(instance(40, 4, 6, seed=s)) for s in range(3)]
    for s, fut in enumerate(futures):
        report = fut.result(timeout=120)
        assert report.ok
        assert report.convex_objective == solve(instance(40, 4, 6, seed=s)).convex_objective


def test_json_and_binary_agree(http):
    problem = instance(50, 4, 6, network=True)
    opts = SolveOptions(patterns="sample:10")
    out = {}
    for binary in (False, True):
        ctype = wire.media_type(binary)
        resp = http.post(
            "/v1/solve",
            content=wire.encode_request(problem, opts, binary=binary),
            headers={"Content-Type": ctype},
        )
        assert resp.status_code == 200, resp.text
        assert resp.headers["content-type"] == ctype
        out[binary] = wire.decode_result(resp.content, ctype)
    a, b = out[False], out[True]
    assert a.to_dict() | {"solve_seconds": 0} == b.to_dict() | {"solve_seconds": 0}
    np.testing.assert_array_equal(a.optimal_network.W1, b.optimal_network.W1)
    assert a.local_gap is not None and a.local_gap >= -1e-6


def test_accept_header_picks_the_answer_form(http):
    body = wire.encode_request(cases.case_a(), SolveOptions(patterns="all"), binary=False)
    resp = http.post(
        "/v1/solve",
        content=body,
        headers={"Content-Type": wire.JSON, "Accept": wire.MSGPACK},
    )
    assert resp.headers["content-type"] == wire.MSGPACK
    result = msgpack.unpackb(resp.content)
    assert result["convex_objective"] == pytest.approx(cases.CASE_A_OPT, abs=1e-5)
    assert set(result["optimal_weights"]["W1"]) == {"dtype", "shape", "data"}


def test_curl_style_json_uses_the_cli_names(http):
    body = {"X": [[-1.0], [1.0]], "y": [1.0, 0.5], "beta": 0.1, "options": {"patterns": "all"}}
    resp = http.post("/v1/solve", json=body)
    assert resp.status_code == 200, resp.text
    result = resp.json()
    expected = solve(cases.case_a(), SolveOptions(patterns="all")).to_dict()
    assert set(expected) <= set(result)
    assert result["convex_objective"] == pytest.approx(cases.CASE_A_OPT, abs=1e-5)
    assert set(result["optimal_weights"]) == {"W1", "w2"}


def test_time_limit_stops_the_solve_and_says_so(http):
    problem = instance(400, 10, 30)
    body = wire.encode_request(problem, SolveOptions(time_limit=0.5, prune=False))
    resp = http.post("/v1/solve", content=body, headers={"Content-Type": wire.MSGPACK})
    assert resp.status_code == 200, resp.text
    assert msgpack.unpackb(resp.content)["status"] == "time_limit"


def test_the_first_order_solver_over_http(client, http):
    problem = cases.case_c()
    opts = SolveOptions(solver="firstorder", device="cpu", eps=1e-4, patterns="sample:20")
    remote = client.solve(problem, opts)
    local = solve(problem, opts)
    assert remote.solver == local.solver == "firstorder-torch-cpu"
    assert remote.ok and remote.duality_gap <= 1e-4 * remote.convex_objective
    slack = remote.duality_gap + local.duality_gap
    assert abs(remote.convex_objective - local.convex_objective) <= slack
    body = {"X": [[-1.0], [1.0]], "y": [1.0, 0.5], "beta": 0.1}
    resp = http.post(
        "/v1/solve", json={**body, "options": {"solver": "firstorder", "device": "gpu0"}}
    )
    assert resp.status_code == 422, resp.text
    assert "device" in resp.text
    import torch

    if not torch.cuda.is_available():  # well formed, but this service has no GPU: said so
        opts = {"solver": "firstorder", "device": "cuda"}
        resp = http.post("/v1/solve", json={**body, "options": opts})
        assert resp.status_code == 422, resp.text
        assert "no GPU" in resp.text


def _solves(http) -> float:
    text = http.get("/metrics").text
    return sum(float(v) for v in re.findall(r"^relucvx_solves_total\{[^}]*\} (\S+)$", text, re.M))


def test_idempotent_retry_is_not_solved_twice(http):
    body = wire.encode_request(instance(40, 4, 5, seed=7), binary=True)
    headers = {"Content-Type": wire.MSGPACK, "Idempotency-Key": uuid.uuid4().hex}
    before = _solves(http)
    first = http.post("/v1/solve", content=body, headers=headers)
    again = http.post("/v1/solve", content=body, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.content == first.content
    assert _solves(http) == before + 1
    other = http.post(
        "/v1/solve", content=body + b"", headers=headers | {"Content-Type": wire.JSON}
    )
    assert other.status_code == 422 and "Idempotency-Key" in other.json()["detail"]


def test_concurrent_retries_with_one_key_share_one_solve(url, http):
    body = wire.encode_request(instance(300, 6, 12, seed=8), SolveOptions(prune=False))
    headers = {"Content-Type": wire.MSGPACK, "Idempotency-Key": uuid.uuid4().hex}
    before = _solves(http)
    answers = []

    def post():
        with httpx.Client(base_url=url, headers={"X-API-Key": API_KEY}, timeout=300) as c:
            answers.append(c.post("/v1/solve", content=body, headers=headers))

    threads = [threading.Thread(target=post) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert len({a.content for a in answers}) == 1
    assert _solves(http) == before + 1


def test_jobs_lifecycle(http):
    problem = instance(40, 4, 6, seed=5)
    body = wire.encode_request(problem, binary=True)
    resp = http.post("/v1/jobs", content=body, headers={"Content-Type": wire.MSGPACK})
    assert resp.status_code == 202, resp.text
    location = resp.headers["location"]
    assert location == f"/v1/jobs/{resp.json()['id']}"
    deadline = time.monotonic() + 120
    while True:
        status = http.get(location).json()
        if status["status"] in ("done", "failed") or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert status["status"] == "done", status
    report = wire.decode_result(status["result"], wire.JSON)
    assert report.convex_objective == solve(problem).convex_objective
    binary = http.get(location, headers={"Accept": wire.MSGPACK})
    assert msgpack.unpackb(binary.content)["result"]["convex_objective"] == report.convex_objective
    assert http.delete(location).json() == {"id": resp.json()["id"], "status": "deleted"}
    assert http.get(location).status_code == 404
    assert http.delete(location).status_code == 404


def test_job_idempotency_and_cancel(http):
    body = wire.encode_request(instance(400, 10, 30, seed=2), SolveOptions(prune=False))
    headers = {"Content-Type": wire.MSGPACK, "Idempotency-Key": uuid.uuid4().hex}
    first = http.post("/v1/jobs", content=body, headers=headers)
    again = http.post("/v1/jobs", content=body, headers=headers)
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    location = first.headers["location"]
    deadline = time.monotonic() + 60
    while http.get(location).json()["status"] != "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert http.delete(location).json()["status"] == "cancelled"
    assert http.get(location).json()["status"] == "cancelled"
    # the solve (over a minute on its own) is stopped: its worker is free again soon
    deadline = time.monotonic() + 20
    while _busy(http) > 0:
        assert time.monotonic() < deadline, "the cancelled job's worker is still busy"
        time.sleep(0.2)
    assert http.get(location).json()["status"] == "cancelled"


def _busy(http) -> float:
    for line in http.get("/metrics").text.splitlines():
        if line.startswith("relucvx_workers_busy "):
            return float(line.split()[1])
    return 0.0


def test_info_reports_versions_solvers_gpu_and_limits(http):
    info = http.get("/v1/info").json()
    import scs

    assert info["scs_version"] == scs.__version__
    assert "qdldl" in info["linear_solvers"]
    assert info["gpu"]["present"] is False and info["gpu"]["used"] is False
    import torch

    assert info["firstorder_device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    assert info["limits"]["max_n"] == 3000 and info["auth"] is True


def test_health_ready_metrics_openapi(url, http):
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    ready = httpx.get(f"{url}/readyz").json()
    assert ready["ready"] and ready["workers_alive"] == 2
    http.post("/v1/solve", json={"X": [[1.0]], "y": [1.0], "beta": -1})
    text = httpx.get(f"{url}/metrics").text
    for name in (
        'relucvx_requests_total{method="POST",route="/v1/solve",status="422"}',
        "relucvx_solve_seconds_bucket",
        'relucvx_queue_depth{queue="sync"}',
        'relucvx_failures_total{reason="invalid"}',
    ):
        assert name in text
    doc = httpx.get(f"{url}/openapi.json").json()
    assert {"/v1/solve", "/v1/jobs", "/v1/jobs/{job_id}", "/v1/info"} <= set(doc["paths"])
    body = doc["paths"]["/v1/solve"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "application/msgpack"}
    schema = body["application/json"]["schema"]
    assert schema["required"] == ["X", "y", "beta"]
    assert {"W1", "patterns", "options", "warm_start"} <= set(schema["properties"])


def test_client_rejection_carries_the_server_message(client):
    bad = instance(40, 4, 5).with_patterns(None)
    with pytest.raises(SolverRejected, match=r"\(422\).*limit max_p=400"):
        client.solve(bad, SolveOptions(patterns="sample:5000"))


def test_client_says_when_the_service_is_unreachable():
    from servers import free_port

    from lightning_relucvx.client import SolverUnreachable

    client = HTTPSolver(f"http://127.0.0.1:{free_port()}", retries=2, backoff=0.01)
    with pytest.raises(SolverUnreachable, match="unreachable after 3 attempt"):
        client.solve(cases.case_a())
    client.close()


def test_client_says_when_it_timed_out(url):
    from lightning_relucvx.client import SolverTimedOut

    client = HTTPSolver(url, api_key=API_KEY, timeout=0.5, retries=0)
    slow = instance(300, 6, 12, seed=13)
    with pytest.raises(SolverTimedOut, match=r"no answer from .* within 0\.5 s"):
        client.solve(slow, SolveOptions(prune=False, time_limit=1.0))
    client.close()
