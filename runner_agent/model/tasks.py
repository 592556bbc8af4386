"""Tasks: parse and validate task files at the edge, before anything is sent or run.

A task file is YAML or JSON and holds one task, a list of tasks, or several YAML documents.
Every problem found is reported at once, each naming the file, the task's index and the field.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from runner_agent.core.errors import InvalidInput, Problem
from runner_agent.core.resources import schema_path
from runner_agent.model.agents import AgentRegistry, check_config
from runner_agent.model.digest import candidates
from runner_agent.model.identity import IDENTITY_PATTERN, identity_reason
from runner_agent.model.placeholders import Placeholder, find_placeholders, forbidden_env
from runner_agent.model.taskfile import MAX_FILE_BYTES, join_path, plain, read_documents

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_FILE_BYTES",
    "Task",
    "agent_problems",
    "as_check",
    "check_tasks",
    "dotenv_prefix",
    "load_tasks",
    "parse_duration",
    "tasks_from_data",
    "with_command",
]

MAX_DEPTH = 64  # nesting inside one task; deeper input would exhaust stacks downstream
DEFAULT_TIMEOUT = 3600
MAX_TIMEOUT = 7 * 24 * 3600
LOCAL_HOST = "localhost"
# config keys become extra vars: none may set a connection, a magic or a toolkit variable
RESERVED_PREFIXES = ("ansible_", "runner_agent_")
RESERVED_NAMES = frozenset(
    {
        "environment",
        "group_names",
        "groups",
        "hostvars",
        "inventory_dir",
        "inventory_file",
        "inventory_hostname",
        "inventory_hostname_short",
        "omit",
        "play_hosts",
        "playbook_dir",
        "role_name",
        "role_names",
        "role_path",
        "vars",
    }
)

_DURATION = re.compile(r"^([1-9][0-9]*)(s|m|h)$")
_UNITS = {"s": 1, "m": 60, "h": 3600}


@dataclass(frozen=True)
class Task:
    """One validated task. Build it with :func:`load_tasks` or :func:`tasks_from_data`."""

    identity: str
    agent: str
    command: str | None = None
    version: str | None = None
    config: Mapping[str, Any] = field(default_factory=dict)
    hosts: Sequence[str] | Mapping[str, Any] = (LOCAL_HOST,)
    tags: tuple[str, ...] = ()
    timeout: int = DEFAULT_TIMEOUT
    outputs_from: tuple[str, ...] = ()
    source: str = "<api>"
    document: int = 0
    check: bool = False  # a dry run: check mode, nothing written (the schema's "check")
    rollback: Mapping[str, Any] | None = None  # {to, force}: a dispatched rollback

    @property
    def where(self) -> str:
        return f"{self.source}[{self.document}]"

    def to_dict(self) -> dict[str, Any]:
        """The task in task-file form; :func:`tasks_from_data` reads it back unchanged."""
        out: dict[str, Any] = {"identity": self.identity, "agent": self.agent}
        if self.command:
            out["command"] = self.command
        if self.check:
            out["check"] = True
        if self.rollback is not None:
            out["rollback"] = dict(self.rollback)
        if self.version is not None:
            out["version"] = self.version
        out["config"] = plain(self.config)
        out["hosts"] = plain(self.hosts)
        if self.tags:
            out["runner"] = {"tags": list(self.tags)}
        out["timeout"] = self.timeout
        if self.outputs_from:
            out["outputs_from"] = list(self.outputs_from)
        return out

    def inventory(self) -> dict[str, Any]:
        """The Ansible inventory for the task's hosts; ``localhost`` is on the local connection
        unless the inventory mapping names another."""
        if isinstance(self.hosts, Mapping):
            inventory: dict[str, Any] = plain(self.hosts)
        else:
            inventory = {"all": {"hosts": {name: {} for name in self.hosts}}}
        for group in _groups(inventory):
            hosts = group.get("hosts")
            if isinstance(hosts, dict) and LOCAL_HOST in hosts:
                local = hosts[LOCAL_HOST] if isinstance(hosts[LOCAL_HOST], dict) else {}
                local.setdefault("ansible_connection", "local")
                hosts[LOCAL_HOST] = local
        return inventory

    def secret_env_names(self) -> list[str]:
        return sorted({p.name for _, p in _placeholders(self.config) if p.kind == "env"})


def _groups(inventory: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every group of a YAML inventory mapping, children included."""
    for group in inventory.values():
        if isinstance(group, dict):
            yield group
            children = group.get("children")
            if isinstance(children, Mapping):
                yield from _groups(children)


