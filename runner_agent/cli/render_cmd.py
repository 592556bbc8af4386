"""``render``, ``plan`` and ``dotenv``: tasks into GitLab CI, and the job's outputs for GitLab."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar, cast

import click

from runner_agent.cli._common import (
    agents_path_option,
    bundle_options,
    output_option,
    print_json,
)
from runner_agent.core import fs
from runner_agent.core.errors import InvalidInput, Problem
from runner_agent.model.agents import default_registry
from runner_agent.model.tasks import load_tasks
from runner_agent.pipeline.grouping import DEFAULT_SHARDS, DEFAULT_TASKS_PER_JOB, MAX_SHARDS
from runner_agent.pipeline.plan import PlanInputs, Written, plan, plan_dispatch, write_pipelines
from runner_agent.pipeline.render import RenderOptions, render_child
from runner_agent.report.files import loads
from runner_agent.report.model import dotenv

F = TypeVar("F", bound=Callable[..., Any])


def _tags(value: str | None) -> tuple[str, ...]:
    return tuple(t.strip() for t in (value or "").split(",") if t.strip())


def _pipeline_options(func: F) -> F:
    """Options shared by render and plan: how tasks become jobs. The command receives them
    as one ``options: RenderOptions`` (with its own ``--tasks-from-job``) and ``project_dir``."""
    options = [
        click.option(
            "--project-dir",
            type=click.Path(file_okay=False, path_type=Path),
            envvar="CI_PROJECT_DIR",
            default=".",
            show_default=True,
            help="The folder the jobs run in (the repository checkout); FILE must be inside "
            "it, as the jobs find their task files relative to it. [env: CI_PROJECT_DIR]",
        ),
        click.option(
            "--max-jobs",
            type=click.IntRange(min=2),
            default=200,
            show_default=True,
            envvar="RA_MAX_JOBS",
            help="Jobs per child pipeline, the collect job included; more tasks are split "
            "into several pipelines. GitLab.com Free allows 500 jobs in all active "
            "pipelines of a project together.",
        ),
        click.option(
            "--tasks-per-job",
            type=click.IntRange(min=1),
            default=DEFAULT_TASKS_PER_JOB,
            show_default=True,
            envvar="RA_TASKS_PER_JOB",
            help="Tasks per job: tasks of the same runner tags and lock shard share a job, "
            "run by one `runner-agent run`; an identity's tasks stay in one job, in order. "
            "1: a job per identity. [env: RA_TASKS_PER_JOB]",
        ),
        click.option(
            "--lock-shards",
            type=click.IntRange(min=1, max=MAX_SHARDS),
            default=DEFAULT_SHARDS,
            show_default=True,
            help="Lock shards: every job's resource_group is one of this many keys, so one "
            "identity runs in one job at a time across pipelines. Use ONE value for every "
            "pipeline of a project (docs/scaling.md): pipelines rendered with different "
            "values do not exclude each other.",
        ),
        click.option(
            "--default-tags",
            metavar="TAG,...",
            envvar="RA_DEFAULT_TAGS",
            help="Runner tags for tasks that name none, and for the collect job. "
            "Default: the collect job takes the first task's tags.",
        ),
        click.option(
            "--runner-agent",
            "runner_agent_cmd",
            metavar="CMD",
            default="runner-agent",
            show_default=True,
            envvar="RA_RUNNER_AGENT",
            help="How the jobs call runner-agent, e.g. 'python3 -m runner_agent'.",
        ),
        click.option(
            "--plan-first",
            is_flag=True,
            envvar="RA_PLAN_FIRST",
            help="Dry-run every task first, publish the plan (plan.md), and make each "
            "identity's jobs wait for a manual approval job with the environment "
            "runner-agent/IDENTITY (docs/safety.md). [env: RA_PLAN_FIRST]",
        ),
    ]

    @functools.wraps(func)
    def command(
        *args: Any,
        max_jobs: int,
        tasks_per_job: int,
        lock_shards: int,
        default_tags: str | None,
        runner_agent_cmd: str,
        tasks_from_job: str | None,
        plan_first: bool,
        **kwargs: Any,
    ) -> Any:
        render_options = RenderOptions(
            max_jobs=max_jobs,
            runner_agent_cmd=runner_agent_cmd,
            tasks_from_job=tasks_from_job or None,
            default_tags=_tags(default_tags),
            plan_first=plan_first,
            tasks_per_job=tasks_per_job,
            lock_shards=lock_shards,
        )
        return func(*args, options=render_options, **kwargs)

    for option in reversed(options):
        command = option(command)
    return cast(F, command)


def _report(written: Written, output: str) -> None:
    if output == "json":
        print_json(written.to_dict())
        return
    click.echo(
        f"wrote {written.entry}: {written.tasks} task(s) in {written.pipelines} "
        f"pipeline(s), {len(written.files)} file(s)"
    )


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--file",
    "-f",
    "file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the pipeline here, the task files beside it (DIR/tasks/NNNN.json), and when "
    "split the parts FILE-1.yml... with FILE triggering them. Default: print the YAML.",
)
@click.option(
    "--tasks-from-job",
    metavar="JOB",
    help="The parent pipeline's job whose artifacts hold the task files; the jobs fetch "
    "them with needs:pipeline:job. Default: the task files are in the repository.",
)
@click.option(
    "--graph",
    metavar="FILE",
    help="Also draw the pipeline as a Mermaid flowchart (jobs, and what each waits for) in "
    "FILE: a fenced block when FILE ends in .md (GitLab shows it in issues, merge requests "
    "and README files), plain Mermaid otherwise; '-' prints it instead of the YAML.",
)
@_pipeline_options
@agents_path_option
@output_option
def render(
    paths: tuple[Path, ...],
    file: Path | None,
    graph: str | None,
    project_dir: Path,
    options: RenderOptions,
    agents_path: tuple[Path, ...],
    output: str,
) -> int:
    """Render task files into a GitLab child pipeline: jobs of up to --tasks-per-job tasks
    (an identity's tasks whole and in order), then a collect job.

    Validates the tasks first, and the result against GitLab's CI schema and rules: exit 2
    when either is wrong, and nothing is written. Task values never enter the YAML: each
    job runs `runner-agent run` on its own task file.

    \b
    Examples:
      runner-agent render examples/*.yml
      runner-agent render tasks/web.yml -f .runner-agent/pipeline.yml
      runner-agent render tasks/*.yml -f .runner-agent/pipeline.yml --max-jobs 200 -o json
      runner-agent render tasks/*.yml --graph pipeline.md    # the picture, for an MR
    \b
    Then, in .gitlab-ci.yml, after committing the written files:
      agents:
        trigger:
          include: .runner-agent/pipeline.yml
          strategy: depend
    """
    tasks = load_tasks(paths, default_registry(agents_path))
    if graph is not None:
        _graph(render_child(tasks, options), tasks, graph)
        if graph == "-" and file is None:
            return 0
    if file is not None:
        _report(write_pipelines(tasks, file, project_dir=project_dir, options=options), output)
        return 0
    pipelines = render_child(tasks, options)
    if output == "json":
        print_json([{"yaml": p.text, "task_files": sorted(p.task_files)} for p in pipelines])
    else:
        click.echo("---\n".join(p.text for p in pipelines), nl=False)
        if len(pipelines) > 1:
            click.echo(
                f"note: {len(pipelines)} pipelines; --file writes them and their index", err=True
            )
    return 0


def _graph(pipelines: list[Any], tasks: list[Any], target: str) -> None:
    from runner_agent.pipeline.graph import mermaid, mermaid_markdown

    if target == "-":
        click.echo(mermaid(pipelines, tasks), nl=False)
        return
    path = Path(target)
    text = (mermaid_markdown if path.suffix == ".md" else mermaid)(pipelines, tasks)
    fs.write_text(path, text, mode=fs.PUBLIC)


@click.command(name="plan")
@click.option(
    "--file",
    "-f",
    "file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=".runner-agent/pipeline.yml",
    show_default=True,
    help="Where to write the child pipeline (see `render --file`), relative to --project-dir.",
)
@bundle_options
@click.option(
    "--task-file",
    envvar="RA_TASK_FILE",
    default="",
    help="A task file in the repository. [env: RA_TASK_FILE]",
)
@click.option(
    "--identity",
    envvar="RA_IDENTITY",
    default="",
    help="Run this identity's tasks from --tasks-dir (with --command if given). [env: RA_IDENTITY]",
)
@click.option(
    "--tasks-dir",
    envvar="RA_TASKS_DIR",
    default="tasks",
    show_default=True,
    help="Where --identity finds the repository's task files. [env: RA_TASKS_DIR]",
)
@click.option(
    "--agent",
    envvar="RA_AGENT",
    default="",
    help="The identity's agent, needed when it has no task file. [env: RA_AGENT]",
)
@click.option("--command", "command", envvar="RA_COMMAND", default="", help="[env: RA_COMMAND]")
@click.option(
    "--tasks-from-job",
    envvar="CI_JOB_NAME",
    help="The job whose artifacts the child jobs fetch. [env: CI_JOB_NAME, this job]",
)
@_pipeline_options
@agents_path_option
@output_option
def plan_cmd(
    file: Path,
    dispatch_id: str,
    checksum: str,
    task_file: str,
    identity: str,
    tasks_dir: str,
    agent: str,
    command: str,
    project_dir: Path,
    options: RenderOptions,
    agents_path: tuple[Path, ...],
    output: str,
) -> int:
    """The parent pipeline's plan job: its inputs in, the child pipeline files out.

    Takes exactly one source: a task file in the repository; an identity, whose tasks are
    looked up in --tasks-dir (the command replaced when one is given; without a task file
    there, a task of identity, agent and command alone); or a dispatch id and checksum.
    Every option also reads the RA_* variable the shipped parent pipeline sets from its
    inputs, so no value has to pass through a shell line.

    \b
    Examples:
      runner-agent plan --task-file tasks/web.yml
      runner-agent plan --identity acme/web --command cycle
      RA_IDENTITY=acme/web RA_COMMAND=cycle runner-agent plan
    """
    inputs = PlanInputs(dispatch_id, checksum, task_file, identity, agent, command, tasks_dir)
    path = file if file.is_absolute() else project_dir / file
    registry = default_registry(agents_path)
    if inputs.source() == "dispatch_id":
        # imported here: only dispatched runs need the GitLab client
        from runner_agent.gitlab.bundle import fetch_bundle

        found = fetch_bundle(dispatch_id, checksum, environ=os.environ, registry=registry)
        if found.plan_first:  # the bundle asks for the gate: no input can take it away
            options = replace(options, plan_first=True)
        written = plan_dispatch(
            found.tasks, dispatch_id, path, project_dir=project_dir, options=options
        )
    else:
        written = plan(inputs, path, project_dir=project_dir, options=options, registry=registry)
    _report(written, output)
    return 0


@click.command(name="dotenv")
@click.argument("report", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--file",
    "-f",
    "file",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Where to write the dotenv (the job's artifacts:reports:dotenv).",
)
def dotenv_cmd(report: Path, file: Path) -> int:
    """Write a task report's status and outputs as a GitLab dotenv report.

    Later jobs then read them as variables: RA_<IDENTITY>_STATUS, RA_<IDENTITY>_<KEY>
    (upper-cased, other characters as _), at most 20 and 5 KB; the report JSON keeps all.

    \b
    Example:
      runner-agent dotenv .runner-agent/reports/0003.json -f .runner-agent/reports/0003.env
    """
    try:
        data = loads(report.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise InvalidInput(Problem(str(report), f"not a report: {exc}")) from exc
    if not isinstance(data, dict) or "identity" not in data:
        raise InvalidInput(Problem(str(report), "not the report of one task"))
    try:
        text = dotenv(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise InvalidInput(Problem(str(report), f"not a report: {exc}")) from exc
    fs.write_text(file, text)
    return 0
