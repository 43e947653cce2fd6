"""What the solver service adds on top of the solve: per-request overhead, payload sizes and
throughput with concurrent small solves.

    python benchmarks/service_overhead.py                    # M: n=1000, d=20, P=50
    python benchmarks/service_overhead.py --n 300 --d 8 --P 20
    python benchmarks/service_overhead.py --url http://host:8000 --api-key KEY

Starts ``relucvx serve`` on 127.0.0.1 (``--workers`` solver processes) unless ``--url`` is
given. The instance: Gaussian X (n, d) and y, P patterns of Gaussian directions,
``beta = 0.1 max_i ||X^T D_i y||``. Overhead = client wall time minus the solve time the
server's core reports (``solve_seconds``): HTTP, encoding, admission and worker hand-off.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from lightning_relucvx import SolveOptions, solve, wire
from lightning_relucvx import patterns as pt
from lightning_relucvx.client import HTTPSolver
from lightning_relucvx.problem import Problem


def instance(n: int, d: int, P: int, seed: int = 0) -> Problem:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = rng.standard_normal(n)
    pats = pt.unique(pt.sample(X, P, seed))
    beta = 0.1 * float(np.max(np.linalg.norm((pats * y) @ X, axis=1)))
    return Problem.create(X, y, beta, bias=False, patterns=pats)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_service(workers: int, log: Path) -> tuple[str, subprocess.Popen]:
    port = _free_port()
    cmd = [sys.executable, "-m", "lightning_relucvx.cli", "serve", "--port", str(port)]
    cmd += ["--workers", str(workers), "--queue-size", "64"]
    proc = subprocess.Popen(
        cmd, stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"service exited: {log.read_text()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return url, proc
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError("service did not start")


def _timed(fn, repeat: int = 5) -> float:
    """Median seconds of ``fn()``."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def overhead(url: str, api_key: str | None, problem: Problem, opts: SolveOptions) -> dict:
    out: dict = {"n": problem.n, "d": problem.d, "P": int(problem.patterns.shape[0])}
    t0 = time.perf_counter()
    local = solve(problem, opts)
    out["in_process_seconds"] = time.perf_counter() - t0
    out["status"] = local.status
    for binary in (True, False):
        tag = "binary" if binary else "json"
        req = wire.encode_request(problem, opts, binary=binary)
        res = wire.encode_result(local, binary=binary)
        out[f"{tag}_request_bytes"] = len(req)
        out[f"{tag}_result_bytes"] = len(res)
        out[f"{tag}_encode_request_seconds"] = _timed(
            lambda b=binary: wire.encode_request(problem, opts, binary=b)
        )
        out[f"{tag}_decode_request_seconds"] = _timed(
            lambda r=req, b=binary: wire.decode_request(r, wire.media_type(b))
        )
        out[f"{tag}_decode_result_seconds"] = _timed(
            lambda r=res, b=binary: wire.decode_result(r, wire.media_type(b))
        )
        client = HTTPSolver(url, api_key=api_key, binary=binary, retries=0)
        t0 = time.perf_counter()
        remote = client.solve(problem, opts)
        wall = time.perf_counter() - t0
        client.close()
        if opts.time_limit is None:
            assert remote.convex_objective == local.convex_objective, (tag, remote, local)
        out[f"{tag}_http_seconds"] = wall
        out[f"{tag}_server_solve_seconds"] = remote.solve_seconds
        out[f"{tag}_overhead_seconds"] = wall - remote.solve_seconds
    return out


def throughput(
    url: str, api_key: str | None, problem: Problem, opts: SolveOptions, requests: int, clients: int
) -> dict:
    t0 = time.perf_counter()
    for _ in range(requests):
        solve(problem, opts)
    serial = time.perf_counter() - t0
    client = HTTPSolver(url, api_key=api_key, retries=20, backoff=0.05, max_workers=clients)
    client.solve(problem, opts)  # warm the connection pool and the workers
    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        reports = list(pool.map(lambda _: client.solve(problem, opts), range(requests)))
    wall = time.perf_counter() - t0
    client.close()
    assert all(r.ok for r in reports)
    return {
        "n": problem.n,
        "d": problem.d,
        "P": int(problem.patterns.shape[0]),
        "requests": requests,
        "clients": clients,
        "in_process_serial_per_second": requests / serial,
        "http_concurrent_per_second": requests / wall,
        "mean_server_solve_seconds": float(np.mean([r.solve_seconds for r in reports])),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--d", type=int, default=20)
    ap.add_argument("--P", type=int, default=50)
    ap.add_argument("--eps", type=float, default=1e-6)
    ap.add_argument("--no-prune", action="store_true", help="skip pruning (SolveOptions.prune)")
    ap.add_argument(
        "--time-limit",
        type=float,
        default=None,
        help="stop each solve after this many seconds (the payloads stay the same size)",
    )
    ap.add_argument("--skip-overhead", action="store_true")
    ap.add_argument("--small", default="60,4,8", help="n,d,P of the throughput instance")
    ap.add_argument("--requests", type=int, default=40)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--url", default=None)
    ap.add_argument("--api-key", default=os.environ.get("RELUCVX_API_KEY"))
    args = ap.parse_args(argv)

    proc = None
    url = args.url
    with tempfile.TemporaryDirectory() as tmp:
        if url is None:
            url, proc = start_service(args.workers, Path(tmp) / "service.log")
        try:
            opts = SolveOptions(eps=args.eps, prune=not args.no_prune, time_limit=args.time_limit)
            result: dict = {"url": url, "workers": args.workers, "options": opts.__dict__}
            if not args.skip_overhead:
                result["overhead"] = overhead(
                    url, args.api_key, instance(args.n, args.d, args.P), opts
                )
            n, d, P = (int(v) for v in args.small.split(","))
            result["throughput"] = throughput(
                url,
                args.api_key,
                instance(n, d, P, seed=1),
                SolveOptions(),
                args.requests,
                args.clients,
            )
        finally:
            if proc is not None:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(30)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
