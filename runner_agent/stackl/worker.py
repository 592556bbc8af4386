"""The arq worker STACKL core queues to, unchanged.

STACKL core enqueues ``redis.enqueue_job("invoke_automation", invoc, _queue_name=service.agent)``
and awaits ``job.result(timeout=7200)`` (``stackl/core/core/agent_broker/agent_task_broker.py``);
STACKL's own agent is an arq worker with ``functions = [invoke_automation]``, ``queue_name`` =
the agent's name, ``job_timeout``, ``max_jobs`` and ``RedisSettings(host, port, password)``
(``stackl/agent/agent/main.py``). This is the same worker, with :func:`handle_invocation` as
``invoke_automation``: its result is always a value (READY or FAILED), never an exception,
because an exception would reach core's ``job.result()`` and break its status update.

Stopping (SIGTERM, Ctrl-C): the worker takes no new job, lets running jobs finish for ``grace``
seconds, then hands those still running back to the queue (arq's retry of a cancelled job).
A retry derives the same dispatch id from the arq job id, finds the pipeline its first try
started and follows it: no second pipeline. A job that keeps being interrupted gets a FAILED
result after :data:`MAX_TRIES` tries instead of arq's exception.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from arq.connections import RedisSettings
from arq.worker import Worker, func
from redis.exceptions import RedisError

from runner_agent.core.errors import InvalidInput, Problem, RunnerAgentError
from runner_agent.model.agents import AgentRegistry
from runner_agent.stackl.client import StacklClient, safe_url
from runner_agent.stackl.handler import DEADLINE_SLACK, Backend, handle_invocation
from runner_agent.stackl.result import failed_result

__all__ = [
    "FUNCTION",
    "MAX_TRIES",
    "RedisUnreachable",
    "Service",
    "Stopping",
    "WorkerStopping",
    "build_worker",
    "invoke_automation",
    "redis_settings",
    "serve",
]

log = logging.getLogger("runner_agent.stackl")

FUNCTION = "invoke_automation"  # the name STACKL core enqueues
MAX_TRIES = 5  # arq's default; the try after them answers FAILED instead of raising
PASSWORD_ENV = "REDIS_PASSWORD"  # STACKL's agent reads its Redis password from it (config.py)
CA_ENV = "RUNNER_AGENT_REDIS_CA_CERTS"


class RedisUnreachable(RunnerAgentError):
    """STACKL's Redis could not be reached."""

    exit_code = 4


class WorkerStopping(RunnerAgentError):
    """The worker is stopping: a wait in a thread gives up."""


@dataclass
class Stopping:
    """Set when the worker stops; a thread's pause between polls ends with WorkerStopping."""

    event: threading.Event = field(default_factory=threading.Event)

    def sleep(self, seconds: float) -> None:
        if self.event.wait(seconds):
            raise WorkerStopping("the worker is stopping")


@dataclass
class Service:
    """What every job of the worker shares."""

    stackl: StacklClient
    backend: Backend
    registry: AgentRegistry
    job_timeout: float
    tags: Sequence[str] = ()


def redis_settings(url: str, environ: Mapping[str, str] | None = None) -> RedisSettings:
    """arq's settings for ``redis://[:password@]host[:port][/db]`` (``rediss://`` for TLS); the
    password from ``REDIS_PASSWORD`` when the URL has none, a CA bundle from
    ``RUNNER_AGENT_REDIS_CA_CERTS``. Raises InvalidInput naming --redis."""
    env = os.environ if environ is None else environ
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise InvalidInput(Problem("--redis", "expected redis://, rediss:// or unix://"))
    try:
        settings = RedisSettings.from_dsn(url)
    except (ValueError, TypeError, RuntimeError) as exc:
        raise InvalidInput(Problem("--redis", f"not a Redis URL: {exc}")) from None
    if settings.password is None and env.get(PASSWORD_ENV):
        settings.password = env[PASSWORD_ENV]
    if env.get(CA_ENV):
        settings.ssl_ca_certs = env[CA_ENV]
    settings.conn_retries = 3
    return settings


async def invoke_automation(ctx: dict[str, Any], invoc: Any) -> dict[str, Any]:
    """The job STACKL core enqueues: the invocation in, STACKL's result out."""
    service: Service = ctx["service"]
    job_id = str(ctx.get("job_id", ""))
    if int(ctx.get("job_try", 1)) > MAX_TRIES:
        return failed_result(
            invoc, f"gave up after {MAX_TRIES} tries: the worker running it stopped each time"
        )
    return await handle_invocation(
        invoc,
        stackl=service.stackl,
        backend=service.backend,
        registry=service.registry,
        job_id=job_id or None,
        timeout=service.job_timeout,
        tags=service.tags,
    )


def build_worker(
    service: Service,
    *,
    queue: str,
    redis: RedisSettings,
    max_jobs: int = 10,
    burst: bool = False,
    grace: int = 30,
    handle_signals: bool = True,
    stopping: Stopping | None = None,
    poll_delay: float = 0.5,
) -> Worker:
    """The arq worker for ``queue``: STACKL's agent's settings, and ``invoke_automation``."""
    function = func(
        invoke_automation,
        name=FUNCTION,
        max_tries=MAX_TRIES + 1,
        # past the job's own deadline and its slack: arq's timeout would be an exception
        timeout=service.job_timeout + 2 * DEADLINE_SLACK,
    )
    worker = Worker(
        functions=[function],
        queue_name=queue,
        redis_settings=redis,
        burst=burst,
        max_jobs=max_jobs,
        job_timeout=service.job_timeout + 2 * DEADLINE_SLACK,
        handle_signals=handle_signals,
        job_completion_wait=grace,
        ctx={"service": service},
        poll_delay=poll_delay,
        max_tries=MAX_TRIES + 1,
    )
    if stopping is not None:
        worker.on_stop = lambda _signum: stopping.event.set()
    return worker


async def serve(worker: Worker) -> None:
    """Run the worker until it is stopped (or, in burst mode, until the queue is empty)."""
    redis = worker.redis_settings
    where = f"{redis.host}:{redis.port}" if redis else "redis"
    log.info("serving queue %r on %s", worker.queue_name, safe_url(f"redis://{where}"))
    try:
        await worker.async_run()
    except (OSError, RedisError) as exc:
        raise RedisUnreachable(f"Redis at {where}: {type(exc).__name__}: {exc}") from None
    except asyncio.CancelledError:
        # a stop signal cancelled the worker's main task; the handlers are done with it
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
    finally:
        await worker.close()
    log.info(
        "stopped: %d complete, %d failed, %d handed back",
        worker.jobs_complete,
        worker.jobs_failed,
        worker.jobs_retried,
    )