def _placeholders(config: Any) -> Iterator[tuple[str, Placeholder]]:
    for path, found in find_placeholders(config):
        if isinstance(found, Placeholder):
            yield path, found


def parse_duration(value: str | int) -> int:
    """'30s', '10m', '2h' or whole seconds, as seconds."""
    if isinstance(value, int):
        return value
    m = _DURATION.match(value)
    if not m:
        raise ValueError(f"bad duration {value!r}: expected such as 30s, 10m or 2h")
    return int(m.group(1)) * _UNITS[m.group(2)]


# --- validating ------------------------------------------------------------------------------


@cache
def _validator() -> jsonschema.protocols.Validator:
    schema = json.loads(schema_path().read_text(encoding="utf-8"))
    task_schema = {"$defs": schema["$defs"], **schema["$defs"]["task"]}
    cls = jsonschema.validators.validator_for(schema)
    return cls(task_schema)


def _data_problems(item: Any, source: str, index: int) -> list[Problem]:
    """What JSON cannot say: keys that are not strings, dates, sets, bytes, NaN, and nesting
    deeper than MAX_DEPTH. Walked without recursion, so no input can exhaust the stack."""
    problems: list[Problem] = []

    def add(message: str, path: str) -> None:
        problems.append(Problem(source, message, index, path))

    # (value, its path, the path of its top two levels, such as config.values, and its depth)
    stack: list[tuple[Any, str, str, int]] = [(item, "", "", 0)]
    while stack:
        value, path, anchor, depth = stack.pop()
        if depth > MAX_DEPTH:
            add(f"nested deeper than {MAX_DEPTH} levels: refused", anchor)
            break
        if isinstance(value, Mapping):
            for key, sub in value.items():
                if isinstance(key, str):
                    where = join_path(path, key)
                    stack.append((sub, where, where if depth < 2 else anchor, depth + 1))
                else:
                    quoted = json.dumps(str(key))
                    add(f"key {key!r} is {_kind(key)}; keys are strings: quote it ({quoted})", path)
        elif isinstance(value, list | tuple):
            for i, sub in enumerate(value):
                where = join_path(path, i)
                stack.append((sub, where, where if depth < 2 else anchor, depth + 1))
        elif isinstance(value, float) and not math.isfinite(value):
            add(f"{value} is not a finite number", path)
        elif value is not None and not isinstance(value, str | int | float):
            add(
                f"a {type(value).__name__} value is not plain data "
                "(strings, numbers, booleans, lists, mappings)",
                path,
            )
    return sorted(problems, key=lambda p: p.field)


_TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def _path(err: jsonschema.ValidationError) -> str:
    path = ""
    for part in err.absolute_path:
        path = join_path(path, part)
    return path


def _schema_problems(item: Any, source: str, index: int) -> list[Problem]:
    found: dict[tuple[str, str], None] = {}  # ordered, without repeats
    for err in _validator().iter_errors(item):
        for where, message in _describe(err):
            found.setdefault((where, message))
    return [Problem(source, m, index, f) for f, m in sorted(found, key=lambda fm: fm[0])]


