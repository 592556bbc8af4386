"""Options and printing shared by the commands."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from runner_agent.core.errors import InvalidInput
from runner_agent.core.redact import process as process_redactor

F = TypeVar("F", bound=Callable[..., Any])


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
