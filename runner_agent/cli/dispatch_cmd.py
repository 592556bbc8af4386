"""``dispatch``, ``status``, ``wait``, ``reports``, ``cancel`` and ``summarize``: tasks run as
pipelines of a GitLab agent project, followed from any process."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from runner_agent.cli import stackl_cmd
from runner_agent.cli._common import (
    agents_path_option,
    check_option,
    html_option,
    output_option,
    print_json,
    remember_secrets,
    seams,
    warn,
)
from runner_agent.core.errors import InvalidInput, Problem
from runner_agent.gitlab.bundle import job_context, load_parts, summarize
from runner_agent.gitlab.dispatch import Dispatcher, Handle, TriggerMode, from_environ, load_handle
from runner_agent.gitlab.follow import DispatchReports, DispatchStatus, progress_printer
from runner_agent.model.agents import default_registry
from runner_agent.model.tasks import Task, as_check, load_tasks, parse_duration
from runner_agent.pipeline.grouping import DEFAULT_TASKS_PER_JOB
from runner_agent.pipeline.render import RenderOptions
from runner_agent.report.files import write_summary
from runner_agent.report.html import write_html
from runner_agent.report.model import load_report, table
from runner_agent.report.outcome import exit_code

F = TypeVar("F", bound=Callable[..., Any])


section_option = click.option(
    "--gitlab-config-section",
    "section",
    envvar="RUNNER_AGENT_GITLAB_SECTION",
    help="Use this section of python-gitlab's config file (~/.python-gitlab.cfg or "
    "PYTHON_GITLAB_CFG). Default: GITLAB_URL and GITLAB_TOKEN, or the job's variables.",
)


def gitlab_options(func: F) -> F:
    """--project and --gitlab-config-section, for the commands that talk to GitLab."""
    project = click.option(
        "--project",
        "-p",
        envvar="RUNNER_AGENT_PROJECT",
        help="The agent project: id or path (group/name). [env: RUNNER_AGENT_PROJECT; "
        "in a job: CI_PROJECT_ID]",
    )
    return project(section_option(func))


def _wait_and_report(
    dispatcher: Dispatcher,
    handle: Handle,
    deadline: float | None,
    interval: float,
    output: str,
    approval: float | None = None,
) -> int:
    """Wait (progress on stderr), then print the reports."""
    dispatcher.wait(
        handle,
        timeout=deadline,
        approval_timeout=approval,
        interval=interval,
        max_interval=seams().max_poll_interval,
        progress=progress_printer(sys.stderr),
    )
    return _print_reports(dispatcher.reports(handle), output)


def _poll_options(prefix: str) -> Callable[[F], F]:
    """--timeout and --interval, for the commands that wait for a dispatch."""

    def text(help_text: str) -> str:
        said = prefix + help_text
        return said[:1].upper() + said[1:]

    def add(func: F) -> F:
        timeout = click.option(
            "--timeout",
            help=text(
                "give up after this long (30s, 10m, 2h): exit 5. Time waiting for approval "
                "(dispatch --plan) does not count."
            ),
        )
        approval = click.option(
            "--approval-timeout",
            help=text(
                "give up when the run has waited for approval this long in all (30m, 2h, "
                "1d): exit 5, nothing applied. Default: wait for approval without limit."
            ),
        )
        interval = click.option(
            "--interval",
            type=click.FloatRange(min=1),
            default=10,
            show_default=True,
            help=text("seconds between polls at first (then slower, up to 60)."),
        )
        return timeout(approval(interval(func)))

    return add


def _duration(value: str | None, flag: str = "--timeout") -> float | None:
    if value is None:
        return None
    try:
        return float(parse_duration(int(value) if value.isdigit() else value))
    except ValueError as exc:
        raise InvalidInput(Problem(flag, str(exc))) from exc


def _dispatcher(**options: Any) -> Dispatcher:
    """The dispatcher for the environment's GitLab, on the command's clock. Raises
    InvalidInput when nothing names a GitLab, a token or a project; makes no request."""
    now = seams()
    dispatcher = from_environ(
        os.environ,
        retry_policy=now.retry_policy(),
        clock=now.clock,
        sleep=now.sleep,
        warn=warn,
        **options,
    )
    remember_secrets(list(dispatcher.api.secrets))
    return dispatcher


def _for_handle(value: str, section: str | None) -> tuple[Dispatcher, Handle]:
    handle = load_handle(value)
    return _dispatcher(section=section, handle=handle), handle


def _print_status(status: DispatchStatus, output: str) -> None:
    if output == "json":
        print_json(status.to_dict())
        return
    click.echo(
        f"{status.handle.dispatch_id}: {status.phase.label} ({status.status}) {status.web_url}"
    )
    for child in status.children:
        click.echo(f"  {child.name}: {child.status} {child.web_url}")


def _print_reports(found: DispatchReports, output: str) -> int:
    if output == "json":
        print_json(dict(found.summary))
    else:
        click.echo(table(list(found.reports)), nl=False)
    return found.exit_code


def _tasks(
    paths: tuple[Path, ...], from_stackl: Path | None, agents_path: tuple[Path, ...]
) -> list[Task]:
    if bool(paths) == bool(from_stackl):
        raise InvalidInput(Problem("PATHS", "give task files or --from-stackl FILE (one of them)"))
    return load_tasks(paths, default_registry(agents_path))


@click.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "--from-stackl",
    type=click.Path(dir_okay=False, path_type=Path),
    help="A STACKL invocation (JSON or YAML, as STACKL core enqueues it) instead of task "
    "files; its config comes from the stack instance in STACKL (--stackl). With --wait it "
    "prints STACKL's result and sends the outputs to STACKL.",
)
@click.option(
    "--stackl",
    "stackl_url",
    envvar="STACKL_HOST",
    help="With --from-stackl: STACKL core's URL. [env: STACKL_HOST]",
)
@click.option(
    "--ref",
    envvar="RUNNER_AGENT_REF",
    help="Branch or tag of the agent project. "
    "[env: RUNNER_AGENT_REF; default: the project's default branch]",
)
@click.option(
    "--variables",
    "use_variables",
    is_flag=True,
    help="Pass the ids as variables RA_DISPATCH_ID/RA_CHECKSUM instead of pipeline "
    "inputs. Default: inputs where GitLab's version takes them (17.10+, trigger 17.11+).",
)
@click.option(
    "--trigger-token-env",
    metavar="NAME",
    help="Create the pipeline with the trigger token in this environment variable "
    "(POST /trigger/pipeline); reading still uses the configured token.",
)
@click.option(
    "--one-job/--no-one-job",
    "one_job",
    default=True,
    show_default=True,
    help="Run tasks that fit in one job (one set of runner tags, few tasks) as that one job "
    "of the agent project, without plan job, child pipeline and summary job. --no-one-job "
    "for an agent project whose pipeline predates it (no one_job input).",
)
@click.option(
    "--tasks-per-job",
    type=click.IntRange(min=1),
    default=None,
    help="Tasks per runner job (an identity's tasks stay in one job): the most a dispatch "
    "may hold to run as one job, and the child pipeline's grouping, sent as the input "
    "tasks_per_job (with --variables: RA_TASKS_PER_JOB). "
    f"[default: the agent project's, {DEFAULT_TASKS_PER_JOB} as shipped]",
)
@click.option("--wait", "wait_for", is_flag=True, help="Wait for the pipeline, print reports.")
@click.option(
    "--plan",
    "plan_first",
    is_flag=True,
    help="Dry-run the tasks first and publish the plan (plan.md, linked as 'runner-agent "
    "plan'); each identity's apply jobs then wait for a manual job with the environment "
    "runner-agent/IDENTITY: protected environments decide who may start it "
    "(docs/safety.md). Not with --check.",
)
@check_option
@_poll_options("With --wait: ")
@gitlab_options
@agents_path_option
@output_option
def dispatch(
    paths: tuple[Path, ...],
    from_stackl: Path | None,
    stackl_url: str | None,
    ref: str | None,
    use_variables: bool,
    trigger_token_env: str | None,
    one_job: bool,
    tasks_per_job: int | None,
    wait_for: bool,
    plan_first: bool,
    check: bool,
    timeout: str | None,
    approval_timeout: str | None,
    interval: float,
    project: str | None,
    section: str | None,
    agents_path: tuple[Path, ...],
    output: str,
) -> int:
    """Run tasks as a GitLab pipeline of the agent project and print its handle.

    The tasks are validated and rendered here first: nothing is sent when one is invalid
    (exit 2). The bundle goes to the project's package registry and ONE pipeline starts with
    its id and checksum. An identical run already in flight is joined; a different run on
    one of the identities is refused (exit 3). Keep the handle: status, wait, reports and
    cancel take it (as JSON or as a file holding it), from any process. With --wait it exits
    as `run` would for the same tasks.

    \b
    Examples:
      runner-agent dispatch tasks/web.yml -p acme/agents -o json > handle.json
      runner-agent dispatch tasks/*.yml -p acme/agents --wait --timeout 30m
      runner-agent dispatch --from-stackl invocation.json -p acme/agents
    """
    deadline = _duration(timeout)
    approval = _duration(approval_timeout, "--approval-timeout")
    _check_plan_flags(plan_first, check, wait_for, approval_timeout, from_stackl)
    if from_stackl is not None and not paths:
        asked = stackl_cmd.invocation_tasks(from_stackl, stackl_url, agents_path, deadline)
        tasks = asked.tasks
    else:
        tasks = _tasks(paths, from_stackl, agents_path)
    if check:
        tasks = as_check(tasks)
    trigger = os.environ.get(trigger_token_env, "") if trigger_token_env else None
    if trigger_token_env and not trigger:
        raise InvalidInput(Problem("--trigger-token-env", f"{trigger_token_env} is not set"))
    mode = TriggerMode.VARIABLES if use_variables else None  # None: by GitLab's version
    dispatcher = _dispatcher(
        project=project,
        section=section,
        mode=mode,
        trigger_token=trigger,
        allow_one_job=one_job,
        tasks_per_job=tasks_per_job,
        render_options=RenderOptions(tasks_per_job=tasks_per_job or DEFAULT_TASKS_PER_JOB),
    )
    handle = dispatcher.submit(tasks, ref=ref, plan_first=plan_first)
    if not wait_for:
        if output == "json":
            click.echo(handle.encode())
        else:
            click.echo(f"dispatched {handle.dispatch_id}: {handle.web_url}")
            click.echo(handle.encode())
        return 0
    # stdout stays the reports; the handle goes to stderr, for `wait` after a timeout
    click.echo(f"dispatched {handle.dispatch_id}: {handle.web_url}", err=True)
    click.echo(handle.encode(), err=True)
    if from_stackl is not None:
        dispatcher.wait(handle, timeout=deadline, interval=interval)
        return stackl_cmd.answer(dispatcher, handle, asked, output)
    return _wait_and_report(dispatcher, handle, deadline, interval, output, approval)


def _check_plan_flags(
    plan_first: bool,
    check: bool,
    wait_for: bool,
    approval_timeout: str | None,
    from_stackl: Path | None,
) -> None:
    """The combinations of --plan that mean nothing: exit 2 before anything is sent."""
    problems = []
    if plan_first and check:
        problems.append(Problem("--plan", "not with --check: a dry run has nothing to approve"))
    if plan_first and from_stackl is not None:
        problems.append(
            Problem("--plan", "not with --from-stackl: STACKL waits for a result, not a person")
        )
    if approval_timeout is not None and not (plan_first and wait_for):
        problems.append(Problem("--approval-timeout", "only with --plan and --wait"))
    if problems:
        raise InvalidInput(problems)


@click.command()
@click.argument("handle")
@section_option
@output_option
def status(handle: str, section: str | None, output: str) -> int:
    """Show where a dispatch stands: its pipeline's phase and its child pipelines.

    HANDLE is the JSON `dispatch` printed, or a file holding it.
    """
    dispatcher, found = _for_handle(handle, section)
    _print_status(dispatcher.status(found), output)
    return 0


@click.command()
@click.argument("handle")
@_poll_options("")
@section_option
@output_option
def wait(
    handle: str,
    timeout: str | None,
    approval_timeout: str | None,
    interval: float,
    section: str | None,
    output: str,
) -> int:
    """Wait for a dispatch to finish, then print its reports.

    Shows progress on stderr: a live line on a terminal, status changes in a log; "waiting
    for approval" while a `dispatch --plan` run waits at its approve jobs, which --timeout
    does not count (--approval-timeout limits it). Exits as `run` would for the same tasks:
    0 every task succeeded, 1 one failed, 3 one was locked, 5 one timed out; 5 too when
    --timeout or --approval-timeout passed first (the handle stays valid).
    """
    deadline = _duration(timeout)
    approval = _duration(approval_timeout, "--approval-timeout")
    dispatcher, found = _for_handle(handle, section)
    return _wait_and_report(dispatcher, found, deadline, interval, output, approval)


@click.command()
@click.argument("handle")
@html_option("Also write the reports as one HTML page here, to open in a browser.")
@section_option
@output_option
def reports(handle: str, html_path: Path | None, section: str | None, output: str) -> int:
    """Print every task's report of a finished dispatch (one request, usually).

    Exits as `run` would for the same tasks (0, 1 failed, 3 locked, 5 timed out); 1 while
    the dispatch is not finished.

    \b
    Examples:
      runner-agent reports handle.json
      runner-agent reports handle.json -o json > summary.json
      runner-agent reports handle.json --html report.html    # then open it in a browser
    """
    dispatcher, found = _for_handle(handle, section)
    got = dispatcher.reports(found)
    code = _print_reports(got, output)
    if html_path:
        title = f"runner-agent dispatch {found.dispatch_id}"
        write_html(html_path, list(got.reports), title=title, summary=got.summary)
    return code


@click.command()
@click.argument("handle")
@section_option
@output_option
def cancel(handle: str, section: str | None, output: str) -> int:
    """Cancel a dispatch's pipeline and its child pipelines. Harmless to repeat."""
    dispatcher, found = _for_handle(handle, section)
    _print_status(dispatcher.cancel(found), output)
    return 0


@click.command(name="summarize")
@click.option(
    "--file",
    "-f",
    "file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=".runner-agent/summary.json",
    show_default=True,
    help="Also write the merged summary here (the job's artifact).",
)
@click.option(
    "--parts",
    "parts_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=".runner-agent/parts.json",
    show_default=True,
    help="The plan job's map of the parts (from its artifacts): every part's summary is read, "
    "and only a missing part's tasks count as errors. Without this file the summaries are "
    "read in order up to the first missing one.",
)
@html_option(
    "Also write the merged reports as one HTML page here: the agent project's job writes "
    ".runner-agent/report.html, linked as 'runner-agent report' from a merge request."
)
@output_option
def summarize_cmd(file: Path, parts_path: Path, html_path: Path | None, output: str) -> int:
    """The agent project's last job: merge the summaries of a split dispatch into one.

    Reads RA_DISPATCH_ID and the job's predefined variables; exits like the tasks.
    """
    ctx = job_context(os.environ, retry_policy=seams().retry_policy())
    if ctx is None:
        raise InvalidInput(Problem("summarize", "runs inside a GitLab job (CI_JOB_TOKEN)"))
    merged = summarize(ctx, load_parts(parts_path))
    write_summary(file, merged)
    found = [load_report(r) for r in merged["reports"]]
    if html_path:
        title = f"runner-agent dispatch {ctx.dispatch_id}"
        write_html(html_path, found, title=title, summary=merged)
    if output == "json":
        print_json(merged)
    else:
        click.echo(table(found), nl=False)
    return exit_code(found, missing=merged["missing"])
