"""STACKL's side, for real: a redis-server with a password, arq enqueuing exactly as STACKL
core does, a STACKL REST stand-in on STACKL's client models, and the worker under test."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Awaitable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from arq import create_pool
from arq.connections import RedisSettings
from redis_server import RedisServer, start_redis
from stackl_standin import StacklStandIn, serve_stackl

from runner_agent.model.agents import AgentRegistry, default_registry
from runner_agent.stackl.client import StacklClient
from runner_agent.stackl.handler import Backend, LocalBackend
from runner_agent.stackl.worker import Service, build_worker, redis_settings, serve

FIXTURE_AGENTS = Path(__file__).resolve().parent.parent / "fixtures" / "agents"
CORE_TIMEOUT = 7200  # what STACKL core gives job.result()


def core_invocation(
    action: str,
    functional_requirement: str,
    stack_instance: str,
    service: str,
    target: str,
    hosts: list[str] | None = None,
    ansible_role: str | None = None,
) -> dict[str, Any]:
    """The dict ``create_service`` in ``stackl/core/core/agent_broker/agent_task_broker.py``
    builds for an Ansible functional requirement, key by key and in its order."""
    invoc: dict[str, Any] = {}
    invoc["action"] = action
    invoc["functional_requirement"] = functional_requirement
    invoc["image"] = "stacklio/stackl-ansible:latest"
    invoc["before_command"] = None
    invoc["infrastructure_target"] = target
    invoc["stack_instance"] = stack_instance
    invoc["tool"] = "ansible"
    if ansible_role:
        invoc["ansible_role"] = ansible_role
    invoc["gather_facts"] = True
    invoc["service"] = service
    invoc["hosts"] = hosts if hosts is not None else []
    return invoc


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


async def stackl_core(
    redis: RedisServer, queue: str, invocations: Sequence[dict[str, Any]], *others: Awaitable[Any]
) -> list[Any]:
    """What STACKL core does per functional requirement: enqueue on the agent's queue with
    arq, then await ``job.result(timeout=7200)``, while ``others`` (a worker) run; the results
    in the order enqueued."""
    pool = await create_pool(
        RedisSettings(host="127.0.0.1", port=redis.port, password=redis.password)
    )
    try:
        jobs = [
            await pool.enqueue_job("invoke_automation", invoc, _queue_name=queue)
            for invoc in invocations
        ]
        waits = [job.result(timeout=CORE_TIMEOUT) for job in jobs if job is not None]
        done = await asyncio.gather(*waits, *others)
        return list(done[: len(waits)])
    finally:
        await pool.aclose()


def local_service(
    stackl: StacklStandIn, registry: AgentRegistry, state_dir: Path, job_timeout: float = 300
) -> Service:
    backend: Backend = LocalBackend(registry, state_dir)
    return Service(
        stackl=StacklClient(stackl.base),
        backend=backend,
        registry=registry,
        job_timeout=job_timeout,
    )


async def core_and_worker(
    redis: RedisServer,
    queue: str,
    service: Service,
    invocations: Sequence[dict[str, Any]],
    max_jobs: int = 10,
) -> list[Any]:
    """Enqueue as STACKL core does while a burst worker takes the jobs; the results."""
    worker = build_worker(
        service,
        queue=queue,
        redis=redis_settings(redis.url),
        max_jobs=max_jobs,
        burst=True,
        handle_signals=False,
        poll_delay=0.1,
    )
    return await stackl_core(redis, queue, invocations, serve(worker))
