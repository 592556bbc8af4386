"""runner_agent: ephemeral agents that live only as GitLab pipeline jobs.

The public API; everything not listed in ``__all__`` is private.
"""

from __future__ import annotations

__version__ = "0.1.0"

from runner_agent.agents import Agent, AgentRegistry, default_registry
from runner_agent.errors import (
    GitLabError,
    InvalidInput,
    LockedError,
    Problem,
    RunnerAgentError,
    TaskFailed,
    TimedOut,
)
from runner_agent.tasks import Task, load_tasks, tasks_from_data

__all__ = [
    "Agent",
    "AgentRegistry",
    "GitLabError",
    "InvalidInput",
    "LockedError",
    "Problem",
    "RunnerAgentError",
    "Task",
    "TaskFailed",
    "TimedOut",
    "__version__",
    "default_registry",
    "load_tasks",
    "tasks_from_data",
]
