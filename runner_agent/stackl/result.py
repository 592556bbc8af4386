"""What goes back to STACKL: the automation result and the outputs update.

- The result is the invocation dict itself plus ``status`` (``READY`` or ``FAILED``) and
  ``error_message``, as ``invoke_automation`` in ``stackl/agent/agent/main.py`` returns it.
  STACKL core's ``update_status`` (``stackl/core/core/agent_broker/agent_task_broker.py``)
  reads ``functional_requirement``, ``infrastructure_target``, ``service``, ``status`` and
  ``error_message`` from it: the invocation's keys are all kept, whatever went wrong.
- The outputs update is STACKL's ``OutputsUpdate`` (``stack_instance``, ``service``,
  ``infrastructure_target``, ``outputs``; ``stackl/core/core/manager/stack_manager.py``), the
  body of ``POST /outputs`` which STACKL's Ansible callback plugin sends with the run's
  ``set_stats`` data (``ansible_plugins/callback.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from runner_agent.report.model import Report, Status

__all__ = [
    "FAILED",
    "READY",
    "TIMEOUT_MESSAGE",
    "failed_result",
    "report_to_outputs",
    "report_to_result",
]

READY = "READY"
FAILED = "FAILED"
TIMEOUT_MESSAGE = "timeout in invoked job"  # STACKL's agent's own words (main.py)
_NAMES = ("stack_instance", "service", "functional_requirement", "infrastructure_target")

Result = dict[str, Any]


def _base(invocation: Any) -> Result:
    if isinstance(invocation, Mapping):
        return dict(invocation)
    return {"invocation": invocation}  # not even a mapping: keep it, as data, for the log


def failed_result(invocation: Any, message: str) -> Result:
    """The invocation, FAILED with ``message``."""
    return {**_base(invocation), "status": FAILED, "error_message": message}


def _error(report: Report) -> str:
    if report.timed_out:
        return f"{TIMEOUT_MESSAGE}: {report.error}" if report.error else TIMEOUT_MESSAGE
    if report.error:
        return report.error
    for command in report.commands:
        for failed in command.failed_tasks:
            return f"{failed.host}: {failed.task}: {failed.message}"
        if command.error:
            return command.error
    return ""


def report_to_result(
    report: Report, invocation: Mapping[str, Any], ignored: Sequence[str] = ()
) -> Result:
    """STACKL's result for a run: READY when the task succeeded (or had nothing to do), else
    FAILED with the run's error, the first failed Ansible task (``host: task: message``) or
    the command's error. ``ignored`` parameters are named in ``ignored_parameters``."""
    ok = report.status in (Status.SUCCESS, Status.SKIPPED)
    result: Result = {
        **_base(invocation),
        "status": READY if ok else FAILED,
        "error_message": "" if ok else _error(report) or f"run ended {report.status.value}",
    }
    if ignored:
        result["ignored_parameters"] = list(ignored)
    return result


def report_to_outputs(report: Report, invocation: Mapping[str, Any]) -> Result:
    """STACKL's ``OutputsUpdate`` for a run: its ``set_stats`` outputs on the invocation's
    stack instance, service and infrastructure target."""
    return {
        **{
            name: str(invocation.get(name, ""))
            for name in _NAMES
            if name != "functional_requirement"
        },
        "outputs": dict(report.outputs),
    }
