"""Tasks: parse and validate task files at the edge, before anything is sent or run.

A task file is YAML or JSON and holds one task, a list of tasks, or several YAML documents.
Every problem found is reported at once, each naming the file, the task's index and the field.
"""

from __future__ import annotations

import json
import math
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
MAX_DEPTH = 64  # nesting inside one task; deeper input would exhaust stacks downstream
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

_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
# Plain data only: what JSON can say. Anything else (python/*, binary, set, timestamp, omap,
# custom tags) is refused, with the field it sits on.
_PLAIN_TAGS = frozenset(
    f"tag:yaml.org,2002:{name}"
    for name in ("null", "bool", "int", "float", "str", "seq", "map", "merge")
)


class _Loader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys and keeps dates as strings (JSON has none)."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _TIMESTAMP_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> Any:
    # _node_problems reports these with their field first; this is the last line of defence
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":  # "<<: *defaults", merged below
            continue
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


def _at(mark: yaml.Mark | None) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def _join(path: str, key: Any) -> str:
    if isinstance(key, int) and not isinstance(key, bool):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def _short_tag(tag: str) -> str:
    return "!!" + tag.removeprefix("tag:yaml.org,2002:") if tag.startswith("tag:yaml") else tag


class _NodeChecker:
    """Walks one composed YAML document before it is built: duplicate keys, keys that are not
    scalars, and tags that are not plain data, each with its task index and field."""

    def __init__(self, loader: _Loader, source: str) -> None:
        self.loader = loader
        self.source = source
        self.problems: list[Problem] = []
        self.seen: set[int] = set()

    def document(self, node: yaml.Node, first_index: int) -> None:
        if isinstance(node, yaml.SequenceNode) and node.tag in _PLAIN_TAGS:
            for i, child in enumerate(node.value):
                self.walk(child, first_index + i, "")
        else:
            self.walk(node, first_index, "")

    def add(self, index: int, path: str, message: str) -> None:
        self.problems.append(Problem(self.source, message, index, path))

    def walk(self, node: yaml.Node, index: int, path: str) -> None:
        if id(node) in self.seen:  # an alias of a node already checked
            return
        self.seen.add(id(node))
        if node.tag not in _PLAIN_TAGS:
            self.add(
                index,
                path,
                f"YAML tag {_short_tag(node.tag)} is not allowed ({_at(node.start_mark)}): "
                "a task holds plain data (strings, numbers, booleans, lists, mappings)",
            )
            return
        if isinstance(node, yaml.SequenceNode):
            for i, child in enumerate(node.value):
                self.walk(child, index, _join(path, i))
        elif isinstance(node, yaml.MappingNode):
            self.mapping(node, index, path)

    def mapping(self, node: yaml.MappingNode, index: int, path: str) -> None:
        keys: dict[Any, yaml.Node] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.add(
                    index, path, f"a mapping key must be a scalar ({_at(key_node.start_mark)})"
                )
                continue
            if key_node.tag not in _PLAIN_TAGS:
                self.walk(key_node, index, path)
                continue
            if key_node.tag.endswith(":merge"):  # "<<: *defaults"
                self.walk(value_node, index, path)
                continue
            key = self.loader.construct_object(key_node)
            where = _join(path, key) if isinstance(key, str) else path
            if key in keys:
                first = _at(keys[key].start_mark)
                self.add(
                    index,
                    where,
                    f"duplicate key {key!r} ({_at(key_node.start_mark)}; first at {first})",
                )
            else:
                keys[key] = key_node
            self.walk(value_node, index, where)


def _yaml_message(exc: yaml.YAMLError) -> str:
    if not isinstance(exc, yaml.MarkedYAMLError):
        return f"not valid YAML: {exc}"
    problem = exc.problem or "syntax error"
    text = f"not valid YAML at {_at(exc.problem_mark)}: {problem}"
    if exc.context:
        start = exc.context_mark
        same = (
            start is not None
            and exc.problem_mark is not None
            and start.line == exc.problem_mark.line
        )
        text += f" ({exc.context}" + (f" started at {_at(start)})" if start and not same else ")")
    if "'\\t'" in problem:
        text += "; indent with spaces, not tabs"
    return text


def _load_yaml(text: str, source: str) -> list[Any]:
    """The tasks of a YAML stream, flattened from documents and lists.

    A problem in a later document is reported with the index its first task would have.
    """
    loader = _Loader(text)
    items: list[Any] = []
    documents = 0
    try:
        while loader.check_node():
            node = loader.get_node()
            documents += 1
            if node is None:
                continue
            if _expanded_size(node, {}) > MAX_NODES:
                raise InvalidInput(
                    Problem(
                        source,
                        f"more than {MAX_NODES} values once YAML aliases are expanded "
                        "(an alias bomb?): refused",
                        len(items),
                    )
                )
            checker = _NodeChecker(loader, source)
            checker.document(node, len(items))
            if checker.problems:
                raise InvalidInput(checker.problems)
            items.extend(_flatten([loader.construct_document(node)]))
    except yaml.YAMLError as exc:
        index = len(items) if documents else None  # a later document: its first task
        raise InvalidInput(Problem(source, _yaml_message(exc), index)) from exc
    except (ValueError, TypeError) as exc:  # a constructor refusing a value, such as !!int x
        raise InvalidInput(Problem(source, f"not valid YAML: {exc}", len(items))) from exc
    except RecursionError as exc:
        raise InvalidInput(Problem(source, "not valid YAML: nested too deeply")) from exc
    finally:
        loader.dispose()
    return items


