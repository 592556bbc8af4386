"""Reading task files: YAML or JSON text into plain data, refusing what is dangerous or wrong.

Files are read within a size limit (devices and FIFOs included); YAML is composed node by node
so alias bombs, unknown tags and duplicate keys are refused before anything is built; every
problem names the file, the document and the field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from runner_agent.core.errors import InvalidInput, Problem

__all__ = ["MAX_FILE_BYTES", "MAX_NODES", "join_path", "plain", "read_documents"]

MAX_FILE_BYTES = 2 * 1024 * 1024  # GitLab's own CI config limit; a task packet is no bigger
MAX_NODES = 200_000  # expanded YAML nodes: refuses alias bombs before they are built

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


def plain(value: Any) -> Any:
    """A copy of read data as plain JSON-like values: dicts with string keys, lists."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def join_path(path: str, key: Any) -> str:
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
                self.walk(child, index, join_path(path, i))
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
            where = join_path(path, key) if isinstance(key, str) else path
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
            where = join_path(path, k)
            if k in result:
                out.append(Problem(source, f"duplicate key {k!r}", index, where))
            result[k] = _from_pairs(v, source, index, where, out)
        return result
    if isinstance(value, list):
        if index is None:  # the top level: a list of tasks
            return [_from_pairs(v, source, i, "", out) for i, v in enumerate(value)]
        return [_from_pairs(v, source, index, join_path(path, i), out) for i, v in enumerate(value)]
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
