"""runner_agent: ephemeral agents that live only as GitLab pipeline jobs.

The public API; everything not listed in ``__all__`` is private. The dispatcher's names load
on first use, so a local run does not import the GitLab client.
"""

from __future__ import annotations

__version__ = "0.1.0"

import importlib
from typing import Any

from runner_agent.core.errors import (
    GitLabError,
    InvalidInput,
    LockedError,
    Problem,
    RunnerAgentError,
    TaskFailed,
    TimedOut,
)
from runner_agent.model.agents import Agent, AgentRegistry, default_registry
from runner_agent.model.state import LocalStateStore, State, StateStore
from runner_agent.model.tasks import Task, load_tasks, tasks_from_data
from runner_agent.report.model import Report, Status, merge_reports
from runner_agent.run.runtime import RunContext, run_tasks

_LAZY = {
    "Dispatcher": "runner_agent.gitlab.dispatch",
    "Handle": "runner_agent.gitlab.dispatch",
    "Phase": "runner_agent.gitlab.dispatch",
    "load_handle": "runner_agent.gitlab.dispatch",
    "handle_invocation": "runner_agent.stackl",
    "invocation_to_tasks": "runner_agent.stackl",
    "report_to_result": "runner_agent.stackl",
    "report_to_outputs": "runner_agent.stackl",
}

__all__ = [
    "Agent",
    "AgentRegistry",
    "Dispatcher",
    "GitLabError",
    "Handle",
    "InvalidInput",
    "LocalStateStore",
    "LockedError",
    "Phase",
    "Problem",
    "Report",
    "RunContext",
    "RunnerAgentError",
    "State",
    "StateStore",
    "Status",
    "Task",
    "TaskFailed",
    "TimedOut",
    "__version__",
    "default_registry",
    "handle_invocation",
    "invocation_to_tasks",
    "load_handle",
    "load_tasks",
    "merge_reports",
    "report_to_outputs",
    "report_to_result",
    "run_tasks",
    "tasks_from_data",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'runner_agent' has no attribute {name!r}")