class _Pairs(list[tuple[str, Any]]):
    """A JSON object as read, before duplicate keys are looked for."""


def _from_pairs(value: Any, source: str, index: int | None, path: str, out: list[Problem]) -> Any:
    if isinstance(value, _Pairs):
        result: dict[str, Any] = {}
        for k, v in value:
            where = _join(path, k)
            if k in result:
                out.append(Problem(source, f"duplicate key {k!r}", index, where))
            result[k] = _from_pairs(v, source, index, where, out)
        return result
    if isinstance(value, list):
        if index is None:  # the top level: a list of tasks
            return [_from_pairs(v, source, i, "", out) for i, v in enumerate(value)]
        return [_from_pairs(v, source, index, _join(path, i), out) for i, v in enumerate(value)]
    return value


def _load_json(text: str, source: str) -> list[Any]:
    try:
        raw = json.loads(text, object_pairs_hook=_Pairs)
        problems: list[Problem] = []
        top = None if isinstance(raw, list) and not isinstance(raw, _Pairs) else 0
        data = _from_pairs(raw, source, top, "", problems)
    except json.JSONDecodeError as exc:
        message = f"not valid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}"
        raise InvalidInput(Problem(source, message)) from exc
    except RecursionError as exc:
        raise InvalidInput(Problem(source, "not valid JSON: nested too deeply")) from exc
    if problems:
        raise InvalidInput(problems)
    return _flatten([data])


def _read_bounded(path: Path) -> bytes:
    """At most MAX_FILE_BYTES of the file; more is refused (a device or FIFO included)."""
    with path.open("rb") as f:
        raw = f.read(MAX_FILE_BYTES + 1)
    if len(raw) > MAX_FILE_BYTES:
        raise ValueError(f"file is larger than {MAX_FILE_BYTES} bytes: refused")
    return raw


def read_documents(path: Path) -> list[Any]:
    """The raw task mappings of one file, flattened from documents and lists."""
    source = str(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise InvalidInput(
                Problem(source, f"file is {size} bytes; at most {MAX_FILE_BYTES}: refused")
            )
        raw = _read_bounded(path)
    except OSError as exc:
        raise InvalidInput(Problem(source, f"cannot read: {exc.strerror or exc}")) from exc
    except ValueError as exc:
        raise InvalidInput(Problem(source, str(exc))) from exc
    if b"\x00" in raw:
        raise InvalidInput(Problem(source, "binary data: a task file is YAML or JSON text"))
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidInput(
            Problem(source, f"not UTF-8 text (byte {exc.start}): save the file as UTF-8")
        ) from exc
    if path.suffix.lower() == ".json":
        return _load_json(text, source)
    return _load_yaml(text, source)


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
                    where = _join(path, key)
                    stack.append((sub, where, where if depth < 2 else anchor, depth + 1))
                else:
                    quoted = json.dumps(str(key))
                    add(f"key {key!r} is {_kind(key)}; keys are strings: quote it ({quoted})", path)
        elif isinstance(value, list | tuple):
            for i, sub in enumerate(value):
                where = _join(path, i)
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
        path = _join(path, part)
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
        path = _join(path, instance)
    if err.validator == "additionalProperties":
        known = sorted(schema.get("properties", {}))
        return [
            (_join(path, name), f"unknown field (known: {', '.join(known)})")
            for name in sorted(set(instance) - set(known))
        ]
    if err.validator == "required":
        return [
            (_join(path, name), "required field is missing")
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
    if err.validator == "pattern" and schema.get("pattern") == _IDENTITY_PATTERN:
        return [(path, f"{_clip(instance)} is not a valid identity: {_identity_reason(instance)}")]
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


_IDENTITY_PATTERN = "^[a-z0-9][a-z0-9._-]*(/[a-z0-9][a-z0-9._-]*)*$"
_SEGMENT_CHARS = re.compile(r"[^a-z0-9._-]")


def _identity_reason(value: str) -> str:
    segments = value.split("/")
    if not value:
        return "it is empty"
    if any(s in (".", "..") for s in segments):
        return "'.' and '..' segments are not allowed (path traversal)"
    if value.startswith("/"):
        return "it must not start with '/' (absolute path)"
    if value.endswith("/"):
        return "it must not end with '/'"
    if "" in segments:
        return "empty segment ('//')"
    bad = _SEGMENT_CHARS.search(value.replace("/", ""))
    if bad:
        if bad.group(0).isupper():
            return "upper-case letters are not allowed (use lower case)"
        return (
            f"character {bad.group(0)!r} is not allowed (lower-case letters, digits, '.', '_', '-')"
        )
    first = next((s for s in segments if not s[:1].isalnum()), value)
    return f"segment {first!r} must start with a lower-case letter or digit"


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
        hours = f"{task.timeout / 3600:.4g}h"
        add(
            f"{task.timeout}s ({hours}) is longer than the limit of {MAX_TIMEOUT // 3600}h",
            "timeout",
        )
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
    """Validate already-parsed task mappings (or one mapping). Raises InvalidInput listing
    every problem."""
    batch = [items] if isinstance(items, Mapping) else list(items)
    tasks, problems = _validate_items(batch, source, registry)
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
