"""Agents: Ansible roles whose task entry points are the commands.

An agent is a role folder holding ``tasks/<command>.yml`` for each command (files whose name
starts with ``_`` are helpers, not commands), ``meta/argument_specs.yml`` declaring the config
each entry point accepts, and ``meta/runner_agent.yml`` with the agent's version, description and
the commands that may run beside others (``readonly``). Shipped agents are the roles of the
``runner_agent.agents`` collection; more are found on ``RUNNER_AGENT_PATH`` (``:``-separated),
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

from runner_agent.core.errors import InvalidInput, Problem
from runner_agent.core.resources import shipped_roles_dir
from runner_agent.model.placeholders import Placeholder, find_placeholders
from runner_agent.model.taskfile import plain

__all__ = ["Agent", "AgentRegistry", "Command", "check_config", "default_registry"]

_ARG_NAME = re.compile(
    r"argument '([^']+)'|value of (\w+) must|arguments?: ([\w, ]+)$|for option '([^']+)'"
)
_DUMMY: dict[str, Any] = {
    "int": 0,
    "float": 0.0,
    "bool": False,
    "bytes": "1",
    "bits": "1",
    "json": "{}",
    "jsonarg": "{}",
}


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
    # the check contract (docs/agents.md): the config option whose flattened keys are the
    # endpoint's keys, and the keys (globs) whose values are never shown
    keys_from: str = "values"
    no_log_keys: tuple[str, ...] = ()

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
                c.name: {"description": c.description, "options": plain(c.options)}
                for c in self.commands.values()
            },
            "readonly": sorted(self.readonly),
            "keys_from": self.keys_from,
            "no_log_keys": list(self.no_log_keys),
        }


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise InvalidInput(Problem(str(path), f"cannot read agent metadata: {exc}")) from exc


def _mapping(value: Any, where: Path, field: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput(
            Problem(str(where), f"{field} must be a mapping, not {type(value).__name__}")
        )
    return value


def _options(spec: dict[str, Any], where: Path, entry: str) -> dict[str, Any]:
    options = _mapping(spec.get("options"), where, f"argument_specs.{entry}.options")
    for name, option in options.items():
        _mapping(option, where, f"argument_specs.{entry}.options.{name}")
    return options


def load_agent(role: Path) -> Agent:
    """Read one role folder as an agent. Raises InvalidInput when its metadata is broken."""
    meta_file = role / "meta" / "runner_agent.yml"
    meta = _mapping(_read_yaml(meta_file), meta_file, "the document")
    specs_file = role / "meta" / "argument_specs.yml"
    specs = (
        _mapping(_read_yaml(specs_file), specs_file, "the document") if specs_file.is_file() else {}
    )
    entry_points = _mapping(specs.get("argument_specs"), specs_file, "argument_specs")
    commands = {}
    for tasks_file in sorted((role / "tasks").glob("*.yml")):
        name = tasks_file.stem
        if name.startswith("_") or name == "main":
            continue
        spec = _mapping(entry_points.get(name), specs_file, f"argument_specs.{name}")
        commands[name] = Command(
            name=name,
            description=str(spec.get("short_description", "")),
            options=_options(spec, specs_file, name),
        )
    readonly = meta.get("readonly") or []
    if not isinstance(readonly, list) or not all(isinstance(c, str) for c in readonly):
        raise InvalidInput(Problem(str(meta_file), "readonly must be a list of command names"))
    no_log_keys = meta.get("no_log_keys") or []
    if not isinstance(no_log_keys, list) or not all(isinstance(k, str) for k in no_log_keys):
        raise InvalidInput(Problem(str(meta_file), "no_log_keys must be a list of key patterns"))
    keys_from = meta.get("keys_from", "values")
    if not isinstance(keys_from, str) or not keys_from:
        raise InvalidInput(Problem(str(meta_file), "keys_from must be a config option name"))
    return Agent(
        name=role.name,
        path=role,
        version=str(meta.get("version", "0")),
        description=str(meta.get("description", "")),
        commands=commands,
        readonly=frozenset(readonly),
        keys_from=keys_from,
        no_log_keys=tuple(no_log_keys),
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
            raise InvalidInput(f"unknown agent {name!r} (known: {self.known()})") from None

    def known(self) -> str:
        """The agents' names, for a message: "a, b" or "none"."""
        return ", ".join(sorted(self._agents)) or "none"


