"""Solver clients behind one interface: in-process (default) and HTTP (the solver service).

Every client has ``solve(...) -> Report`` (blocking) and ``submit(...) -> Future[Report]``.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import sys
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Protocol, runtime_checkable

from .core import Report, SolveOptions, solve
from .problem import Problem
from .solvers import ConvexSolution

# thread-pool sizes of the numerical libraries a solver process loads (read at their import)
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "RAYON_NUM_THREADS",
)


@runtime_checkable
class SolverClient(Protocol):
    """What the callback needs from a solver."""

    name: str

    def solve(
        self,
        problem: Problem,
        options: SolveOptions | None = None,
        *,
        warm_start: ConvexSolution | None = None,
        timeout: float | None = None,
    ) -> Report: ...

    def submit(
        self,
        problem: Problem,
        options: SolveOptions | None = None,
        *,
        warm_start: ConvexSolution | None = None,
        timeout: float | None = None,
    ) -> Future[Report]: ...

    def info(self) -> dict[str, Any]: ...

    def close(self) -> None: ...


class _BackgroundSubmit:
    """``submit`` for clients whose ``solve`` blocks: the call runs on ``self._pool``."""

    _pool: ThreadPoolExecutor

    def submit(
        self,
        problem: Problem,
        options: SolveOptions | None = None,
        *,
        warm_start: ConvexSolution | None = None,
        timeout: float | None = None,
    ) -> Future[Report]:
        """Start ``solve`` in the background; the future holds its Report or its error."""
        return self._pool.submit(
            self.solve, problem, options, warm_start=warm_start, timeout=timeout
        )


class InProcessSolver(_BackgroundSubmit):
    """Solves on this machine, without a service.

    ``processes=True`` (the default) runs the solves in persistent child processes at a lower
    CPU priority (``nice``), so that the solver's Python work never competes with the
    training loop for the GIL and the OS favours training when cores are scarce.
    ``processes=False`` solves on a thread of this process (SCS itself releases the GIL).

    ``threads`` caps the BLAS/OpenMP/Rayon threads of each solver process (default: half the
    cores, at least one). A solver whose threads outnumber the cores training leaves free
    is slowed several-fold: at a lower priority, its threads wait for each other behind the
    training loop (10.6 s per snapshot against 3.3 s with one thread, on 2 cores).
    """

    name = "in-process"

    def __init__(
        self,
        max_workers: int = 1,
        *,
        processes: bool = True,
        nice: int = 10,
        threads: int | None = None,
    ) -> None:
        self.processes = processes
        self.nice = nice
        self.threads = threads or max(1, (os.cpu_count() or 2) // 2)
        self.max_workers = max_workers
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="relucvx-solve")
        self._idle: list[_SolverProcess] = []
        self._all: list[_SolverProcess] = []
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the solver processes now (they start at the first solve otherwise)."""
        if not self.processes:
            return
        with self._lock:
            while len(self._all) < self.max_workers:
                proc = _SolverProcess(self.nice, self.threads)
                self._all.append(proc)
                self._idle.append(proc)

    def solve(
        self,
        problem: Problem,
        options: SolveOptions | None = None,
        *,
        warm_start: ConvexSolution | None = None,
        timeout: float | None = None,
    ) -> Report:
        options = (options or SolveOptions()).within(timeout)
        if not self.processes:
            return solve(problem, options, warm_start=warm_start)
        with self._lock:
            proc = self._idle.pop() if self._idle else None
            if proc is None:
                proc = _SolverProcess(self.nice, self.threads)
                self._all.append(proc)
        try:
            return proc.call(problem, options, warm_start)
        finally:
            with self._lock:
                if proc.alive:
                    self._idle.append(proc)
                else:
                    self._all.remove(proc)

    def info(self) -> dict[str, Any]:
        from . import __version__
        from .solvers import available_linear_solvers, gpu_linear_solver

        return {
            "client": self.name,
            "version": __version__,
            "linear_solvers": list(available_linear_solvers()),
            "gpu": gpu_linear_solver(),
        }

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            procs, self._all, self._idle = self._all, [], []
        for proc in procs:
            proc.stop()


