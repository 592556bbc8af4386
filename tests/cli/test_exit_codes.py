"""The one place where an error becomes an exit code: each error class exits with its own,
a stop with 130, and the README's table states every code."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from runner_agent.cli import cli, main
from runner_agent.core import errors
from runner_agent.core.errors import (
    GitLabError,
    InvalidInput,
    LockedError,
    RunnerAgentError,
    TaskFailed,
    TimedOut,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def raising() -> Iterator[list[BaseException]]:
    """A command ``boom`` that raises what the test puts in the list."""
    raised: list[BaseException] = []

    @click.command(name="boom")
    def boom() -> int:
        raise raised[0]

    cli.add_command(boom)
    try:
        yield raised
    finally:
        cli.commands.pop("boom")


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (TaskFailed("a task failed"), 1),
        (InvalidInput("bad"), 2),
        (LockedError("locked"), 3),
        (GitLabError("unreachable"), 4),
        (TimedOut("too long"), 5),
        (KeyboardInterrupt(), 130),
    ],
    ids=["failed-1", "invalid-2", "locked-3", "gitlab-4", "timeout-5", "interrupted-130"],
)
def test_each_error_exits_with_its_code(
    raising: list[BaseException], error: BaseException, code: int
) -> None:
    raising.append(error)
    assert main(["boom"]) == code


def test_a_usage_error_is_invalid_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "--no-such-option"]) == 2
    assert "no-such-option" in capsys.readouterr().err


def test_every_error_class_carries_a_documented_code() -> None:
    classes = [RunnerAgentError, TaskFailed, InvalidInput, LockedError, GitLabError, TimedOut]
    codes = {getattr(errors, n) for n in errors.__all__ if n.startswith("EXIT_")}
    assert {c.exit_code for c in classes} <= codes


def test_the_readme_table_states_every_code() -> None:
    codes = sorted(getattr(errors, n) for n in errors.__all__ if n.startswith("EXIT_"))
    assert codes == [0, 1, 2, 3, 4, 5, 130]
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    rows = {int(m.group(1)) for m in re.finditer(r"^\| ([0-9]+) \| \S", text, re.M)}
    assert set(codes) <= rows, f"exit codes missing from the README's table: {set(codes) - rows}"
