"""Isolation and load: a killed worker, a solve past its hard deadline and a full queue
each fail that request only; the server answers the next one."""

from __future__ import annotations

import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import psutil
import pytest
from servers import solver_service
from svc_helpers import healthy, instance

from lightning_relucvx import SolveOptions, solve, wire
from lightning_relucvx.client import HTTPSolver

BIN = {"Content-Type": wire.MSGPACK}


def _workers(proc) -> list[psutil.Process]:
    out = []
    for child in psutil.Process(proc.pid).children(recursive=True):
        cmd = " ".join(child.cmdline())
        if "spawn_main" in cmd and "resource_tracker" not in cmd:
            out.append(child)
    return out


def _busy(http) -> float:
    for line in http.get("/metrics").text.splitlines():
        if line.startswith("relucvx_workers_busy "):
            return float(line.split()[1])
    return 0.0


@pytest.mark.slow
def test_worker_killed_mid_solve(service, http, url):
    _, proc = service
    deadline = time.monotonic() + 120
    while _busy(http) > 0:  # earlier tests' solves finish first
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert len(_workers(proc)) == 2
    long = wire.encode_request(instance(400, 10, 30, seed=11), SolveOptions(prune=False, eps=1e-9))
    answer = {}

    def post():
        answer["resp"] = http.post("/v1/solve", content=long, headers=BIN, timeout=300)

    thread = threading.Thread(target=post)
    thread.start()
    deadline = time.monotonic() + 60
    while _busy(http) < 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.5)
    for worker in _workers(proc):
        worker.send_signal(signal.SIGKILL)
    thread.join(120)
    resp = answer["resp"]
    assert resp.status_code == 500
    assert "worker process died while solving" in resp.json()["detail"]
    assert healthy(url)
    small = instance(40, 4, 6, seed=12)
    again = http.post("/v1/solve", content=wire.encode_request(small), headers=BIN)
    assert again.status_code == 200
    assert wire.decode_result(again.content, wire.MSGPACK).convex_objective == (
        solve(small).convex_objective
    )
    deadline = time.monotonic() + 60
    while httpx.get(f"{url}/readyz").json()["workers_alive"] < 2:
        assert time.monotonic() < deadline, "dead workers were not replaced"
        time.sleep(0.2)
    assert len(_workers(proc)) == 2


@pytest.fixture(scope="module")
def small_url(tmp_path_factory):
    """One worker, one waiting place, no grace after the time limit."""
    env = {"RELUCVX_KILL_GRACE": "0", "RELUCVX_MAX_TIME_LIMIT": "30"}
    with solver_service(
        tmp_path_factory.mktemp("small"), "--workers", "1", "--queue-size", "1", env=env
    ) as url:
        yield url


@pytest.mark.slow
def test_solve_past_its_hard_deadline_is_stopped(small_url):
    body = wire.encode_request(instance(400, 10, 30, seed=3), SolveOptions(time_limit=0.01))
    resp = httpx.post(f"{small_url}/v1/solve", content=body, headers=BIN, timeout=120)
    assert resp.status_code == 504
    assert "was stopped" in resp.json()["detail"]
    assert healthy(small_url)
    small = instance(40, 4, 6, seed=4)
    ok = httpx.post(f"{small_url}/v1/solve", content=wire.encode_request(small), headers=BIN)
    assert ok.status_code == 200, ok.text


@pytest.mark.slow
def test_many_clients_against_a_bounded_queue(small_url):
    problem = instance(300, 6, 12, seed=5)
    body = wire.encode_request(problem, SolveOptions(prune=False))
    expected = solve(problem, SolveOptions(prune=False)).convex_objective

    def post(_):
        return httpx.post(f"{small_url}/v1/solve", content=body, headers=BIN, timeout=300)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(post, range(8)))
    codes = sorted(a.status_code for a in answers)
    assert set(codes) <= {200, 429}, codes
    assert codes.count(200) >= 2 and codes.count(429) >= 1, codes
    for a in answers:
        if a.status_code == 429:
            assert int(a.headers["retry-after"]) >= 1
            assert "retry later" in a.json()["detail"]
        else:
            assert wire.decode_result(a.content, wire.MSGPACK).convex_objective == expected
    assert healthy(small_url)

    client = HTTPSolver(small_url, retries=30, backoff=0.2, max_backoff=2.0)
    try:
        futures = [client.submit(problem, SolveOptions(prune=False)) for _ in range(4)]
        assert [f.result(300).convex_objective for f in futures] == [expected] * 4
    finally:
        client.close()
