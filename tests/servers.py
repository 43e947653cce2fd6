"""Real server processes for tests: an ``mlflow server`` (SQLite backend) and the solver
service (``relucvx serve``), each started as its own process on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(
    url: str, proc: subprocess.Popen, timeout: float = 60.0, log: Path | None = None
) -> None:
    """Wait until ``url`` answers 200, failing early if the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            text = log.read_text() if log and log.exists() else ""
            raise RuntimeError(f"process exited with {proc.returncode} before {url} was up\n{text}")
        try:
            if httpx.get(url, timeout=2.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    text = log.read_text() if log and log.exists() else ""
    raise TimeoutError(f"{url} not up after {timeout} s\n{text}")


def stop(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    """Terminate a process group started by :func:`spawn`."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout)


def spawn(
    cmd: Sequence[str], log: Path, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.Popen:
    """Start ``cmd`` in its own process group, output to ``log``."""
    full_env = {**os.environ, **(env or {})}
    fh = open(log, "wb")  # noqa: SIM115 - handed to the child
    return subprocess.Popen(
        list(cmd),
        stdout=fh,
        stderr=subprocess.STDOUT,
        env=full_env,
        cwd=cwd,
        start_new_session=True,
    )


@contextlib.contextmanager
def mlflow_server(workdir: Path) -> Iterator[str]:
    """A real ``mlflow server`` with a SQLite backend in ``workdir``; yields its URI."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    exe = shutil.which("mlflow")
    cmd = [exe] if exe else [sys.executable, "-m", "mlflow"]
    cmd += [
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--backend-store-uri",
        f"sqlite:///{workdir / 'mlflow.db'}",
        "--artifacts-destination",
        str(workdir / "artifacts"),
        "--workers",
        "1",
    ]
    log = workdir / "mlflow-server.log"
    proc = spawn(cmd, log, cwd=workdir)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc, timeout=120, log=log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


@contextlib.contextmanager
def solver_service_process(
    workdir: Path, *args: str, env: dict[str, str] | None = None, port: int | None = None
) -> Iterator[tuple[str, subprocess.Popen]]:
    """The solver service as its own process (``relucvx serve``); yields (base URL, process).
    The process leads its own process group (its solver workers belong to it)."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    cmd = [
        sys.executable,
        "-m",
        "lightning_relucvx.cli",
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        *args,
    ]
    log = workdir / f"service-{port}.log"
    proc = spawn(cmd, log, env=env, cwd=workdir)
    try:
        wait_http(f"http://127.0.0.1:{port}/readyz", proc, timeout=180, log=log)
        yield f"http://127.0.0.1:{port}", proc
    finally:
        stop(proc)


@contextlib.contextmanager
def solver_service(
    workdir: Path, *args: str, env: dict[str, str] | None = None, port: int | None = None
) -> Iterator[str]:
    """The solver service as its own process (``relucvx serve``); yields its base URL."""
    with solver_service_process(workdir, *args, env=env, port=port) as (url, _proc):
        yield url


@contextlib.contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    """A real ``redis-server`` (no persistence) on 127.0.0.1; yields its ``redis://`` URL."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise FileNotFoundError("redis-server is not installed")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    cmd = [exe, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    cmd += ["--dir", str(workdir)]
    log = workdir / "redis.log"
    proc = spawn(cmd, log, cwd=workdir)
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"redis-server exited: {log.read_text()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"redis-server not up: {log.read_text()}")
            time.sleep(0.1)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop(proc)