def _describe(err: jsonschema.ValidationError) -> list[tuple[str, str]]:
    """(field, message) pairs for one schema error, in words a task author can act on."""
    path = _path(err)
    schema: Any = err.schema
    instance: Any = err.instance
    wanted: Any = err.validator_value
    if "propertyNames" in err.absolute_schema_path:  # the key itself is wrong
        path = join_path(path, instance)
    if err.validator == "additionalProperties":
        known = sorted(schema.get("properties", {}))
        return [
            (join_path(path, name), f"unknown field (known: {', '.join(known)})")
            for name in sorted(set(instance) - set(known))
        ]
    if err.validator == "required":
        return [
            (join_path(path, name), "required field is missing")
            for name in wanted
            if name not in instance
        ]
    if err.validator == "type":
        expected: list[str] = wanted if isinstance(wanted, list) else [wanted]
        message = f"{_clip(instance)} is {_kind(instance)}; expected " + " or ".join(
            _TYPE_NAMES.get(t, t) for t in expected
        )
        if "string" in expected and isinstance(instance, int | float):
            message += f": quote it ({json.dumps(json.dumps(instance))})"
        return [(path, message)]
    if err.validator == "minLength" and instance == "":
        return [(path, "must not be empty")]
    if err.validator == "pattern" and instance == "":
        return []  # minLength says it
    if err.validator == "pattern" and schema.get("pattern") == IDENTITY_PATTERN:
        return [(path, f"{_clip(instance)} is not a valid identity: {identity_reason(instance)}")]
    if err.validator == "pattern" and schema.get("description"):
        return [(path, f"{_clip(instance)} is not valid: {schema['description']}")]
    if err.validator == "const":
        return [(path, f"{_clip(instance)} is not supported: expected {wanted!r}")]
    if err.validator == "oneOf":
        # when the value has the type of exactly one branch, that branch's errors say more
        branches = [
            i
            for i, branch in enumerate(wanted)
            if "type" in branch and _validator().is_type(instance, branch["type"])
        ]
        if len(branches) == 1:
            inner = [e for e in err.context if e.relative_schema_path[0] == branches[0]]
            if inner:
                return [pair for e in inner for pair in _describe(e)]
        return [(path, f"{_clip(instance)} is not valid here: {schema.get('description', '')}")]
    message = err.message
    return [(path, message if len(message) < 300 else message[:297] + "...")]


