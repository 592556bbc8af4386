"""Which of an endpoint's keys are secret, and their values masked in changes and drift.

A key is secret when the task's value for it holds an ``${env:}`` placeholder, or when it
matches one of the agent's ``no_log_keys`` patterns. Its values are masked whatever they are:
the value the task writes and the value the endpoint held before (which no redactor knows).
This is the runtime's half of the check contract in docs/agents.md.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runner_agent.core.redact import MASK
from runner_agent.model.agents import Agent
from runner_agent.model.placeholders import Placeholder, find_placeholders
from runner_agent.model.tasks import Task

__all__ = ["SEP", "SecretKeys", "flat_keys"]

SEP = "/"  # how the shipped agents flatten nested values into keys


def flat_keys(values: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{a: {b: 1}} -> {"a/b": 1}, as the agents flatten: lists and empty mappings are leaves."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        name = prefix + str(key)
        if isinstance(value, Mapping) and value:
            out.update(flat_keys(value, name + SEP))
        else:
            out[name] = value
    return out


def _holds_env(value: Any) -> bool:
    return any(isinstance(p, Placeholder) and p.kind == "env" for _, p in find_placeholders(value))


@dataclass(frozen=True)
class SecretKeys:
    keys: frozenset[str]
    patterns: tuple[str, ...] = ()
    # the ${env:NAME} each secret key's value comes from (a reference, never the value)
    sources: Mapping[str, str] | None = None

    @classmethod
    def of(cls, task: Task, agent: Agent) -> SecretKeys:
        values = task.config.get(agent.keys_from)
        flat = flat_keys(values) if isinstance(values, Mapping) else {}
        sources = {k: str(v) for k, v in flat.items() if _holds_env(v)}
        return cls(frozenset(sources), agent.no_log_keys, sources)

    def source(self, key: str) -> str | None:
        """The task's text for a secret key (its ``${env:NAME}`` placeholder), or None."""
        return (self.sources or {}).get(key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and (
            key in self.keys or any(fnmatch.fnmatchcase(key, p) for p in self.patterns)
        )

    def mask(self, per_host: Any) -> dict[str, list[dict[str, Any]]]:
        """Per host changes (or drift) with the values of secret keys masked; anything that is
        not a mapping of host to a list of items (a broken agent) counts as none."""
        if not isinstance(per_host, Mapping):
            return {}
        out: dict[str, list[dict[str, Any]]] = {}
        for host, items in per_host.items():
            if not isinstance(items, list):
                continue
            out[str(host)] = [self._item(i) for i in items if isinstance(i, Mapping)]
        return out

    def _item(self, item: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(item)
        if out.get("key") in self:
            for side in ("before", "after"):
                if side in out:
                    out[side] = MASK
        return out
