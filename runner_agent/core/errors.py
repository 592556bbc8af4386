"""One exception hierarchy; each class carries the exit code the CLI maps it to.

Only ``runner_agent.cli`` turns these into exit codes; the tasks' outcomes become one in
``runner_agent.report.outcome``. Library code raises them, translating
third-party exceptions once, at the boundary, with ``raise ... from``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "EXIT_FAILED",
    "EXIT_GITLAB",
    "EXIT_INTERRUPTED",
    "EXIT_INVALID",
    "EXIT_LOCKED",
    "EXIT_OK",
    "EXIT_TIMEOUT",
    "GitLabError",
    "InvalidInput",
    "LockedError",
    "Problem",
    "RunnerAgentError",
    "TaskFailed",
    "TimedOut",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INVALID = 2
EXIT_LOCKED = 3
EXIT_GITLAB = 4
EXIT_TIMEOUT = 5
EXIT_INTERRUPTED = 130  # as a shell reports a command ended by a signal (128 + SIGINT)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input, located as precisely as we can."""

    source: str  # file name, or "<api>" for values handed in from Python
    message: str
    document: int | None = None  # index of the task in the file (list item or YAML document)
    field: str = ""  # dotted path inside the task, such as "config.values.port"

    def __str__(self) -> str:
        where = self.source
        if self.document is not None:
            where += f"[{self.document}]"
        if self.field:
            where += f" {self.field}"
        return f"{where}: {self.message}"


class RunnerAgentError(Exception):
    """Root of every error runner_agent raises on purpose."""

    exit_code = EXIT_FAILED


class InvalidInput(RunnerAgentError):
    """The input is wrong; nothing was sent, written or run. Carries every problem found."""

    exit_code = EXIT_INVALID

    def __init__(self, problems: list[Problem] | Problem | str) -> None:
        if isinstance(problems, str):
            problems = [Problem("<input>", problems)]
        elif isinstance(problems, Problem):
            problems = [problems]
        self.problems: list[Problem] = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class TaskFailed(RunnerAgentError):
    """At least one task ran and did not succeed."""

    exit_code = EXIT_FAILED


class LockedError(RunnerAgentError):
    """A divergent command is already running for the identity."""

    exit_code = EXIT_LOCKED


class GitLabError(RunnerAgentError):
    """GitLab could not be reached, or refused the request."""

    exit_code = EXIT_GITLAB


class TimedOut(RunnerAgentError):
    """A run or a wait passed its deadline."""

    exit_code = EXIT_TIMEOUT
