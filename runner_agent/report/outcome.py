"""The exit-code policy: one function from the tasks' outcomes to the process's exit code.

``run``, ``collect``, ``summarize``, ``reports``, ``wait`` and ``dispatch --wait`` all end
with :func:`exit_code`, so a task set exits the same whether it ran here or was dispatched.
The worst outcome wins: a timed-out task (5) over a locked one (3) over any other task that
did not succeed, or a report that never arrived (1); success and skipped tasks are 0.

The codes that are not outcomes come from errors (``runner_agent.core.errors``: each class
carries its code) and are mapped in one place, ``runner_agent.cli``: 2 invalid input,
4 GitLab, 130 interrupted. The README's table lists them all.
"""

from __future__ import annotations

from collections.abc import Iterable

from runner_agent.core.errors import EXIT_FAILED, EXIT_LOCKED, EXIT_OK, EXIT_TIMEOUT
from runner_agent.report.model import Report, Status

__all__ = ["exit_code"]

_FINE = (Status.SUCCESS, Status.SKIPPED)


def exit_code(reports: Iterable[Report], *, missing: int = 0) -> int:
    """The exit code for these task outcomes; ``missing`` counts tasks whose report never
    arrived (a killed job writes none), each as bad as a failure."""
    found = list(reports)
    if any(r.timed_out for r in found):
        return EXIT_TIMEOUT
    if any(r.status is Status.LOCKED for r in found):
        return EXIT_LOCKED
    if missing or any(r.status not in _FINE for r in found):
        return EXIT_FAILED
    return EXIT_OK
