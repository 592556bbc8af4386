"""STACKL: an agent STACKL core can queue to, speaking STACKL's own shapes.

STACKL (github.com/stacklio/stackl) core enqueues an *invocation* (a plain dict) with arq on
Redis, on the queue named by the service's ``agent``; its agent fetches the stack instance from
STACKL's REST API, runs the functional requirement's Ansible role with the matching service
entry's provisioning parameters, posts outputs to ``/outputs`` and returns the invocation plus
``status`` and ``error_message``. This package does the same with runner_agent's tasks:

- :mod:`~runner_agent.stackl.invocation`: the invocation and stack instance -> a task;
- :mod:`~runner_agent.stackl.result`: a report -> STACKL's result and outputs update;
- :mod:`~runner_agent.stackl.client`: STACKL's REST API (stack instance, outputs);
- :mod:`~runner_agent.stackl.handler`: one invocation carried out, through GitLab or here;
- :mod:`~runner_agent.stackl.worker`: the arq worker (needs the ``stackl`` extra: arq).

docs/stackl.md has the mapping, with the STACKL source file behind each rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from runner_agent.model.agents import AgentRegistry
from runner_agent.model.tasks import Task
from runner_agent.stackl.client import StacklClient, StacklError, StacklNotFound
from runner_agent.stackl.handler import (
    GitLabBackend,
    LocalBackend,
    dispatch_id_for,
    handle_invocation,
)
from runner_agent.stackl.invocation import (
    Invocation,
    StacklInvalid,
    map_invocation,
    parse_invocation,
)
from runner_agent.stackl.invocation import identity_for as _identity_for
from runner_agent.stackl.result import failed_result, report_to_outputs, report_to_result

__all__ = [
    "GitLabBackend",
    "Invocation",
    "LocalBackend",
    "StacklClient",
    "StacklError",
    "StacklInvalid",
    "StacklNotFound",
    "dispatch_id_for",
    "failed_result",
    "handle_invocation",
    "identity_for",
    "invocation_to_tasks",
    "parse_invocation",
    "report_to_outputs",
    "report_to_result",
]


def identity_for(invocation: Mapping[str, Any]) -> str:
    """The identity of an invocation: stack instance, service, functional requirement and
    infrastructure target. Raises StacklInvalid."""
    return _identity_for(parse_invocation(invocation))


def invocation_to_tasks(
    invocation: Mapping[str, Any],
    stack_instance: Mapping[str, Any],
    *,
    registry: AgentRegistry,
    timeout: int | None = None,
    tags: Sequence[str] = (),
) -> list[Task]:
    """The task a STACKL invocation asks for, its config from ``stack_instance`` (as STACKL's
    ``GET /stack_instances/{name}`` returns it). Raises StacklInvalid naming the field."""
    mapped = map_invocation(
        parse_invocation(invocation), stack_instance, registry=registry, timeout=timeout, tags=tags
    )
    return [mapped.task]
