"""``run`` and ``collect``: the agent job itself, and the merge of its reports."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from runner_agent.cli._common import (
    agents_path_option,
    bundle_options,
    check_option,
    html_option,
    output_option,
    print_json,
    remember_secrets,
    seams,
    warn,
)
from runner_agent.core import fs
from runner_agent.core.errors import InvalidInput, Problem
from runner_agent.core.redact import process as process_redactor
from runner_agent.model.agents import default_registry
from runner_agent.model.state import LocalStateStore, StateStore, default_state_dir
from runner_agent.model.tasks import as_check, load_tasks, with_command
from runner_agent.report.files import (
    numbered_report_paths,
    read_reports,
    task_report_paths,
    write_summary,
)
from runner_agent.report.model import Report, merge_reports, table
from runner_agent.report.outcome import exit_code
from runner_agent.run.job import Deliveries, run_job
from runner_agent.run.runtime import RunContext

# The one job's dotenv report, in its --dir (artifacts:reports:dotenv of runner-agent-job)
JOB_DOTENV = "job.env"


def _in_gitlab_job() -> bool:
    return os.environ.get("GITLAB_CI") == "true"


def _job() -> Any:
    """The GitLab job's context (job token, project, dispatch), or None outside a job.
    Imported here: local runs do not load the GitLab client."""
    from runner_agent.gitlab.bundle import job_context

    job = job_context(os.environ, retry_policy=seams().retry_policy())
    if job is not None:
        remember_secrets(list(job.api.secrets))
    return job


def _publisher(job: Any) -> Callable[[list[Report]], None] | None:
    """A dispatched job's upload of its reports (warns, never fails); None outside a job."""
    if job is None:
        return None
    from runner_agent.gitlab.bundle import publish_reports

    def publish(reports: list[Report]) -> None:
        publish_reports([r.to_dict() for r in reports], job, warn)

    return publish


def _context(registry: Any, job: Any, state_dir: Path | None, verbose: bool | None) -> RunContext:
    """How the tasks run: state in GitLab inside a job (``job``), else in ``state_dir``;
    Ansible's output streamed (secrets masked) when ``verbose``, by default inside a job."""
    if job is not None:
        from runner_agent.gitlab.state_store import GitLabStateStore

        store: StateStore = GitLabStateStore(job.api)
    else:
        store = LocalStateStore(state_dir or default_state_dir())
    stream = _in_gitlab_job() if verbose is None else verbose
    sections = stream and _in_gitlab_job()
    # GitLab folds a section only when its marker ends in "\r\033[0K" (lib/gitlab/regex.rb,
    # logs_section_suffix_regex; doc/ci/jobs/job_logs.md): click strips ANSI codes from a
    # stream that is not a terminal, as a job's is, unless told to keep them
    keep = True if sections else None
    return RunContext(
        registry=registry,
        store=store,
        on_output=(lambda line: click.echo(line, err=True, color=keep)) if stream else None,
        log_sections=sections,
        redactor=process_redactor(),
    )


def _warn_notes(reports: list[Report]) -> None:
    """Each report's notes on stderr (what the job's dotenv left out, among others)."""
    for report in reports:
        for note in report.notes:
            warn(f"warning: {report.identity}: {note}")


