"""A bounded schemathesis run against the service's OpenAPI document: no generated request
(valid or not, JSON bodies, paths, headers) may get a 5xx, and the server stays up."""

from __future__ import annotations

import shutil
import subprocess
import sys

import httpx
import pytest
from svc_helpers import API_KEY, healthy


@pytest.mark.slow
def test_schemathesis_finds_no_server_error(url, tmp_path):
    exe = shutil.which("schemathesis")
    cmd = [exe] if exe else [sys.executable, "-m", "schemathesis.cli"]
    cmd += [
        "run",
        f"{url}/openapi.json",
        "-H",
        f"Authorization: Bearer {API_KEY}",
        "--checks",
        "not_a_server_error",
        "--phases",
        "coverage,fuzzing",
        "--max-examples",
        "10",
        "--seed",
        "1",
        "--no-shrink",
        "--request-timeout",
        "60",
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "passed" in out.stdout
    assert healthy(url)
    assert httpx.get(f"{url}/readyz").json()["ready"]
