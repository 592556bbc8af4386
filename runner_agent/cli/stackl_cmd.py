"""``stackl serve``: the arq worker STACKL core queues a service's invocations to; and the
STACKL side of ``dispatch --from-stackl``."""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import click
import yaml

from runner_agent.cli._common import agents_path_option, print_json, remember_secrets
from runner_agent.core.errors import InvalidInput, Problem
from runner_agent.model.agents import default_registry
from runner_agent.model.state import default_state_dir
from runner_agent.model.tasks import MAX_TIMEOUT, Task


@click.group()
def stackl() -> None:
    """Serve STACKL: run the functional requirements STACKL core queues to an agent."""


@stackl.command()
@click.option(
    "--queue",
    required=True,
    envvar="RUNNER_AGENT_STACKL_QUEUE",
    help="The arq queue: the name STACKL's stack instance gives as the service's agent.",
)
@click.option(
    "--redis",
    "redis_url",
    required=True,
    envvar="RUNNER_AGENT_REDIS_URL",
    help="STACKL's Redis: redis://[:password@]host:port[/db] (rediss:// for TLS). "
    "[env: RUNNER_AGENT_REDIS_URL; password also from REDIS_PASSWORD]",
)
@click.option(
    "--stackl",
    "stackl_url",
    required=True,
    envvar="STACKL_HOST",
    help="STACKL core's REST API, such as http://stackl-core:8080. [env: STACKL_HOST; "
    "a bearer token from RUNNER_AGENT_STACKL_TOKEN]",
)
@click.option("--max-jobs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option(
    "--job-timeout",
    type=click.IntRange(min=1, max=MAX_TIMEOUT),
    default=3660,
    show_default=True,
    help="Seconds one invocation may take; then it is FAILED 'timeout in invoked job'.",
)
@click.option("--burst", is_flag=True, help="Take the jobs queued now, then exit.")
@click.option(
    "--grace",
    type=click.IntRange(min=0),
    default=30,
    show_default=True,
    help="On SIGTERM: seconds running jobs may finish before they go back to the queue.",
)
@click.option("--local", is_flag=True, help="Run the tasks here instead of dispatching them.")
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="RUNNER_AGENT_STATE_DIR",
    help="With --local: where state documents are kept. [env: RUNNER_AGENT_STATE_DIR]",
)
@click.option("--project", "-p", envvar="RUNNER_AGENT_PROJECT", help="The agent project.")
@click.option("--gitlab-config-section", "section", envvar="RUNNER_AGENT_GITLAB_SECTION")
@click.option("--ref", envvar="RUNNER_AGENT_REF", help="Branch or tag of the agent project.")
@click.option("--interval", type=click.FloatRange(min=1), default=10, show_default=True)
@click.option("--tag", "tags", multiple=True, help="Runner tag for the jobs. Repeatable.")
@agents_path_option
def serve(
    queue: str,
    redis_url: str,
    stackl_url: str,
    max_jobs: int,
    job_timeout: int,
    burst: bool,
    grace: int,
    local: bool,
    state_dir: Path | None,
    project: str | None,
    section: str | None,
    ref: str | None,
    interval: float,
    tags: tuple[str, ...],
    agents_path: tuple[Path, ...],
) -> int:
    """Take STACKL's invoke_automation jobs from QUEUE and answer each with READY or FAILED.

    Each invocation's task runs as a pipeline of the agent project (GitLab from GITLAB_URL
    and GITLAB_TOKEN or --gitlab-config-section, project from --project), or here with
    --local. Outputs go to STACKL's /outputs. SIGTERM: no new job; running ones get --grace
    seconds, then go back to the queue, where a retry follows the same pipeline.

    \b
    Example:
      runner-agent stackl serve --queue gitlab-agents --redis redis://:pw@redis:6379 \\
        --stackl http://stackl-core:8080 -p acme/agents
    """
    try:
        from runner_agent.stackl import worker as worker_module
    except ImportError as exc:  # arq is the optional extra [stackl]
        raise InvalidInput(
            Problem("stackl serve", f"needs arq: pip install 'runner-agent[stackl]' ({exc})")
        ) from None
    from runner_agent.stackl import client, handler

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    registry = default_registry(agents_path)
    stopping = worker_module.Stopping()
    backend: handler.Backend
    if local:
        backend = handler.LocalBackend(registry, state_dir or default_state_dir())
    else:
        from runner_agent.gitlab.dispatch import from_environ

        dispatcher = from_environ(
            os.environ, project=project, section=section, sleep=stopping.sleep
        )
        remember_secrets(list(dispatcher.api.secrets))
        backend = handler.GitLabBackend(dispatcher, ref=ref, interval=interval)
    service = worker_module.Service(
        stackl=client.StacklClient.from_environ(stackl_url),
        backend=backend,
        registry=registry,
        job_timeout=float(job_timeout),
        tags=tags,
    )
    settings = worker_module.redis_settings(redis_url)

    async def run() -> None:
        worker = worker_module.build_worker(
            service,
            queue=queue,
            redis=settings,
            max_jobs=max_jobs,
            burst=burst,
            grace=grace,
            stopping=stopping,
        )
        await worker_module.serve(worker)

    asyncio.run(run())
    return 0


# --- dispatch --from-stackl (the command lives in dispatch_cmd) ------------------------------


@dataclass(frozen=True)
class FromStackl:
    """``dispatch --from-stackl``: the invocation, STACKL's client, the task and what the
    task's config left out."""

    invocation: Any
    stackl: Any
    tasks: list[Task]
    ignored: tuple[str, ...]


def invocation_tasks(
    path: Path, stackl_url: str | None, agents_path: tuple[Path, ...], timeout: float | None
) -> FromStackl:
    """The invocation in ``path`` and its task built from the stack instance STACKL holds.
    Raises InvalidInput naming the file or the field; StacklError."""
    from runner_agent.stackl import client, handler

    try:
        invocation = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError, yaml.YAMLError) as exc:
        raise InvalidInput(Problem(str(path), f"not a readable invocation: {exc}")) from None
    if not stackl_url:
        raise InvalidInput(
            Problem(
                "--stackl", "STACKL's URL is needed to read the stack instance (or STACKL_HOST)"
            )
        )
    stackl = client.StacklClient.from_environ(stackl_url)
    try:
        _, mapped = asyncio.run(
            handler.prepare(
                invocation, stackl=stackl, registry=default_registry(agents_path), timeout=timeout
            )
        )
    except InvalidInput as exc:
        raise InvalidInput([replace(p, source=str(path)) for p in exc.problems]) from None
    return FromStackl(invocation, stackl, [mapped.task], mapped.ignored)


def answer(dispatcher: Any, handle: Any, asked: FromStackl, output: str) -> int:
    """STACKL's result for a finished dispatch (outputs sent to STACKL first), printed."""
    from runner_agent.stackl import result as results

    invocation, stackl = asked.invocation, asked.stackl
    report = next(iter(dispatcher.reports(handle).reports), None)
    if report is None:
        answered = results.failed_result(invocation, "the run returned no report")
    else:
        answered = results.report_to_result(report, invocation, asked.ignored)
        sends = report.outputs and invocation.get("action") != "delete"
        if answered["status"] == results.READY and sends:
            stackl.add_outputs(results.report_to_outputs(report, invocation))
    if output == "json":
        print_json(answered)
    else:
        click.echo(f"{answered['status']} {answered['error_message']}".rstrip())
    return 0 if answered["status"] == results.READY else 1
