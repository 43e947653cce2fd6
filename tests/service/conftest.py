"""Fixtures for the solver-service tests: a real ``relucvx serve`` process shared by the
session and an authenticated HTTP client for it."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))

from servers import solver_service_process
from svc_helpers import AUTH, MAIN_ENV


@pytest.fixture(scope="session")
def service(tmp_path_factory):
    """(base URL, process) of a real service: 2 workers, API key, small limits."""
    with solver_service_process(
        tmp_path_factory.mktemp("service"), "--workers", "2", env=MAIN_ENV
    ) as (url, proc):
        yield url, proc


@pytest.fixture(scope="session")
def url(service) -> str:
    return service[0]


@pytest.fixture
def http(url):
    with httpx.Client(base_url=url, headers=AUTH, timeout=120) as client:
        yield client
