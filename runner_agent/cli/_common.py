"""Options and printing shared by the commands."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from runner_agent.core.errors import InvalidInput
from runner_agent.core.redact import process as process_redactor

if TYPE_CHECKING:
    from runner_agent.gitlab.retry import RetryPolicy

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Seams:
    """What the commands take from the outside world besides the environment, replaceable
    through ``main(argv, seams=...)``: a test passes its clock, so GitLab retries and polls
    sleep on it, instead of patching the library."""

    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    max_poll_interval: float = 60.0  # `wait`: the longest pause between two polls

    def retry_policy(self) -> RetryPolicy:
        """How GitLab requests are retried, sleeping on this clock."""
        from runner_agent.gitlab.retry import RetryPolicy

        return RetryPolicy(sleep=self.sleep, now=self.clock)


def seams() -> Seams:
    """The running command's seams (the defaults outside ``main``)."""
    ctx = click.get_current_context(silent=True)
    found = ctx.find_object(Seams) if ctx is not None else None
    return found if found is not None else Seams()


def warn(message: str) -> None:
    """A warning for the person or the job log: stderr, never stdout (scripts read that)."""
    click.echo(message, err=True)


def remember_secrets(values: list[str]) -> None:
    """Values the process must never print (the one masker: runner_agent.core.redact)."""
    process_redactor().add(values)


def redact(text: str) -> str:
    return process_redactor().text(text)


def output_option(func: F) -> F:
    return click.option(
        "--output",
        "-o",
        "output",
        type=click.Choice(["text", "json"]),
        default="text",
        show_default=True,
        help="text for people, json for scripts.",
    )(func)


def agents_path_option(func: F) -> F:
    return click.option(
        "--agents-path",
        "agents_path",
        multiple=True,
        type=click.Path(file_okay=False, path_type=Path),
        help="Extra folder of agent roles, searched before RUNNER_AGENT_PATH and the shipped "
        "agents. Repeatable.",
    )(func)


def bundle_options(func: F) -> F:
    """--dispatch-id and --checksum: which dispatch's bundle a job fetches, and the sha256 it
    must have (set by the agent project from its inputs, as RA_DISPATCH_ID and RA_CHECKSUM)."""
    func = click.option("--checksum", envvar="RA_CHECKSUM", default="", help="[env: RA_CHECKSUM]")(
        func
    )
    return click.option(
        "--dispatch-id", envvar="RA_DISPATCH_ID", default="", help="[env: RA_DISPATCH_ID]"
    )(func)


def html_option(help_text: str) -> Callable[[F], F]:
    """--html FILE: the reports as one HTML page, besides what the command prints."""
    return click.option(
        "--html",
        "html_path",
        type=click.Path(dir_okay=False, path_type=Path),
        help=help_text + " It shows counts by status, a row per task (failures first), then "
        "per task its hosts, failed Ansible tasks, drift per host and outputs. Self-contained "
        "(no script, nothing fetched); replaced atomically.",
    )


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def print_problems(exc: InvalidInput) -> None:
    for problem in exc.problems:
        click.echo(f"invalid: {redact(str(problem))}", err=True)


check_option = click.option(
    "--check",
    is_flag=True,
    help="Dry run: the commands run in Ansible's check mode; nothing on an endpoint changes "
    "and no state is written. The report says per host and key what would be added, "
    "changed or removed, with the values before and after (secrets masked).",
)