def _clip(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _build(item: Mapping[str, Any], source: str, index: int) -> Task:
    return Task(
        identity=item["identity"],
        agent=item["agent"],
        command=item.get("command"),
        version=item.get("version"),
        config=item.get("config", {}),
        hosts=item.get("hosts", [LOCAL_HOST]),
        tags=tuple(item.get("runner", {}).get("tags", ())),
        timeout=parse_duration(item.get("timeout", DEFAULT_TIMEOUT)),
        outputs_from=tuple(item.get("outputs_from", ())),
        source=source,
        document=index,
        check=bool(item.get("check", False)),
        rollback=item.get("rollback"),
    )


def _task_problems(task: Task, registry: AgentRegistry | None) -> list[Problem]:
    problems: list[Problem] = []

    def add(message: str, fld: str) -> None:
        problems.append(Problem(task.source, message, task.document, fld))

    if task.timeout > MAX_TIMEOUT:
        hours = f"{task.timeout / 3600:.4g}h"
        add(
            f"{task.timeout}s ({hours}) is longer than the limit of {MAX_TIMEOUT // 3600}h",
            "timeout",
        )
    if task.identity in task.outputs_from:
        add("a task cannot read its own outputs", "outputs_from")
    if isinstance(task.hosts, Mapping) and not any(
        isinstance(group.get("hosts"), Mapping) and group["hosts"] for group in _groups(task.hosts)
    ):
        # Ansible plays "no hosts matched" and succeeds: the task would be reported a success
        # (and its version installed) having run nowhere
        add(
            "the inventory mapping names no host: hosts go under a group's `hosts` "
            "(e.g. {all: {hosts: {web1: {}}}})",
            "hosts",
        )
    for key in task.config:
        if str(key).startswith(RESERVED_PREFIXES) or key in RESERVED_NAMES:
            add(
                "a reserved name: Ansible's and runner-agent's own variables cannot be "
                "set from a config",
                f"config.{key}",
            )
    for path, found in find_placeholders(task.config):
        fld = f"config.{path}"
        if isinstance(found, str):
            add(found, fld)
        elif found.kind == "outputs" and found.name not in task.outputs_from:
            add(f"{found} names {found.name!r}, which is not listed in outputs_from", fld)
        elif found.kind == "env" and forbidden_env(found.name):
            add(forbidden_env(found.name), fld)
    if registry is not None:
        problems.extend(agent_problems(task, registry))
    return problems


def agent_problems(task: Task, registry: AgentRegistry) -> list[Problem]:
    """Problems with a task's agent, command and config; empty when it may run."""
    if task.agent not in registry:
        message = f"unknown agent {task.agent!r} (known: {registry.known()})"
        return [Problem(task.source, message, task.document, "agent")]
    agent = registry.get(task.agent)
    problems = []
    for command in candidates(task.command):
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
    """One problem per field and message, whichever command of the digest found it."""
    seen: dict[tuple[str, str], Problem] = {}
    for p in problems:
        seen.setdefault((p.field, p.message.rsplit(" (command", 1)[0]), p)
    return list(seen.values())


def with_command(tasks: Iterable[Task], command: str, registry: AgentRegistry) -> list[Task]:
    """The tasks with ``command`` instead of their own, checked against their agents again.
    Raises InvalidInput listing every task whose agent lacks it or refuses its config."""
    replaced = [replace(t, command=command) for t in tasks]
    problems = [p for t in replaced for p in agent_problems(t, registry)]
    if problems:
        raise InvalidInput(problems)
    return replaced


def as_check(tasks: Iterable[Task]) -> list[Task]:
    """The tasks as dry runs (``run --check``, ``dispatch --check``)."""
    return [replace(t, check=True) for t in tasks]


def tasks_from_data(
    items: Iterable[Any], source: str = "<api>", registry: AgentRegistry | None = None
) -> list[Task]:
    """Validate already-parsed task mappings (or one mapping). Raises InvalidInput listing
    every problem."""
    batch = [items] if isinstance(items, Mapping) else list(items)
    tasks, problems = _validate_items(batch, source, registry)
    problems.extend(check_tasks(tasks))
    if problems:
        raise InvalidInput(problems)
    return tasks


def _validate_items(
    items: list[Any], source: str, registry: AgentRegistry | None
) -> tuple[list[Task], list[Problem]]:
    tasks: list[Task] = []
    problems: list[Problem] = []
    if not items:
        problems.append(Problem(source, "no task found"))
    for index, item in enumerate(items):
        if not isinstance(item, Mapping):
            kind = type(item).__name__
            problems.append(Problem(source, f"a task is a mapping, not {kind}", index))
            continue
        found = _data_problems(item, source, index) or _schema_problems(item, source, index)
        if found:
            problems.extend(found)
            continue
        task = _build(item, source, index)
        problems.extend(_task_problems(task, registry))
        tasks.append(task)
    return tasks, problems


def dotenv_prefix(identity: str) -> str:
    """The start of an identity's dotenv variables: ``RA_<IDENTITY>_``, upper-cased, every
    character but letters, digits and ``_`` as ``_`` (``acme/web`` -> ``RA_ACME_WEB_``)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", f"RA_{identity}_").upper()


def check_tasks(tasks: Sequence[Task]) -> list[Problem]:
    """Problems that only show across tasks: the same identity with two agents; two
    identities whose dotenv variables would have the same names (``acme/web``, ``acme-web``:
    a job needing both would read whichever came last; see docs/decisions.md)."""
    problems = []
    agents: dict[str, Task] = {}
    prefixes: dict[str, Task] = {}
    for task in tasks:
        other = prefixes.setdefault(dotenv_prefix(task.identity), task)
        if other.identity != task.identity:
            problems.append(
                Problem(
                    task.source,
                    f"identity {task.identity!r} and {other.identity!r} (in {other.where}) "
                    f"have the same dotenv names {dotenv_prefix(task.identity)}*: rename one",
                    task.document,
                    "identity",
                )
            )
        first = agents.setdefault(task.identity, task)
        if first.agent != task.agent:
            problems.append(
                Problem(
                    task.source,
                    f"identity {task.identity!r} uses agent {first.agent!r} in {first.where}",
                    task.document,
                    "agent",
                )
            )
    return problems


def load_tasks(paths: Iterable[str | Path], registry: AgentRegistry | None = None) -> list[Task]:
    """Read and validate task files. Raises InvalidInput listing every problem in every file.

    With a registry, agents, commands and configs are checked against the agents' specs.
    """
    tasks: list[Task] = []
    problems: list[Problem] = []
    for raw in paths:
        path = Path(raw)
        try:
            items = read_documents(path)
        except InvalidInput as exc:
            problems.extend(exc.problems)
            continue
        found, more = _validate_items(items, str(path), registry)
        tasks.extend(found)
        problems.extend(more)
    problems.extend(check_tasks(tasks))
    if problems:
        raise InvalidInput(problems)
    return tasks
