"""Helpers for the STACKL tests: STACKL core's invocation and its enqueue-and-await, a stack
instance's service entry, the worker under test."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import Any

from arq import create_pool
from arq.connections import RedisSettings
from redis_server import RedisServer
from stackl_standin import StacklStandIn

from runner_agent.model.agents import AgentRegistry
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


def entry(target: str, params: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A service entry of a stack instance (``StackInstanceService``)."""
    return {
        "infrastructure_target": target,
        "provisioning_parameters": params,
        "cloud_provider": "generic",
        "secrets": {},
        "hosts": [],
        "resources": {},
        "service": "web",
        "agent": "gitlab-agents",
        "opa_outputs": {},
        "outputs": {},
        "tags": {},
        **extra,
    }


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
