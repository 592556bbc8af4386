"""The exit-code policy: the worst outcome of the tasks decides, the same everywhere."""

from __future__ import annotations

from runner_agent.report.model import Report, Status
from runner_agent.report.outcome import exit_code


def report(status: Status, *, timed_out: bool = False) -> Report:
    return Report("acme/web", "kv_file", "1.0", status, timed_out=timed_out)


def test_succeeded_and_skipped_tasks_exit_0() -> None:
    assert exit_code([report(Status.SUCCESS), report(Status.SKIPPED)]) == 0


def test_a_failed_task_exits_1() -> None:
    assert exit_code([report(Status.SUCCESS), report(Status.FAILED)]) == 1


def test_a_task_in_error_exits_1() -> None:
    assert exit_code([report(Status.ERROR), report(Status.SUCCESS)]) == 1


def test_a_report_that_never_arrived_exits_1() -> None:
    assert exit_code([report(Status.SUCCESS)], missing=1) == 1


def test_a_locked_task_exits_3_even_beside_a_failure() -> None:
    assert exit_code([report(Status.FAILED), report(Status.LOCKED)]) == 3


def test_a_timed_out_task_exits_5_even_beside_a_lock() -> None:
    timed_out = report(Status.ERROR, timed_out=True)
    assert exit_code([report(Status.LOCKED), timed_out, report(Status.FAILED)]) == 5
