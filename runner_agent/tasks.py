"""Tasks: parse and validate task files at the edge, before anything is sent or run.

A task file is YAML or JSON and holds one task, a list of tasks, or several YAML documents.
Every problem found is reported at once, each naming the file, the task's index and the field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema
import yaml

from runner_agent.errors import InvalidInput, Problem
from runner_agent.placeholders import Placeholder, find_placeholders
from runner_agent.resources import schema_path

if TYPE_CHECKING:
    from runner_agent.agents import AgentRegistry

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_FILE_BYTES",
    "Task",
    "check_tasks",
    "load_tasks",
    "parse_duration",
    "tasks_from_data",
]

MAX_FILE_BYTES = 2 * 1024 * 1024  # GitLab's own CI config limit; a task packet is no bigger
MAX_NODES = 200_000  # expanded YAML nodes: refuses alias bombs before they are built
DEFAULT_TIMEOUT = 3600
MAX_TIMEOUT = 7 * 24 * 3600
LOCAL_HOST = "localhost"

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

    @property
    def where(self) -> str:
        return f"{self.source}[{self.document}]"

    def to_dict(self) -> dict[str, Any]:
        """The task in task-file form; :func:`tasks_from_data` reads it back unchanged."""
        out: dict[str, Any] = {"identity": self.identity, "agent": self.agent}
        if self.command:
            out["command"] = self.command
        if self.version is not None:
            out["version"] = self.version
        out["config"] = _plain(self.config)
        out["hosts"] = _plain(self.hosts)
        if self.tags:
            out["runner"] = {"tags": list(self.tags)}
        out["timeout"] = self.timeout
        if self.outputs_from:
            out["outputs_from"] = list(self.outputs_from)
        return out

    def inventory(self) -> dict[str, Any]:
        """The Ansible inventory for the task's hosts."""
        if isinstance(self.hosts, Mapping):
            return _plain(self.hosts)  # type: ignore[no-any-return]
        hosts: dict[str, Any] = {}
        for name in self.hosts:
            hosts[name] = {"ansible_connection": "local"} if name == LOCAL_HOST else {}
        if LOCAL_HOST in hosts:
            # the local connection must use the interpreter that runs the toolkit's Ansible
            hosts[LOCAL_HOST]["ansible_python_interpreter"] = "{{ ansible_playbook_python }}"
        return {"all": {"hosts": hosts}}

    def secret_env_names(self) -> list[str]:
        return sorted({p.name for _, p in _placeholders(self.config) if p.kind == "env"})


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


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


# --- reading files ---------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys."""


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, list | dict):
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a scalar", key_node.start_mark
            )
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """Node count once aliases are expanded, without expanding them."""
    key = id(node)
    if key in memo:
        return memo[key]
    memo[key] = 1  # a cycle counts once; PyYAML refuses recursive structures itself
    if isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(n, memo) for n in node.value)
    elif isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    else:
        size = 1
    memo[key] = size
    return size


def _load_yaml(text: str) -> list[Any]:
    loader = _Loader(text)
    docs: list[Any] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            if _expanded_size(node, {}) > MAX_NODES:
                raise ValueError(f"document {len(docs)} expands to more than {MAX_NODES} nodes")
            docs.append(loader.construct_document(node))
    finally:
        loader.dispose()
    return docs


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def read_documents(path: Path) -> list[Any]:
    """The raw task mappings of one file, flattened from documents and lists."""
    source = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise InvalidInput(Problem(source, f"file is {size} bytes; at most {MAX_FILE_BYTES}"))
        raw = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(Problem(source, f"cannot read: {exc.strerror or exc}")) from exc
    if b"\x00" in raw:
        raise InvalidInput(Problem(source, "binary data: a task file is YAML or JSON text"))
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(Problem(source, f"not UTF-8 text (byte {exc.start})")) from exc
    try:
        if path.suffix.lower() == ".json":
            docs = [json.loads(text, object_pairs_hook=_reject_duplicates)]
        else:
            docs = _load_yaml(text)
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        kind = "JSON" if path.suffix.lower() == ".json" else "YAML"
        detail = " ".join(str(exc).split())
        raise InvalidInput(Problem(source, f"not valid {kind}: {detail}")) from exc
    return _flatten(docs)


def _flatten(docs: list[Any]) -> list[Any]:
    items: list[Any] = []
    for doc in docs:
        if doc is None:
            continue
        items.extend(doc if isinstance(doc, list) else [doc])
    return items


# --- validating ------------------------------------------------------------------------------


@cache
def _validator() -> jsonschema.protocols.Validator:
    schema = json.loads(schema_path().read_text(encoding="utf-8"))
    task_schema = {"$defs": schema["$defs"], **schema["$defs"]["task"]}
    cls = jsonschema.validators.validator_for(schema)
    return cls(task_schema)


def _schema_problems(item: Any, source: str, index: int) -> list[Problem]:
    problems = []
    for err in sorted(_validator().iter_errors(item), key=lambda e: list(e.absolute_path)):
        path = ".".join(str(p) for p in err.absolute_path)
        schema: Any = err.schema
        if err.validator == "additionalProperties":
            instance: Any = err.instance
            extra = sorted(set(instance) - set(schema.get("properties", {})))
            for name in extra:
                where = f"{path}.{name}" if path else name
                problems.append(Problem(source, "unknown field", index, where))
            continue
        problems.append(Problem(source, _short(err), index, path))
    return problems


def _short(err: jsonschema.ValidationError) -> str:
    schema: Any = err.schema
    if err.validator == "pattern" and schema.get("description"):
        return f"{_clip(err.instance)} is not valid: {schema['description']}"
    if err.validator == "oneOf":
        return f"{_clip(err.instance)} is not valid here: {schema.get('description', '')}"
    return err.message if len(err.message) < 300 else err.message[:297] + "..."


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
    )


def _task_problems(task: Task, registry: AgentRegistry | None) -> list[Problem]:
    problems: list[Problem] = []

    def add(message: str, fld: str) -> None:
        problems.append(Problem(task.source, message, task.document, fld))

    if task.timeout > MAX_TIMEOUT:
        add(f"{task.timeout}s is longer than the {MAX_TIMEOUT // 3600}h limit", "timeout")
    if task.identity in task.outputs_from:
        add("a task cannot read its own outputs", "outputs_from")
    for path, found in find_placeholders(task.config):
        fld = f"config.{path}"
        if isinstance(found, str):
            add(found, fld)
        elif found.kind == "outputs" and found.name not in task.outputs_from:
            add(f"{found} names {found.name!r}, which is not listed in outputs_from", fld)
    if registry is not None:
        problems.extend(registry.check_task(task))
    return problems


def tasks_from_data(
    items: Iterable[Any], source: str = "<api>", registry: AgentRegistry | None = None
) -> list[Task]:
    """Validate already-parsed task mappings. Raises InvalidInput listing every problem."""
    tasks, problems = _validate_items(list(items), source, registry)
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
        found = _schema_problems(item, source, index)
        if found:
            problems.extend(found)
            continue
        task = _build(item, source, index)
        problems.extend(_task_problems(task, registry))
        tasks.append(task)
    return tasks, problems


def check_tasks(tasks: Sequence[Task]) -> list[Problem]:
    """Problems that only show across tasks: the same identity with two agents."""
    problems = []
    agents: dict[str, Task] = {}
    for task in tasks:
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