def _check_outputs(
    report: Path | None,
    dotenv: Path | None,
    html: Path | None,
    state_dir: Path | None,
    per_task: tuple[Path, ...] = (),
) -> None:
    """Refuse, before anything runs, an output path that cannot be written (the JUnit file
    beside the report included), that two outputs share (one would overwrite the other), or
    inside the local state folder (it would replace or stand beside state documents)."""
    named: dict[str, Path | None] = {
        "--report": report,
        "--report's JUnit file": (
            report.with_name(report.name.removesuffix(".json") + ".junit.xml") if report else None
        ),
        "--dotenv": dotenv,
        "--html": html,
    }
    for each in per_task:
        named[f"--report-dir's {each.name}"] = each
        named[f"--report-dir's {each.stem}.junit.xml"] = each.with_name(f"{each.stem}.junit.xml")
    seen: dict[Path, str] = {}
    for option, path in named.items():
        if path is None:
            continue
        fs.check_writable(path)
        where = path.parent.resolve() / path.name
        if state_dir is not None and where.is_relative_to(state_dir.resolve()):
            raise InvalidInput(Problem(option, f"{path} is inside the state folder {state_dir}"))
        if where in seen:
            raise InvalidInput(Problem(option, f"{path} is also {seen[where]}'s path"))
        seen[where] = option


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--local",
    is_flag=True,
    envvar="RUNNER_AGENT_LOCAL",
    help="Run here, state in a local folder, nothing sent to GitLab. [env: RUNNER_AGENT_LOCAL=1]",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="RUNNER_AGENT_STATE_DIR",
    help="Where --local keeps state documents. [env: RUNNER_AGENT_STATE_DIR; "
    "default: $XDG_STATE_HOME/runner-agent]",
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the report JSON here (a summary when the files hold several "
    "tasks) and the JUnit XML beside it (.junit.xml).",
)
@click.option(
    "--report-dir",
    "report_dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Write each task's report here as <task file name>.json, and its JUnit XML beside "
    "it (a file of several tasks: <name>-<n>.json): a job of several tasks still reports "
    "every task.",
)
@click.option(
    "--dotenv",
    "dotenv_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the tasks' statuses and outputs as one GitLab dotenv report "
    "(RA_<IDENTITY>_STATUS, RA_<IDENTITY>_<KEY>): statuses first, at most 20 variables; "
    "a task whose variables do not fit says so in its report.",
)
@click.option(
    "--after",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The report of a task this one follows; when it is missing or did not succeed, "
    "the tasks are reported as skipped and not run (exit 0). Repeatable.",
)
@click.option(
    "--command",
    "command",
    metavar="CMD",
    help="Run this command instead of the tasks' own: install, update, uninstall, "
    "cycle or a custom command of the agent.",
)
@click.option(
    "--verbose/--quiet",
    "-v/-q",
    default=None,
    help="Stream Ansible's output (secrets masked) to stderr. Default: on inside a "
    "GitLab job, off elsewhere.",
)
@check_option
@html_option("Also write the report as an HTML page here, to open in a browser.")
@agents_path_option
@output_option
def run(
    paths: tuple[Path, ...],
    local: bool,
    state_dir: Path | None,
    report_path: Path | None,
    report_dir: Path | None,
    dotenv_path: Path | None,
    after: tuple[Path, ...],
    command: str | None,
    verbose: bool | None,
    check: bool,
    html_path: Path | None,
    agents_path: tuple[Path, ...],
    output: str,
) -> int:
    """Be the agent for the tasks in PATHS: digest, run through ansible-runner, report.

    Without a command, a task installs when its identity is new or its version changed, then
    updates. State is kept per identity and changes only when the run succeeded.

    \b
    Examples:
      runner-agent run examples/web.yml --local
      runner-agent run examples/web.yml --local --command cycle --output json
      runner-agent run examples/web.yml --local --check    # what would change, nothing written
      runner-agent run task.json --local --state-dir ./state --report out/report.json
    \b
    Exit codes: 0 success, 1 a task failed, 2 invalid input, 3 locked, 5 timed out.
    """
    registry = default_registry(agents_path)
    tasks = load_tasks(paths, registry)
    if command:
        tasks = with_command(tasks, command, registry)
    if check:
        tasks = as_check(tasks)
    per_task = task_report_paths(tasks, report_dir) if report_dir else ()
    job = None if local else _job()
    if not local and job is None:
        raise InvalidInput(
            Problem(
                "--local",
                "outside a GitLab job (GITLAB_CI=true with CI_JOB_TOKEN) pass --local "
                "(or RUNNER_AGENT_LOCAL=1)",
            )
        )
    if job is None:
        state_dir = state_dir or default_state_dir()
    ctx = _context(registry, job, state_dir, verbose)
    _check_outputs(
        report_path, dotenv_path, html_path, state_dir if job is None else None, per_task
    )
    to = Deliveries(report_path, dotenv_path, html_path, _publisher(job), per_task)
    try:
        reports = run_job(tasks, ctx, after=after, to=to)
    finally:
        remember_secrets(list(ctx.secrets))
    _warn_notes(reports)
    if output == "json":
        print_json([r.to_dict() for r in reports] if len(reports) > 1 else reports[0].to_dict())
    else:
        click.echo(table(reports), nl=False)
    return exit_code(reports)


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option(
    "--summary",
    "summary_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the merged summary JSON here.",
)
@click.option(
    "--expect",
    type=click.IntRange(min=0),
    default=None,
    help="How many task reports there must be; fewer makes the summary an error "
    "(a killed job, or a dead runner, leaves none).",
)
@html_option("Also write the reports as one HTML page here, to open in a browser.")
@click.option(
    "--markdown",
    "markdown_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Also write the key changes as a Markdown plan here (a table per identity and host, "
    "secrets masked, every value escaped): what `dispatch --plan` links from merge requests.",
)
@output_option
def collect(
    paths: tuple[Path, ...],
    summary_path: Path | None,
    expect: int | None,
    html_path: Path | None,
    markdown_path: Path | None,
    output: str,
) -> int:
    """Merge reports (files, or folders searched for *.json) into one summary.

    The last job of a rendered pipeline runs this with `when: always`, so the summary names
    every task's outcome, failures included. Exits like `run`.

    \b
    Examples:
      runner-agent collect out/ --summary out/summary.json --expect 3
      runner-agent collect out/ --html report.html    # then open report.html in a browser
    """
    reports = read_reports(paths)
    summary = merge_reports(reports, expected=expect)
    if summary_path:
        write_summary(summary_path, summary)
        job = _job() if _in_gitlab_job() else None
        if job is not None:
            from runner_agent.gitlab.bundle import publish_summary

            publish_summary(summary_path.name, summary, job, warn)  # warns, never fails
    if html_path:
        from runner_agent.report.html import write_html

        write_html(html_path, reports, summary=summary)
    if markdown_path:
        from runner_agent.report.markdown import write_markdown

        write_markdown(markdown_path, reports)
    if output == "json":
        print_json(summary)
    else:
        click.echo(table(reports), nl=False)
    if summary["missing"]:
        click.echo(f"error: {summary['missing']} task report(s) missing", err=True)
    return exit_code(reports, missing=summary["missing"])


