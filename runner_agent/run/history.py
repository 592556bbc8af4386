"""Record a run's revision (runner_agent.model.revisions) from its report: the values before
and after of every key it touched, per host; secret keys only as references to their source."""

from __future__ import annotations

import getpass
from collections.abc import Mapping
from typing import Any

from runner_agent.core.redact import MASK
from runner_agent.model.agents import Agent
from runner_agent.model.revisions import add_revision, expected_after
from runner_agent.model.state import State
from runner_agent.model.tasks import Task
from runner_agent.report.model import Report
from runner_agent.run.secret_keys import SEP, SecretKeys

__all__ = ["record_revision", "who"]


def who(environ: Mapping[str, str]) -> dict[str, str]:
    """Who started the run: the GitLab user in a job (GITLAB_USER_LOGIN), else the local user."""
    if environ.get("GITLAB_CI") == "true":
        return {"user": environ.get("GITLAB_USER_LOGIN", ""), "via": "gitlab"}
    try:
        user = environ.get("USER") or environ.get("LOGNAME") or getpass.getuser()
    except (KeyError, OSError):
        user = ""
    return {"user": user, "via": "local"}


def record_revision(
    new: State, old: State | None, task: Task, agent: Agent, report: Report, ctx: Any
) -> int | None:
    """Add the run's revision to ``new`` when it changed keys; its number, or None."""
    changes = report.key_changes
    if not any(changes.values()):
        return None
    secret = SecretKeys.of(task, agent)
    earlier = old.revisions if old else []
    before: dict[str, dict[str, Any]] = {}
    after: dict[str, dict[str, Any]] = {}
    for host, items in changes.items():
        for item in items:
            key = str(item["key"])
            if key in secret:
                was = expected_after(earlier, host, key) if "before" in item else None
                before.setdefault(host, {})[key] = (
                    dict(was) if was and "absent" not in was else _ref(item, "before", None)
                )
                after.setdefault(host, {})[key] = _ref(item, "after", secret.source(key))
            else:
                before.setdefault(host, {})[key] = _plain(item, "before")
                after.setdefault(host, {})[key] = _plain(item, "after")
    task_data = task.to_dict()
    task_data.pop("check", None)
    values = task_data.get("config", {}).get(agent.keys_from)
    if isinstance(values, dict):
        task_data["config"][agent.keys_from] = _scrub(values, secret)
    revision: dict[str, Any] = {
        "time": ctx.clock().isoformat(),
        "command": ",".join(c.command for c in report.commands),
        "status": report.status.value,
        "agent": agent.name,
        "agent_version": agent.version,
        "version": report.version,
        "who": who(ctx.environ),
        "pipeline_url": report.pipeline_url,
        "task": task_data,
        "hosts": before,
        "after": after,
        **(ctx.revision_note or {}),
    }
    return add_revision(new, ctx.redactor.values(revision))


def _plain(item: Mapping[str, Any], side: str) -> dict[str, Any]:
    return {"value": item[side]} if side in item else {"absent": True}


def _ref(item: Mapping[str, Any], side: str, source: str | None) -> dict[str, Any]:
    return {"secret": source} if side in item else {"absent": True}


def _scrub(values: Mapping[str, Any], secret: SecretKeys, prefix: str = "") -> dict[str, Any]:
    """The values with every no_log key's literal value masked (``${env:}`` ones are already
    references): the history never holds a value the agent declares secret."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = prefix + str(key)
        if isinstance(value, Mapping) and value:
            out[key] = _scrub(value, secret, name + SEP)
        elif name in secret and name not in secret.keys:
            out[key] = MASK
        else:
            out[key] = value
    return out
