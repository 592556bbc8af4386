"""The worker dispatching to GitLab (the fake GitLab of tests/gitlab, served on 127.0.0.1):
arq's retry of a job that was running follows the pipeline its first try started."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from arq import create_pool
from arq.connections import RedisSettings
from arq.jobs import JobStatus

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "gitlab"))

from fake_gitlab import CANARY_TOKEN, FakeGitLab, served
from redis_server import RedisServer
from stackl_helpers import core_and_worker, core_invocation, entry, stackl_core
from stackl_standin import StacklStandIn, stack_instance

from runner_agent.gitlab.api import connect
from runner_agent.gitlab.bundle import DISPATCH_PACKAGE, dump
from runner_agent.gitlab.dispatch import Dispatcher
from runner_agent.gitlab.inflight import MemoryLedger
from runner_agent.model.agents import AgentRegistry
from runner_agent.report.model import CommandResult, HostStats, Report, Status, merge_reports
from runner_agent.stackl.client import StacklClient
from runner_agent.stackl.handler import GitLabBackend
from runner_agent.stackl.worker import Service, Stopping, build_worker, redis_settings, serve


@pytest.fixture
def gitlab() -> Iterator[FakeGitLab]:
    fake = FakeGitLab()
    with served(fake):
        yield fake


def service(
    fake: FakeGitLab, stackl: StacklStandIn, registry: AgentRegistry, stopping: Stopping
) -> Service:
    """A worker's service on its own machine: its own dispatcher and in-flight ledger."""
    api = connect({"GITLAB_URL": fake.base, "GITLAB_TOKEN": CANARY_TOKEN}, project="42")
    dispatcher = Dispatcher(api=api, ledger=MemoryLedger(), sleep=stopping.sleep, settle=0.1)
    backend = GitLabBackend(dispatcher, ref="main", interval=0.2, max_interval=0.5)
    return Service(StacklClient(stackl.base), backend, registry, job_timeout=120)


async def until(condition: object, what: str) -> None:
    for _ in range(600):
        if callable(condition) and condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


def finish(fake: FakeGitLab, pipeline: dict[str, object], identity: str) -> None:
    """GitLab ends the pipeline: success, its summary in the package registry."""
    command = CommandResult("update", Status.SUCCESS, hosts={"web_0": HostStats(ok=1)})
    report = Report(identity, "kv_file", "1.0.0", Status.SUCCESS, [command])
    dispatch_id = str(pipeline["name"]).split()[1]
    fake.put_package(DISPATCH_PACKAGE, dispatch_id, "summary.json", dump(merge_reports([report])))
    fake.set_status(int(str(pipeline["id"])), "success")


def test_a_retried_job_follows_its_first_pipeline_and_dispatches_none(
    redis_server: RedisServer,
    queue: str,
    stackl: StacklStandIn,
    registry: AgentRegistry,
    gitlab: FakeGitLab,
    tmp_path: Path,
) -> None:
    params = {"path": str(tmp_path / "web.json"), "values": {"port": 80}}
    stackl.put(stack_instance("shop", {"web": [entry("dc1", params)]}))
    invoc = core_invocation("create", "kv_file", "shop", "web", "dc1")
    first_stop, second_stop = Stopping(), Stopping()
    settings = redis_settings(redis_server.url)

    async def workers() -> None:
        first = build_worker(
            service(gitlab, stackl, registry, first_stop),
            queue=queue,
            redis=settings,
            handle_signals=False,
            stopping=first_stop,
            poll_delay=0.1,
        )
        running = asyncio.create_task(serve(first))
        await until(gitlab.created_pipelines, "the first try dispatches")
        first.handle_sig(signal.SIGTERM)  # stopped while its job runs: arq hands it back
        await running
        (pipeline,) = gitlab.created_pipelines()
        finish(gitlab, pipeline, "shop/web/kv_file/dc1")
        second = build_worker(
            service(gitlab, stackl, registry, second_stop),
            queue=queue,
            redis=settings,
            handle_signals=False,
            burst=True,
            poll_delay=0.1,
        )
        await serve(second)

    (result,) = asyncio.run(stackl_core(redis_server, queue, [invoc], workers()))

    assert result == {**invoc, "status": "READY", "error_message": ""}
    (pipeline,) = gitlab.created_pipelines()
    assert str(pipeline["name"]).startswith("runner-agent stackl-")


def test_a_conflicting_invocation_in_flight_is_a_failed_locked_result(
    redis_server: RedisServer,
    queue: str,
    stackl: StacklStandIn,
    registry: AgentRegistry,
    gitlab: FakeGitLab,
    tmp_path: Path,
) -> None:
    params = {"path": str(tmp_path / "web.json"), "values": {"port": 80}}
    stackl.put(stack_instance("shop", {"web": [entry("dc1", params)]}))
    invocations = [
        core_invocation("create", "kv_file", "shop", "web", "dc1"),
        core_invocation("delete", "kv_file", "shop", "web", "dc1"),
    ]
    settings = redis_settings(redis_server.url)

    async def scenario() -> list[Any]:
        worker = build_worker(
            service(gitlab, stackl, registry, Stopping()),
            queue=queue,
            redis=settings,
            handle_signals=False,
            burst=True,
            poll_delay=0.1,
        )
        running = asyncio.create_task(serve(worker))
        redis = await create_pool(
            RedisSettings(host="127.0.0.1", port=redis_server.port, password=redis_server.password)
        )
        try:
            jobs = [
                await redis.enqueue_job("invoke_automation", invoc, _queue_name=queue)
                for invoc in invocations
            ]
            statuses: list[JobStatus] = []

            async def one_answered() -> bool:
                statuses[:] = [await job.status() for job in jobs if job is not None]
                return JobStatus.complete in statuses

            for _ in range(600):  # the refused one answers while the other's pipeline runs
                if await one_answered():
                    break
                await asyncio.sleep(0.05)
            (pipeline,) = gitlab.created_pipelines()
            identity = "shop/web/kv_file/dc1"
            finish(gitlab, pipeline, identity)
            results = [await job.result(timeout=60) for job in jobs if job is not None]
        finally:
            await redis.aclose()
        await running
        return results

    results = asyncio.run(scenario())

    locked = [r for r in results if r["status"] == "FAILED"]
    assert len(locked) == 1 and locked[0]["error_message"].startswith("locked: ")
    assert [r["status"] for r in results if r not in locked] == ["READY"]
    assert len(gitlab.created_pipelines()) == 1


def test_gitlab_refusing_the_pipeline_is_a_failed_result(
    redis_server: RedisServer,
    queue: str,
    stackl: StacklStandIn,
    registry: AgentRegistry,
    gitlab: FakeGitLab,
    tmp_path: Path,
) -> None:
    params = {"path": str(tmp_path / "web.json"), "values": {"port": 80}}
    stackl.put(stack_instance("shop", {"web": [entry("dc1", params)]}))
    invoc = core_invocation("create", "kv_file", "shop", "web", "dc1")
    gitlab.inject("POST", "create_pipeline", "403")
    worker_service = service(gitlab, stackl, registry, Stopping())

    (result,) = asyncio.run(core_and_worker(redis_server, queue, worker_service, [invoc]))

    assert result["status"] == "FAILED" and result["error_message"].startswith("GitLab: ")
    assert "403" in result["error_message"]
