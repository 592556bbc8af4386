"""STACKL's side, for real: a redis-server with a password, a STACKL REST stand-in on
STACKL's client models, and the agents the worker may run."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from redis_server import RedisServer, start_redis
from stackl_helpers import FIXTURE_AGENTS
from stackl_standin import StacklStandIn, serve_stackl

from runner_agent.model.agents import AgentRegistry, default_registry


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = start_redis()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def queue() -> str:
    """The service's ``agent`` in the stack instance: the arq queue, unique per test."""
    return f"gitlab-agents-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def stackl() -> Iterator[StacklStandIn]:
    standin = StacklStandIn()
    with serve_stackl(standin):
        yield standin


@pytest.fixture(scope="session")
def registry() -> AgentRegistry:
    return default_registry([FIXTURE_AGENTS])
