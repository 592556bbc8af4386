"""Agents: Ansible roles whose task entry points are the commands.

An agent is a role folder holding ``tasks/<command>.yml`` for each command (files whose name
starts with ``_`` are helpers, not commands), ``meta/argument_specs.yml`` declaring the config
each entry point accepts, and ``meta/runner_agent.yml`` with the agent's version, description and
the commands that may run beside others (``readonly``). Shipped agents live under the package's
``ansible/roles``; more are found on ``RUNNER_AGENT_PATH`` (folders of roles, ``:``-separated),
and an agent found there first shadows a shipped one of the same name.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from runner_agent.errors import InvalidInput, Problem
from runner_agent.placeholders import Placeholder, find_placeholders
from runner_agent.resources import ansible_dir
from runner_agent.tasks import Task

__all__ = ["LIFECYCLE", "Agent", "AgentRegistry", "Command", "default_registry"]

LIFECYCLE = ("install", "update", "uninstall", "cycle")
_DIGEST = ("install", "update")  # what a task without a command may run
_ARG_NAME = re.compile(r"argument '([^']+)'|value of (\w+) must|arguments?: ([\w, ]+)$")
_DUMMY = {"int": 0, "float": 0.0, "bool": False, "list": [], "dict": {}}


@dataclass(frozen=True)
class Command:
    name: str
    description: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)  # Ansible argument spec options


@dataclass(frozen=True)
class Agent:
    name: str
    path: Path
    version: str
    description: str
    commands: Mapping[str, Command]
    readonly: frozenset[str] = frozenset()

    @property
    def roles_path(self) -> Path:
        return self.path.parent

    def takes_lock(self, command: str) -> bool:
        return command not in self.readonly

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "path": str(self.path),
            "commands": {
                c.name: {"description": c.description, "options": _plain(c.options)}
                for c in self.commands.values()
            },
            "readonly": sorted(self.readonly),
        }


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInput(Problem(str(path), f"cannot read agent metadata: {exc}")) from exc


def load_agent(role: Path) -> Agent:
    """Read one role folder as an agent. Raises InvalidInput when its metadata is broken."""
    meta = _read_yaml(role / "meta" / "runner_agent.yml") or {}
    specs_file = role / "meta" / "argument_specs.yml"
    specs = (_read_yaml(specs_file) or {}) if specs_file.is_file() else {}
    entry_points = specs.get("argument_specs", {}) or {}
    commands = {}
    for tasks_file in sorted((role / "tasks").glob("*.yml")):
        name = tasks_file.stem
        if name.startswith("_") or name == "main":
            continue
        spec = entry_points.get(name, {}) or {}
        commands[name] = Command(
            name=name,
            description=str(spec.get("short_description", "")),
            options=spec.get("options", {}) or {},
        )
    return Agent(
        name=role.name,
        path=role,
        version=str(meta.get("version", "0")),
        description=str(meta.get("description", "")),
        commands=commands,
        readonly=frozenset(meta.get("readonly", ())),
    )


class AgentRegistry:
    """The agents found on a search path; the metadata service behind ``runner-agent agents``."""

    def __init__(self, search_path: Iterable[Path]) -> None:
        self.search_path = [Path(p).resolve() for p in search_path]
        self._agents: dict[str, Agent] = {}
        for folder in self.search_path:
            if not folder.is_dir():
                continue
            for role in sorted(folder.iterdir()):
                if (role / "meta" / "runner_agent.yml").is_file() and role.name not in self._agents:
                    self._agents[role.name] = load_agent(role)

    def __iter__(self) -> Any:
        return iter(sorted(self._agents.values(), key=lambda a: a.name))

    def __contains__(self, name: object) -> bool:
        return name in self._agents

    def get(self, name: str) -> Agent:
        """The agent ``name``. Raises InvalidInput when there is none."""
        try:
            return self._agents[name]
        except KeyError:
            known = ", ".join(sorted(self._agents)) or "none"
            raise InvalidInput(f"unknown agent {name!r} (known: {known})") from None

    def commands_for(self, task: Task) -> tuple[str, ...]:
        """The commands a task may run: its own, or the digest's candidates."""
        return (task.command,) if task.command else _DIGEST

    def check_task(self, task: Task) -> list[Problem]:
        """Problems with a task's agent, command and config; empty when it may run."""
        agent = self._agents.get(task.agent)
        if agent is None:
            known = ", ".join(sorted(self._agents)) or "none"
            return [
                Problem(
                    task.source,
                    f"unknown agent {task.agent!r} (known: {known})",
                    task.document,
                    "agent",
                )
            ]
        problems = []
        for command in self.commands_for(task):
            spec = agent.commands.get(command)
            if spec is None:
                declared = ", ".join(agent.commands) or "none"
                problems.append(
                    Problem(
                        task.source,
                        f"agent {agent.name!r} has no command {command!r} (it has: {declared})",
                        task.document,
                        "command" if task.command else "agent",
                    )
                )
                continue
            for fld, message in check_config(task.config, spec.options):
                problems.append(
                    Problem(task.source, f"{message} (command {command})", task.document, fld)
                )
        return _unique(problems)


def _unique(problems: list[Problem]) -> list[Problem]:
    seen: dict[tuple[str, str], Problem] = {}
    for p in problems:
        seen.setdefault((p.field, p.message.rsplit(" (command", 1)[0]), p)
    return list(seen.values())


def check_config(config: Mapping[str, Any], options: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Check a config against an Ansible argument spec, as the role itself will at run time.

    Placeholders are not resolved yet: each stands in for a value of the option's type.
    Returns (field, message) pairs.
    """
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

    if not options:
        return []
    result = ArgumentSpecValidator(dict(options)).validate(_stand_ins(config, options))
    out = []
    for err in result.errors:
        if type(err).__name__ == "UnsupportedError":
            continue  # reported below, one field each
        message = " ".join(str(err).split())
        m = _ARG_NAME.search(message)
        name = next((g for g in m.groups() if g), "") if m else ""
        fld = f"config.{name}" if name and "," not in name else "config"
        out.append((fld, message))
    for name in sorted(result.unsupported_parameters):
        supported = ", ".join(sorted(options))
        out.append((f"config.{name}", f"unknown option (the agent accepts: {supported})"))
    return out


def _stand_ins(config: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of config where each whole-value placeholder is a dummy of the declared type."""
    whole = {
        path
        for path, found in find_placeholders(config)
        if isinstance(found, Placeholder) and found.whole
    }
    if not whole:
        return dict(config)

    def walk(value: Any, spec: Mapping[str, Any], path: str) -> Any:
        if path in whole:
            return _DUMMY.get(str(spec.get("type", "str")), "placeholder")
        if isinstance(value, Mapping):
            sub = spec.get("options") or {}
            return {
                k: walk(v, sub.get(k, {}), f"{path}.{k}" if path else k) for k, v in value.items()
            }
        return value

    return {k: walk(v, options.get(k, {}), k) for k, v in config.items()}


def default_search_path() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("RUNNER_AGENT_PATH", "").split(os.pathsep) if p]
    return [*extra, ansible_dir() / "roles"]


def default_registry(extra: Iterable[Path] = ()) -> AgentRegistry:
    """Agents from ``extra`` folders, then RUNNER_AGENT_PATH, then the shipped ones."""
    return AgentRegistry([*extra, *default_search_path()])