class _SolverProcess:
    """One persistent ``lightning_relucvx.solve_worker`` child and its pipes."""

    def __init__(self, nice: int, threads: int) -> None:
        caps = dict.fromkeys(THREAD_VARIABLES, str(threads))
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "lightning_relucvx.solve_worker", str(nice)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, **caps},
        )

    @property
    def alive(self) -> bool:
        return self._proc.poll() is None

    def call(self, problem: Problem, options: SolveOptions, warm: ConvexSolution | None) -> Report:
        from .solve_worker import read_frame, write_frame

        assert self._proc.stdin is not None and self._proc.stdout is not None
        try:
            write_frame(self._proc.stdin, pickle.dumps((problem, options, warm)))
            frame = read_frame(self._proc.stdout)
        except (BrokenPipeError, OSError):
            frame = None
        if frame is None:
            self.stop()
            raise RuntimeError(
                f"the solver process exited (code {self._proc.returncode}) during the solve"
            )
        kind, value = pickle.loads(frame)  # our own child's answer
        if kind == "error":
            raise value
        return value

    def stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()
        self._proc.wait()
        for stream in (self._proc.stdin, self._proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


class SolverServiceError(RuntimeError):
    """The solver service failed to answer (base class of the client's errors)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class SolverUnreachable(SolverServiceError, ConnectionError):
    """The service could not be reached (after the retries)."""


class SolverRejected(SolverServiceError, ValueError):
    """The service refused the request (4xx): bad input, a limit, auth; carries its message."""


class SolverTimedOut(SolverServiceError, TimeoutError):
    """No answer in time: the client's timeout ran out or the service stopped the solve."""


_RETRY_STATUS = (429, 500, 502, 503)


class HTTPSolver(_BackgroundSubmit):
    """Solves on the solver service (``relucvx serve``) over HTTP.

    ``binary`` (default) sends msgpack, else JSON. Connection errors, 5xx (except 504) and
    429 are retried ``retries`` times with exponential backoff (``Retry-After`` honoured);
    every attempt of one call carries the same ``Idempotency-Key``, so a retried request is
    not solved twice. ``timeout`` (seconds) bounds each HTTP exchange; a per-call
    ``timeout`` also becomes the solve's time limit.
    """

    name = "http"

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        binary: bool = True,
        timeout: float = 600.0,
        connect_timeout: float = 5.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        max_workers: int = 4,
    ) -> None:
        import httpx

        self.url = url.rstrip("/")
        self.binary = binary
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        headers = {"User-Agent": "lightning-relucvx"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.Client(
            base_url=self.url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
        )
        self._pool = ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="relucvx-http")

    # ------------------------------------------------------------------ transport
    def _request(
        self,
        method: str,
        path: str,
        *,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ):
        import httpx

        attempt = 0
        while True:
            try:
                resp = self._http.request(
                    method,
                    path,
                    content=content,
                    headers=headers,
                    timeout=httpx.Timeout(timeout or self.timeout, connect=self.connect_timeout),
                )
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError) as exc:
                if attempt >= self.retries:
                    raise SolverUnreachable(
                        f"solver service at {self.url} unreachable after "
                        f"{attempt + 1} attempt(s): {exc}"
                    ) from exc
                self._sleep(attempt, None)
                attempt += 1
                continue
            except httpx.TimeoutException as exc:
                raise SolverTimedOut(
                    f"no answer from {self.url}{path} within {timeout or self.timeout:.1f} s"
                ) from exc
            if resp.status_code in _RETRY_STATUS and attempt < self.retries:
                self._sleep(attempt, resp.headers.get("retry-after"))
                attempt += 1
                continue
            return resp

    def _sleep(self, attempt: int, retry_after: str | None) -> None:
        delay = min(self.backoff * 2**attempt, self.max_backoff)
        if retry_after:
            with contextlib.suppress(ValueError):
                delay = min(max(delay, float(retry_after)), self.max_backoff)
        time.sleep(delay)

    @staticmethod
    def _message(resp) -> str:
        try:
            data = resp.json()
            return str(data.get("detail", data))
        except Exception:
            return resp.text[:500] or resp.reason_phrase

    def _check(self, resp, what: str) -> None:
        if resp.status_code < 400:
            return
        msg = self._message(resp)
        code = resp.status_code
        if code == 504:
            raise SolverTimedOut(f"{what}: the service stopped the solve: {msg}", code)
        if 400 <= code < 500:
            raise SolverRejected(f"{what} rejected ({code}): {msg}", code)
        raise SolverServiceError(f"{what} failed ({code}): {msg}", code)

    # ------------------------------------------------------------------ SolverClient
    def solve(
        self,
        problem: Problem,
        options: SolveOptions | None = None,
        *,
        warm_start: ConvexSolution | None = None,
        timeout: float | None = None,
        idempotency_key: str | None = None,
    ) -> Report:
        import uuid

        from . import wire

        options = (options or SolveOptions()).within(timeout)
        body = wire.encode_request(problem, options, warm_start, binary=self.binary)
        ctype = wire.media_type(self.binary)
        headers = {
            "Content-Type": ctype,
            "Accept": ctype,
            "Idempotency-Key": idempotency_key or uuid.uuid4().hex,
        }
        # the HTTP wait covers the solve plus transfer; the server stops it at time_limit
        http_timeout = None if timeout is None else timeout * 1.5 + 30.0
        resp = self._request(
            "POST", "/v1/solve", content=body, headers=headers, timeout=http_timeout
        )
        self._check(resp, "solve")
        return wire.decode_result(resp.content, resp.headers.get("content-type"))

    def info(self) -> dict[str, Any]:
        resp = self._request("GET", "/v1/info")
        self._check(resp, "info")
        return {"client": self.name, "url": self.url, **resp.json()}

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._http.close()
