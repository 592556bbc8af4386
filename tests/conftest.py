"""Shared fixtures: a real etcd server on 127.0.0.1 for the whole session; a run context on
the test agents whose temporary folders land where a test can see them."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from endpoints import EtcdPrefix, start_etcd

from runner_agent.model.agents import AgentRegistry, default_registry
from runner_agent.model.state import LocalStateStore
from runner_agent.run.runtime import RunContext

FIXTURE_AGENTS = Path(__file__).resolve().parent / "fixtures" / "agents"


@pytest.fixture(scope="session")
def etcd_server() -> Iterator[str]:
    """The client URL of an etcd started for this test session (stopped at its end)."""
    server = start_etcd()
    try:
        yield server.endpoint
    finally:
        server.stop()


@pytest.fixture
def etcd(etcd_server: str) -> Iterator[EtcdPrefix]:
    """A unique, empty prefix in the session's etcd; its keys are deleted after the test."""
    corner = EtcdPrefix(etcd_server)
    try:
        yield corner
    finally:
        corner.clear()


@pytest.fixture
def registry() -> AgentRegistry:
    return default_registry([FIXTURE_AGENTS])


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Temporary folders of the run land here, so tests can see that none is left."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    yield root


@pytest.fixture
def ctx(registry: AgentRegistry, tmp_path: Path, private_tmp: Path) -> RunContext:
    lines: list[str] = []
    context = RunContext(
        registry=registry,
        store=LocalStateStore(tmp_path / "state"),
        environ={"RA_SECRET_CANARY": "canary-Zq9-s3cr3t"},
        on_output=lines.append,
    )
    context.lines = lines  # type: ignore[attr-defined]
    return context
