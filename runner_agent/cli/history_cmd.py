"""``history`` and ``rollback``: an identity's revisions, and going back to one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from runner_agent.cli._common import (
    agents_path_option,
    check_option,
    output_option,
    print_json,
    remember_secrets,
)
from runner_agent.cli.dispatch_cmd import gitlab_options
from runner_agent.core.errors import EXIT_FAILED, InvalidInput, Problem
from runner_agent.model.agents import default_registry
from runner_agent.model.revisions import pin
from runner_agent.model.state import LocalStateStore, StateStore, default_state_dir

__all__ = ["history", "rollback_cmd"]

_local = click.option(
    "--local",
    is_flag=True,
    help="The state run --local keeps (RUNNER_AGENT_STATE_DIR, else $XDG_STATE_HOME).",
)
_state_dir = click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Where --local keeps state documents.",
)


def _store(local: bool, state_dir: Path | None, project: str | None, section: str | None) -> Any:
    if local or state_dir is not None:
        folder = state_dir or Path(os.environ.get("RUNNER_AGENT_STATE_DIR") or default_state_dir())
        return LocalStateStore(folder)
    from runner_agent.gitlab.api import connect
    from runner_agent.gitlab.state_store import GitLabStateStore

    api = connect(os.environ, project=project, section=section)
    remember_secrets(list(api.secrets))
    return GitLabStateStore(api)


def _keys(revision: dict[str, Any]) -> int:
    return sum(len(keys) for keys in (revision.get("hosts") or {}).values())


@click.command()
@click.argument("identity")
@_local
@_state_dir
@click.option("--pin", "pin_rev", type=int, metavar="REV", help="Keep revision REV for good.")
@click.option("--unpin", "unpin_rev", type=int, metavar="REV", help="Let REV be pruned again.")
@gitlab_options
@output_option
def history(
    identity: str,
    local: bool,
    state_dir: Path | None,
    pin_rev: int | None,
    unpin_rev: int | None,
    project: str | None,
    section: str | None,
    output: str,
) -> int:
    """List the revisions of IDENTITY: one per run that changed keys, newest last.

    Each keeps who ran what, when, and per host the value each key had before (secrets only
    as a reference to their source). 20 unpinned revisions are kept per identity; --pin keeps
    one besides them.

    \b
    Examples:
      runner-agent history acme/web --local
      runner-agent history acme/web --local --output json
      runner-agent history acme/web --local --pin 4
    """
    store: StateStore = _store(local, state_dir, project, section)
    if pin_rev is not None or unpin_rev is not None:
        with store.lock(identity, "history --pin"):
            found = store.read(identity)
            if found is None:
                raise InvalidInput(Problem("IDENTITY", f"{identity!r} has no state yet"))
            if pin_rev is not None:
                pin(found, pin_rev)
            if unpin_rev is not None:
                pin(found, unpin_rev, pinned=False)
            store.write(found)
    else:
        found = store.read(identity)
    if found is None:
        raise InvalidInput(Problem("IDENTITY", f"{identity!r} has no state yet"))
    if output == "json":
        print_json({"identity": identity, "revisions": found.revisions})
        return 0
    rows = [("REV", "TIME", "WHO", "COMMAND", "STATUS", "KEYS", "")]
    for r in found.revisions:
        who = r.get("who") or {}
        rows.append(
            (
                str(r["number"]),
                str(r.get("time", ""))[:19],
                f"{who.get('user') or '?'} ({who.get('via', '?')})",
                str(r.get("command", "")),
                str(r.get("status", "")),
                str(_keys(r)),
                "pinned" if r.get("pinned") else "",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return 0


@click.command(name="rollback")
@click.argument("identity")
@click.option(
    "--to",
    "to",
    default="previous",
    show_default=True,
    metavar="REV|previous",
    help="The revision whose state to go back to; 0: before the oldest kept; previous: the "
    "one before the state in effect (after a rollback to 5, previous is the one before 5).",
)
@check_option
@click.option(
    "--force", is_flag=True, help="Overwrite keys someone changed since (conflicts) as well."
)
@_local
@_state_dir
@click.option("--ref", help="Dispatched: the agent project's branch or tag (default branch).")
@gitlab_options
@agents_path_option
@output_option
def rollback_cmd(
    identity: str,
    to: str,
    check: bool,
    force: bool,
    local: bool,
    state_dir: Path | None,
    ref: str | None,
    project: str | None,
    section: str | None,
    agents_path: tuple[Path, ...],
    output: str,
) -> int:
    """Go back to an earlier revision of IDENTITY, as a new, guarded run.

    Keys the revisions being undone changed get their old values back, keys they added are
    removed, keys they removed come back. A key someone changed since is a conflict: reported
    and left alone unless --force. Takes the identity's lock (exit 3 when another run holds
    it) and is recorded as a revision itself ("rollback of 7 to 5"). Runs here with --local;
    inside a GitLab job with the job's state; elsewhere it is dispatched to the agent project
    as a normal pipeline (prints the handle, as dispatch does).

    \b
    Examples:
      runner-agent rollback acme/web --local --check      # what it would do
      runner-agent rollback acme/web --local --to 3
      runner-agent rollback acme/web -p acme/agents -o json > handle.json
    \b
    Exit codes: 0 rolled back (or dispatched), 1 a task failed or conflicts were left alone,
    2 invalid input, 3 locked (or a different run in flight), 4 GitLab, 5 timed out.
    """
    from runner_agent.cli.run_cmd import _job, _publisher
    from runner_agent.core.redact import process as process_redactor
    from runner_agent.report.model import table
    from runner_agent.report.outcome import exit_code
    from runner_agent.run.job import Deliveries, deliver
    from runner_agent.run.rollback import rollback
    from runner_agent.run.runtime import RunContext

    here = local or state_dir is not None
    job = None if here else _job()
    if job is None and not here:
        return _dispatch(identity, to, check, force, ref, project, section, agents_path, output)
    if job is not None:
        from runner_agent.gitlab.state_store import GitLabStateStore

        store: StateStore = GitLabStateStore(job.api)
    else:
        store = _store(True, state_dir, None, None)
    ctx = RunContext(
        registry=default_registry(agents_path), store=store, redactor=process_redactor()
    )
    reports = rollback(identity, to, ctx, check=check, force=force)
    deliver(reports, Deliveries(publish=_publisher(job)))
    if output == "json":
        print_json([r.to_dict() for r in reports] if len(reports) > 1 else reports[0].to_dict())
    else:
        click.echo(table(reports), nl=False)
    code = exit_code(reports)
    return code or (EXIT_FAILED if any(r.conflicts for r in reports) else 0)


def _dispatch(
    identity: str,
    to: str,
    check: bool,
    force: bool,
    ref: str | None,
    project: str | None,
    section: str | None,
    agents_path: tuple[Path, ...],
    output: str,
) -> int:
    """Send the rollback as one task of a normal dispatch: the job runs it (``run`` sees the
    task's ``rollback``), under the identity's resource group and lock."""
    from runner_agent.gitlab.dispatch import from_environ
    from runner_agent.gitlab.state_store import GitLabStateStore
    from runner_agent.model.tasks import tasks_from_data

    dispatcher = from_environ(
        os.environ, project=project, section=section, warn=lambda m: click.echo(m, err=True)
    )
    remember_secrets(list(dispatcher.api.secrets))
    found = GitLabStateStore(dispatcher.api).read(identity)
    if found is None or not found.revisions:
        raise InvalidInput(Problem("IDENTITY", f"{identity!r} has no revisions to roll back"))
    latest = found.revisions[-1]
    item = {
        **latest["task"],
        "identity": identity,
        "command": "update",
        "rollback": {"to": to, "force": force},
    }
    if check:
        item["check"] = True
    source = f"revision {latest['number']}"
    tasks = tasks_from_data([item], source, default_registry(agents_path))
    handle = dispatcher.submit(tasks, ref=ref)
    if output != "json":
        click.echo(f"dispatched {handle.dispatch_id}: {handle.web_url}")
    click.echo(handle.encode())
    return 0