def check_config(config: Mapping[str, Any], options: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Check a config against an Ansible argument spec, as the role itself will at run time.

    Placeholders are not resolved yet: each stands in for a value of the option's type.
    Returns (field, message) pairs; the field is the option's dotted path under ``config``.
    """
    from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
    from ansible.module_utils.errors import UnsupportedError

    if not options:
        return []
    params = _stand_ins(config, options)
    try:
        result = ArgumentSpecValidator(dict(options)).validate(params)
    except (TypeError, AttributeError, ValueError) as exc:
        # Ansible's sub-option checks trip over a wrong-typed parent (an int where a dict
        # with options goes: "argument of type 'int' is not iterable"); the parents' own
        # checks, without their sub-options, then say what is wrong
        shallow = {k: {a: b for a, b in v.items() if a != "options"} for k, v in options.items()}
        result = ArgumentSpecValidator(shallow).validate(params)
        if not result.errors:
            return [("config", f"cannot check the config against the agent's spec: {exc}")]
    out = []
    for err in result.errors:
        if isinstance(err, UnsupportedError):
            continue  # reported below, one field each
        out.append(_error_field(" ".join(str(err).split())))
    for names in sorted(_dotted(p) for p in result.unsupported_parameters):
        parent, _, _ = names.rpartition(".")
        accepted = ", ".join(sorted(_sub_options(options, parent))) or "none"
        out.append((f"config.{names}", f"unknown option (the agent accepts: {accepted})"))
    return out


_FOUND_IN = re.compile(r" found in '?([\w-]+(?: -> [\w-]+)*)'?(\.(?= |$))?")


def _error_field(message: str) -> tuple[str, str]:
    """The config field an Ansible validation message is about, and the message without
    Ansible's own "found in 'a -> b'" (the field says it)."""
    context = ""
    found = _FOUND_IN.search(message)
    if found:
        context = ".".join(found.group(1).split(" -> "))
        message = (message[: found.start()] + message[found.end() :]).strip()
    m = _ARG_NAME.search(message)
    name = next((g for g in m.groups() if g), "") if m else ""
    if "," in name:
        name = ""
    path = ".".join(p for p in ("config", context, name) if p)
    return path, message


def _dotted(name: Any) -> str:
    return ".".join(map(str, name)) if isinstance(name, tuple | list) else str(name)


def _sub_options(options: Mapping[str, Any], parent: str) -> list[str]:
    spec: Mapping[str, Any] = options
    for part in parent.split(".") if parent else ():
        spec = (spec.get(part) or {}).get("options") or {}
    return [str(k) for k in spec]


def _stand_ins(config: Mapping[str, Any], options: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of config where each whole-value placeholder is a dummy the option accepts."""
    whole = {
        path
        for path, found in find_placeholders(config)
        if isinstance(found, Placeholder) and found.whole
    }
    if not whole:
        return dict(config)

    def walk(value: Any, spec: Mapping[str, Any], path: str) -> Any:
        if path in whole:
            return _dummy(spec)
        if isinstance(value, Mapping):
            sub = spec.get("options") or {}
            return {
                k: walk(v, sub.get(k) or {}, f"{path}.{k}" if path else str(k))
                for k, v in value.items()
            }
        if isinstance(value, list):
            element = {
                "type": spec.get("elements", "raw"),
                "options": spec.get("options"),
                "choices": spec.get("choices"),
            }
            return [walk(v, element, f"{path}[{i}]") for i, v in enumerate(value)]
        return value

    return {k: walk(v, options.get(k) or {}, k) for k, v in config.items()}


def _dummy(spec: Mapping[str, Any]) -> Any:
    """A value of the option's type that passes its choices and its required sub-options."""
    kind = str(spec.get("type") or "str")
    if kind == "list":
        return []
    choices = spec.get("choices")
    if choices:
        return next(iter(choices))
    if kind == "dict":
        sub = spec.get("options") or {}
        return {k: _dummy(s or {}) for k, s in sub.items() if (s or {}).get("required")}
    return _DUMMY.get(kind, "placeholder")


def default_search_path() -> list[Path]:
    extra = [Path(p) for p in os.environ.get("RUNNER_AGENT_PATH", "").split(os.pathsep) if p]
    return [*extra, shipped_roles_dir()]


def default_registry(extra: Iterable[Path] = ()) -> AgentRegistry:
    """Agents from ``extra`` folders, then RUNNER_AGENT_PATH, then the shipped ones."""
    return AgentRegistry([*extra, *default_search_path()])
