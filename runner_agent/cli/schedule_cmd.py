"""``schedule`` and ``state``: what the agent project keeps between runs (cycle schedules,
state documents)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click

from runner_agent.cli._common import output_option, print_json, remember_secrets, seams
from runner_agent.cli.dispatch_cmd import gitlab_options
from runner_agent.core.errors import InvalidInput, Problem
from runner_agent.gitlab import compat
from runner_agent.gitlab.api import GitLabAPI, connect
from runner_agent.gitlab.schedules import (
    create_schedule,
    delete_schedule,
    frequency_to_cron,
    list_schedules,
)
from runner_agent.gitlab.state_store import GitLabStateStore
from runner_agent.model.state import LocalStateStore, default_state_dir
from runner_agent.report.model import printable


def _connect(project: str | None, section: str | None) -> GitLabAPI:
    """The project's client on the command's clock. Raises InvalidInput; makes no request."""
    return connect(
        os.environ, project=project, section=section, retry_policy=seams().retry_policy()
    )


@click.group()
def schedule() -> None:
    """Run `cycle` for an identity as a GitLab pipeline schedule."""


@schedule.command("create")
@click.argument("identity")
@click.option("--every", help="10m, 30m, 1h, 6h, 1d, 7d...")
@click.option("--cron", "cron_expr", help="A 5-field cron expression, such as '*/10 * * * *'.")
@click.option("--task-file", help="A task file of the agent project's repository to cycle.")
@click.option(
    "--ref", envvar="RUNNER_AGENT_REF", help="Branch or tag (default: the default branch)."
)
@click.option("--timezone", default="UTC", show_default=True, help="The cron's time zone.")
@click.option("--variables", "use_variables", is_flag=True, help="Pass variables, not inputs.")
@gitlab_options
@output_option
def schedule_create(
    identity: str,
    every: str | None,
    cron_expr: str | None,
    task_file: str | None,
    ref: str | None,
    timezone: str,
    use_variables: bool,
    project: str | None,
    section: str | None,
    output: str,
) -> int:
    """Create the schedule that runs `cycle` for IDENTITY (the existing one if there is one).

    \b
    Examples:
      runner-agent schedule create acme/web --every 30m -p acme/agents
      runner-agent schedule create acme/db --cron '15 3 * * *' --task-file tasks/db.yml
    """
    if bool(every) == bool(cron_expr):
        raise InvalidInput(Problem("--every/--cron", "give exactly one of --every and --cron"))
    cron = frequency_to_cron(every, identity) if every else str(cron_expr)
    api = _connect(project, section)
    remember_secrets(list(api.secrets))
    takes_inputs = compat.preflight(api, "runner-agent schedule create", compat.Route.SCHEDULE)
    use_variables = use_variables or not takes_inputs
    created = create_schedule(
        api,
        identity,
        cron,
        ref=ref or str(api.get_project().get("default_branch") or "main"),
        task_file=task_file,
        variables=use_variables,
        timezone=timezone,
    )
    if output == "json":
        print_json(created.to_dict())
    else:
        verb = "exists" if created.existed else "created"
        click.echo(
            f"schedule {created.id} {verb}: {created.cron} on {created.ref} ({created.description})"
        )
    return 0


@schedule.command("list")
@gitlab_options
@output_option
def schedule_list(project: str | None, section: str | None, output: str) -> int:
    """List the project's runner-agent schedules."""
    api = _connect(project, section)
    compat.require_access_token(api.connection, "runner-agent schedule list")
    remember_secrets(list(api.secrets))
    found = list_schedules(api)
    if output == "json":
        print_json([s.to_dict() for s in found])
    for s in found if output != "json" else []:
        state = "active" if s.active else "inactive"
        click.echo(f"{s.id}  {s.cron:<16} {state:<8} next {s.next_run_at or '-'}  {s.description}")
    return 0


@schedule.command("delete")
@click.argument("schedule_id", type=int)
@gitlab_options
def schedule_delete(schedule_id: int, project: str | None, section: str | None) -> int:
    """Delete a schedule (done already is fine)."""
    api = _connect(project, section)
    compat.require_access_token(api.connection, "runner-agent schedule delete")
    remember_secrets(list(api.secrets))
    gone = delete_schedule(api, schedule_id)
    click.echo(f"schedule {schedule_id} {'deleted' if gone else 'was already gone'}")
    return 0


@click.command()
@click.argument("identity")
@click.option(
    "--local",
    is_flag=True,
    envvar="RUNNER_AGENT_LOCAL",
    help="Read the state `run --local` keeps instead of GitLab's. [env: RUNNER_AGENT_LOCAL=1]",
)
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The local state folder (implies --local). Default with --local: "
    "RUNNER_AGENT_STATE_DIR, else $XDG_STATE_HOME/runner-agent, as `run --local`.",
)
@gitlab_options
@output_option
def state(
    identity: str,
    local: bool,
    state_dir: Path | None,
    project: str | None,
    section: str | None,
    output: str,
) -> int:
    """Show an identity's state document: installed version, outputs, last runs.

    \b
    Examples:
      runner-agent state acme/web --local              # what run --local keeps here
      runner-agent state acme/web -p acme/agents -o json   # what the GitLab jobs keep
    """
    if local or state_dir is not None:  # only when asked: a variable alone never switches
        folder = state_dir or Path(os.environ.get("RUNNER_AGENT_STATE_DIR") or default_state_dir())
        found = LocalStateStore(folder).read(identity)
    else:
        api = _connect(project, section)
        remember_secrets(list(api.secrets))
        found = GitLabStateStore(api).read(identity)
    if found is None:
        raise InvalidInput(Problem("IDENTITY", f"{identity!r} has no state yet"))
    if output == "json":
        print_json(found.to_dict())
        return 0
    # a document's text is anyone's who can write state (any job of the project, in GitLab):
    # escaped like the table, so it cannot move the cursor, retitle the terminal or fake a line
    click.echo(
        printable(
            f"{found.identity}: agent {found.agent or '-'}, "
            f"installed {found.installed_version or 'no'}"
        )
    )
    click.echo(
        printable(
            f"last: {found.last_command or '-'} {found.last_status or ''} at {found.updated or '-'}"
        )
    )
    for key, value in sorted(found.outputs.items()):
        click.echo(f"  {printable(key)} = {json.dumps(value)}")
    return 0
