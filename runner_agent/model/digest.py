"""The digest: which commands a task runs. The one place that says it.

A task that names a command runs that command. A task without one runs the digest: install
when its identity is new, was uninstalled or its version changed, then update; so both must
be valid for the task's config before anything runs.
"""

from __future__ import annotations

from runner_agent.model.state import State

__all__ = ["DIGEST", "candidates", "digest"]

DIGEST = ("install", "update")


def candidates(command: str | None) -> tuple[str, ...]:
    """Every command a task may run, checked against its agent before anything runs."""
    return (command,) if command else DIGEST


def digest(command: str | None, version: str, state: State | None) -> list[str]:
    """The commands to run now: the task's own, or install (when new, uninstalled or the
    ``version`` to install differs from the installed one) followed by update."""
    if command:
        return [command]
    if state is None or not state.installed or state.installed_version != version:
        return list(DIGEST)
    return [DIGEST[-1]]
