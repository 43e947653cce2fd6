"""Replicas sharing job state in a real ``redis-server``: a job submitted to one replica is
polled through another, and survives the death of the replica that took it."""

from __future__ import annotations

import os
import shutil
import signal
import time

import httpx
import pytest
from servers import redis_server, solver_service, solver_service_process
from svc_helpers import instance

from lightning_relucvx import SolveOptions, solve, wire

pytestmark = pytest.mark.skipif(
    shutil.which("redis-server") is None and not os.environ.get("RELUCVX_REQUIRE_REDIS"),
    reason="redis-server is not installed (set RELUCVX_REQUIRE_REDIS=1 to make this an error)",
)
BIN = {"Content-Type": wire.MSGPACK}


def _poll(url: str, location: str, until: tuple[str, ...], timeout: float = 180) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        status = httpx.get(f"{url}{location}", timeout=30).json()
        if status["status"] in until:
            return status
        assert time.monotonic() < deadline, status
        time.sleep(0.2)


@pytest.mark.slow
def test_jobs_survive_their_replica_and_are_polled_through_another(tmp_path):
    with redis_server(tmp_path / "redis") as redis_url:
        env = {"RELUCVX_REDIS_URL": redis_url, "RELUCVX_JOB_LEASE": "2"}
        # replica A takes a long job and dies while solving it
        slow = instance(300, 6, 12, seed=22)
        opts = SolveOptions(prune=False)
        with solver_service_process(tmp_path / "a", "--workers", "1", env=env) as (a, proc_a):
            assert httpx.get(f"{a}/v1/info").json()["job_store"] == "redis"
            body = wire.encode_request(slow, opts)
            resp = httpx.post(f"{a}/v1/jobs", content=body, headers=BIN)
            assert resp.status_code == 202
            location = resp.headers["location"]
            _poll(a, location, ("running",))
            os.killpg(proc_a.pid, signal.SIGKILL)
            proc_a.wait(30)
        # replica B, started afterwards, answers the poll and finishes the job
        with solver_service(tmp_path / "b", "--workers", "1", env=env) as b:
            done = _poll(b, location, ("done", "failed"))
            assert done["status"] == "done", done
            assert done["attempts"] == 2
            report = wire.decode_result(done["result"], wire.JSON)
            assert report.convex_objective == solve(slow, opts).convex_objective

            # A restarted: a job submitted to it is polled through B
            with solver_service(tmp_path / "a2", "--workers", "1", env=env) as a2:
                problem = instance(40, 4, 6, seed=21)
                resp = httpx.post(
                    f"{a2}/v1/jobs", content=wire.encode_request(problem), headers=BIN
                )
                assert resp.status_code == 202
                done = _poll(b, resp.headers["location"], ("done", "failed"))
                assert done["status"] == "done", done
                report = wire.decode_result(done["result"], wire.JSON)
                assert report.convex_objective == solve(problem).convex_objective
                assert httpx.delete(f"{b}{resp.headers['location']}").status_code == 200
                assert httpx.get(f"{a2}{resp.headers['location']}").status_code == 404
