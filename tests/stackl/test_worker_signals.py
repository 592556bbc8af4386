"""``runner-agent stackl serve`` as a process, stopped with SIGTERM while a job runs."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.jobs import Job, JobStatus
from redis_server import RedisServer
from stackl_helpers import (
    CORE_TIMEOUT,
    FIXTURE_AGENTS,
    core_and_worker,
    core_invocation,
    entry,
    local_service,
)
from stackl_standin import StacklStandIn, stack_instance

from runner_agent.model.agents import AgentRegistry


@pytest.fixture
def serve_process(
    redis_server: RedisServer, queue: str, stackl: StacklStandIn, tmp_path: Path
) -> Iterator[Any]:
    """Start ``runner-agent stackl serve --local`` with the given --grace; stopped at the end."""
    started: list[subprocess.Popen[bytes]] = []

    def start(grace: int) -> subprocess.Popen[bytes]:
        env = {**os.environ, "REDIS_PASSWORD": redis_server.password}  # STACKL agent's name
        command = [
            sys.executable,
            "-m",
            "runner_agent",
            "stackl",
            "serve",
            "--queue",
            queue,
            "--redis",
            f"redis://127.0.0.1:{redis_server.port}/0",
            "--stackl",
            stackl.base,
            "--local",
            "--state-dir",
            str(tmp_path / "state"),
            "--agents-path",
            str(FIXTURE_AGENTS),
            "--grace",
            str(grace),
        ]
        with (tmp_path / "worker.log").open("wb") as log:
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


async def pool(redis: RedisServer) -> ArqRedis:
    return await create_pool(
        RedisSettings(host="127.0.0.1", port=redis.port, password=redis.password)
    )


async def running(redis: ArqRedis, job: Job) -> None:
    for _ in range(1200):
        if await redis.exists(f"arq:in-progress:{job.job_id}"):
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the worker never started the job")


def exit_code(process: subprocess.Popen[bytes]) -> int:
    return process.wait(timeout=120)


def test_sigterm_lets_the_running_job_finish_and_takes_no_new_one(
    redis_server: RedisServer, queue: str, stackl: StacklStandIn, serve_process: Any
) -> None:
    stackl.put(stack_instance("shop", {"web": [entry("dc1", {"sleep": 3}), entry("dc2", {})]}))
    process = serve_process(grace=60)

    async def scenario() -> tuple[Any, JobStatus]:
        redis = await pool(redis_server)
        try:
            first = await redis.enqueue_job(
                "invoke_automation",
                core_invocation("create", "probe", "shop", "web", "dc1"),
                _queue_name=queue,
            )
            assert first is not None
            await running(redis, first)
            process.send_signal(signal.SIGTERM)
            await asyncio.sleep(1)  # the worker has had the signal: it picks no more jobs
            later = await redis.enqueue_job(
                "invoke_automation",
                core_invocation("create", "probe", "shop", "web", "dc2"),
                _queue_name=queue,
            )
            assert later is not None
            result = await first.result(timeout=CORE_TIMEOUT)
            await asyncio.to_thread(exit_code, process)
            return result, await later.status()
        finally:
            await redis.aclose()

    result, later_status = asyncio.run(scenario())

    assert result["status"] == "READY" and result["infrastructure_target"] == "dc1"
    assert process.returncode == 0
    assert later_status is JobStatus.queued


def test_a_job_still_running_after_the_grace_goes_back_to_the_queue_and_finishes_there(
    redis_server: RedisServer,
    queue: str,
    stackl: StacklStandIn,
    serve_process: Any,
    registry: AgentRegistry,
    tmp_path: Path,
) -> None:
    stackl.put(stack_instance("shop", {"web": [entry("dc1", {"sleep": 2})]}))
    process = serve_process(grace=0)
    invoc = core_invocation("create", "probe", "shop", "web", "dc1")

    async def scenario() -> tuple[Any, Any]:
        redis = await pool(redis_server)
        try:
            job = await redis.enqueue_job("invoke_automation", invoc, _queue_name=queue)
            assert job is not None
            await running(redis, job)
            process.send_signal(signal.SIGTERM)
            await asyncio.to_thread(exit_code, process)
            assert await job.status() is JobStatus.queued  # handed back, not lost
            service = local_service(stackl, registry, tmp_path / "state")
            await core_and_worker(redis_server, queue, service, [])
            return await job.result(timeout=CORE_TIMEOUT), await job.result_info()
        finally:
            await redis.aclose()

    result, info = asyncio.run(scenario())

    assert result == {**invoc, "status": "READY", "error_message": ""}
    assert info is not None and info.job_try == 2
    assert process.returncode == 0