@click.command(name="job")
@click.option(
    "--dir",
    "workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=".runner-agent",
    show_default=True,
    help="Where the job writes summary.json, report.html, job.env (its dotenv report) and "
    "reports/ (a report and a JUnit file per task): its artifacts.",
)
@bundle_options
@click.option(
    "--verbose/--quiet",
    "-v/-q",
    default=None,
    help="Stream Ansible's output (secrets masked) to stderr. Default: on.",
)
@agents_path_option
@output_option
def job_cmd(
    workdir: Path,
    dispatch_id: str,
    checksum: str,
    verbose: bool | None,
    agents_path: tuple[Path, ...],
    output: str,
) -> int:
    """A small dispatch's one job: the plan, task and summary jobs in one.

    Downloads the dispatch's bundle with the job token, verifies its checksum (nothing runs
    when it differs: exit 2), runs its tasks as `run` would (one ansible-playbook run where
    they can share it), then writes what a grouped pipeline's task job writes (a report and a
    JUnit file per task, the job's dotenv report) with report.html, and uploads each report
    and summary.json, which `runner-agent reports` reads. Exits as `run` would.
    """
    job = _job()
    if job is None or not job.dispatch_id:
        raise InvalidInput(
            Problem("job", "runs inside a dispatched GitLab job (CI_JOB_TOKEN, RA_DISPATCH_ID)")
        )
    if dispatch_id != job.dispatch_id:
        raise InvalidInput(Problem("--dispatch-id", "differs from the job's RA_DISPATCH_ID"))
    from runner_agent.gitlab.bundle import fetch_bundle_tasks, publish_summary

    registry = default_registry(agents_path)
    tasks = fetch_bundle_tasks(
        dispatch_id, checksum, environ=os.environ, registry=registry, api=job.api
    )
    ctx = _context(registry, job, None, verbose)
    publish_reports = _publisher(job)
    summary_path = workdir / "summary.json"
    # what a grouped pipeline's task job writes (`run --report-dir --dotenv`), by the same code:
    # a report and a JUnit file per task, named as the plan job names the task files, and
    # the job's one dotenv report; the agent project's YAML names these paths
    per_task = numbered_report_paths(len(tasks), workdir / "reports")
    dotenv_path = workdir / JOB_DOTENV
    _check_outputs(None, dotenv_path, workdir / "report.html", None, per_task)

    def publish(reports: list[Report]) -> None:
        summary = merge_reports(reports, expected=len(tasks))
        write_summary(summary_path, summary)
        if publish_reports is not None:
            publish_reports(reports)
        publish_summary(summary_path.name, summary, job, warn)  # warns, never fails

    to = Deliveries(
        None, dotenv_path, workdir / "report.html", publish, per_task, expected=len(tasks)
    )
    try:
        reports = run_job(tasks, ctx, after=(), to=to)
    finally:
        remember_secrets(list(ctx.secrets))
    _warn_notes(reports)
    if output == "json":
        print_json(merge_reports(reports, expected=len(tasks)))
    else:
        click.echo(table(reports), nl=False)
    return exit_code(reports, missing=max(0, len(tasks) - len(reports)))
