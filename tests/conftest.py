"""Shared fixtures: real server processes (see ``servers.py``). Test helpers live in plain
modules beside this file (``cases.py``, ``servers.py``), importable from every test folder."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from servers import mlflow_server


@pytest.fixture(scope="session")
def mlflow_uri(tmp_path_factory) -> str:
    """A real ``mlflow server`` process with a SQLite backend, shared by the session."""
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as uri:
        yield uri
