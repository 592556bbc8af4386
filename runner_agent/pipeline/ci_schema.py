"""GitLab CI validation: GitLab's own JSON schema, plus the rules the schema cannot express.

The schema is the copy ``check-jsonschema`` vendors as ``vendor.gitlab-ci`` (the one GitLab's
editor uses), loaded once. On top of it we check what GitLab refuses when it creates the
pipeline but the schema does not see: a stage that is not declared, ``needs`` on a missing job
(or on a later stage, or in a cycle), a missing ``extends`` or ``!reference`` target, the job
name length, duplicate keys, the 2 MB file limit, at most 50 needs per job, the artifact job of
``trigger:include:artifact``, and resource group keys.

A file with a ``spec:`` header is checked after interpolating its ``$[[ inputs.NAME ]]`` with
the given inputs over the defaults, as GitLab does when it creates the pipeline. The header is
checked against the oldest GitLab runner-agent supports (:data:`OLDEST_GITLAB`), not only the
newest schema: a key a version does not know makes that version refuse the whole file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any

import jsonschema
import yaml

from runner_agent.core.errors import InvalidInput, Problem

__all__ = [
    "HEADER_KEYS",
    "MAX_CONFIG_BYTES",
    "MAX_NAME",
    "MAX_NEEDS",
    "OLDEST_GITLAB",
    "interpolate",
    "problems",
    "validate_text",
]

# The oldest GitLab runner-agent supports: the shipped spec uses `type: array` inputs, read
# from 16.11 (doc/ci/inputs/_index.md, "Input types"). runner_agent.gitlab.compat refuses older.
OLDEST_GITLAB = (16, 11)
# spec: keys and the first version that accepts each (lib/gitlab/ci/config/header/spec.rb:
# ALLOWED_KEYS = %i[inputs] until `description` came in 18.10, doc/ci/yaml/_index.md
# #specdescription). A header key a version lacks fails the whole file there.
HEADER_KEYS: dict[str, tuple[int, int]] = {"inputs": (15, 11), "description": (18, 10)}
# Input types and the first version that reads each (array: 16.11, as the issue tracking this
# rule and doc/ci/inputs/_index.md history say; the others are older than any supported one).
INPUT_TYPES: dict[str, tuple[int, int]] = {"array": (16, 11)}

MAX_CONFIG_BYTES = 2 * 1024 * 1024
MAX_NAME = 255
MAX_NEEDS = 50
# A job's `timeout` may not pass Project::MAX_BUILD_TIMEOUT, 1.month
# (lib/gitlab/ci/config/entry/timeout.rb); 30 days is below it however a month is counted.
MAX_JOB_TIMEOUT = 30 * 24 * 3600
_DURATION_PART = re.compile(r"\s*(\d+)\s*([smhdw])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
KEYWORDS = frozenset(
    {"default", "include", "stages", "variables", "workflow", "image", "services", "cache"}
    | {"before_script", "after_script", "spec"}
)
DEFAULT_STAGES = (".pre", "build", "test", "deploy", ".post")
_INPUT = re.compile(r"\$\[\[\s*inputs\.([A-Za-z0-9_-]+)\s*\]\]")
_GROUP = re.compile(r"[A-Za-z0-9_./ ${}-]+")
# environment names (and resource group keys): lib/gitlab/regex.rb environment_name_regex, at
# most 255 characters (app/models/environment.rb); the CI config refuses others
# (lib/gitlab/ci/config/entry/environment.rb)
_ENVIRONMENT = re.compile(r"[A-Za-z0-9_${}. -](?:[A-Za-z0-9_/${}. -]*[A-Za-z0-9_${}. -])?")
MAX_ENVIRONMENT = 255

_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[valid-type,misc]
    """Safe loader that refuses duplicate keys and reads GitLab's ``!reference`` tag."""


class Reference(list[Any]):
    """A ``!reference [job, key]``; the schema accepts it where it accepts a list of strings."""


def _mapping(loader: yaml.SafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if isinstance(key_node, yaml.ScalarNode):
            key = loader.construct_scalar(key_node)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
    return loader.construct_mapping(node, deep=True)


def _reference(loader: yaml.SafeLoader, node: yaml.Node) -> Reference:
    if not isinstance(node, yaml.SequenceNode):
        raise yaml.constructor.ConstructorError(
            None, None, "!reference takes a list", node.start_mark
        )
    return Reference(loader.construct_sequence(node, deep=True))


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)
_Loader.add_constructor("!reference", _reference)


@cache
def _validator() -> jsonschema.protocols.Validator:
    from check_jsonschema.builtin_schemas import (  # type: ignore[import-untyped]
        get_builtin_schema,
    )

    schema = get_builtin_schema("vendor.gitlab-ci")
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def interpolate(header: Mapping[str, Any], config: Any, inputs: Mapping[str, Any]) -> Any:
    """``config`` with ``$[[ inputs.NAME ]]`` replaced from ``inputs`` over the spec defaults.

    A string that is one interpolation takes the input's value with its type (an array stays
    an array); inside a longer string the value is placed as text.
    """
    spec = (header.get("spec") or {}).get("inputs") or {}
    unknown = sorted(set(inputs) - set(spec))
    if unknown:
        raise KeyError(f"unknown input(s) {', '.join(unknown)}")
    values = {k: (v or {}).get("default") for k, v in spec.items()} | dict(inputs)

    def value(name: str) -> Any:
        if name not in spec:
            raise KeyError(f"unknown input {name!r}")
        got, rule = values.get(name), spec[name] or {}
        if got is None:
            raise KeyError(f"input {name!r} has no value and no default")
        if "regex" in rule and isinstance(got, str) and not re.search(rule["regex"], got):
            raise KeyError(f"input {name!r}: {got!r} does not match {rule['regex']}")
        if "options" in rule and got not in rule["options"]:
            raise KeyError(f"input {name!r}: {got!r} is not one of {rule['options']}")
        return got

    def walk(node: Any) -> Any:
        if isinstance(node, str):
            whole = _INPUT.fullmatch(node.strip())
            if whole:
                return value(whole.group(1))
            return _INPUT.sub(lambda m: str(value(m.group(1))), node)
        if isinstance(node, Reference):
            return Reference(walk(v) for v in node)
        if isinstance(node, list):
            return [walk(v) for v in node]
        if isinstance(node, dict):
            return {walk(k): walk(v) for k, v in node.items()}
        return node

    return walk(config)


def _since(version: tuple[int, int]) -> str:
    return f"{version[0]}.{version[1]}"


def header_problems(
    header: Mapping[str, Any], source: str, version: tuple[int, int] = OLDEST_GITLAB
) -> list[Problem]:
    """The spec: keys (and input keys) GitLab ``version`` does not accept."""
    found = []
    spec = header.get("spec")
    for key in spec if isinstance(spec, Mapping) else {}:
        since = HEADER_KEYS.get(str(key))
        if since is None or since > version:
            needs = f"needs GitLab {_since(since)}" if since else "is not a spec: key"
            found.append(
                Problem(source, f"spec:{key} {needs}; this file must load on {_since(version)}")
            )
    spec_inputs = spec.get("inputs") if isinstance(spec, Mapping) else None
    for name, options in spec_inputs.items() if isinstance(spec_inputs, Mapping) else []:
        kind = options.get("type") if isinstance(options, Mapping) else None
        since = INPUT_TYPES.get(str(kind))
        if since is not None and since > version:
            found.append(
                Problem(
                    source,
                    f"inputs:{name}: type {kind} needs GitLab {_since(since)}; this file must "
                    f"load on {_since(version)}",
                )
            )
    return found


def _load(
    text: str, source: str, inputs: Mapping[str, Any] | None, version: tuple[int, int]
) -> Any:
    docs = list(yaml.load_all(text, Loader=_Loader))
    if len(docs) == 2 and isinstance(docs[0], dict) and set(docs[0]) == {"spec"}:
        header, config = docs
        problems = _schema_problems(header, source) + header_problems(header, source, version)
        if problems:
            raise InvalidInput(problems)
        try:
            return interpolate(header, config, inputs or {})
        except KeyError as exc:
            raise InvalidInput(Problem(source, f"inputs: {exc.args[0]}")) from exc
    if len(docs) != 1:
        raise InvalidInput(Problem(source, "one YAML document, or a spec: header and one more"))
    return docs[0]


def _schema_problems(doc: Any, source: str) -> list[Problem]:
    found = []
    for err in _validator().iter_errors(doc):
        where = "/".join(str(p) for p in err.absolute_path)
        message = err.message if len(err.message) < 300 else err.message[:297] + "..."
        found.append(Problem(source, f"GitLab's CI schema: {message}", None, where))
    return found


def _jobs(doc: Mapping[str, Any]) -> dict[str, Any]:
    return {
        k: v
        for k, v in doc.items()
        if isinstance(k, str) and k not in KEYWORDS and not k.startswith(".")
    }


def _needs(job: Mapping[str, Any]) -> Iterator[tuple[str, bool]]:
    """The in-pipeline needs of a job: (job name, optional)."""
    for need in job.get("needs") or ():
        if isinstance(need, str):
            yield need, False
        elif isinstance(need, Mapping) and "pipeline" not in need and "project" not in need:
            yield str(need.get("job")), bool(need.get("optional"))


def _job_problems(jobs: Mapping[str, Any], stages: list[str], source: str) -> list[Problem]:
    found = []
    for name, job in jobs.items():
        stage = job.get("stage", "test")
        if stage not in stages:
            found.append(Problem(source, f"stage {stage!r} is not declared in stages", None, name))
        if len(name) > MAX_NAME:
            found.append(
                Problem(source, f"job name longer than {MAX_NAME} characters", None, name[:60])
            )
        if not ({"script", "run", "trigger", "extends"} & set(job)):
            found.append(Problem(source, "a job needs script:, run: or trigger:", None, name))
        group = job.get("resource_group")
        if isinstance(group, str) and not (_GROUP.fullmatch(group) and group.strip("/") == group):
            found.append(Problem(source, f"resource_group {group!r}: bad characters", None, name))
        found.extend(_environment_problems(name, job.get("environment"), source))
        seconds = _seconds(job.get("timeout"))
        if seconds is not None and seconds > MAX_JOB_TIMEOUT:
            found.append(
                Problem(source, "timeout longer than GitLab's limit of 30 days", None, name)
            )
    return found


def _environment_problems(name: str, environment: Any, source: str) -> list[Problem]:
    """GitLab's rule for an environment name (a string, or ``environment:name``)."""
    if environment is None:
        return []
    env_name = environment.get("name") if isinstance(environment, Mapping) else environment
    if not isinstance(env_name, str):
        return [Problem(source, "environment needs a name", None, name)]
    if len(env_name) > MAX_ENVIRONMENT or not _ENVIRONMENT.fullmatch(env_name):
        return [
            Problem(
                source,
                f"environment {env_name[:60]!r}: at most {MAX_ENVIRONMENT} letters, digits, "
                "'-', '_', '/', '$', '{', '}', '.' and spaces, not starting or ending with '/'",
                None,
                name,
            )
        ]
    return []


def _seconds(value: Any) -> int | None:
    """A duration written as runner-agent writes them (``1h 5m``, ``30m``, ``720h``) in
    seconds; None for anything else (left to GitLab's own reading)."""
    if not isinstance(value, str) or not value.strip():
        return None
    parts = _DURATION_PART.findall(value)
    if "".join(f"{n}{u}" for n, u in parts) != re.sub(r"\s+", "", value):
        return None
    return sum(int(n) * _UNIT[u] for n, u in parts)


def _need_problems(jobs: Mapping[str, Any], stages: list[str], source: str) -> list[Problem]:
    found = []
    index = {
        n: stages.index(j.get("stage", "test"))
        for n, j in jobs.items()
        if j.get("stage", "test") in stages
    }
    for name, job in jobs.items():
        needs = list(_needs(job))
        if len(job.get("needs") or ()) > MAX_NEEDS:
            found.append(Problem(source, f"more than {MAX_NEEDS} needs", None, name))
        for need, optional in needs:
            if need not in jobs:
                if not optional:
                    found.append(
                        Problem(source, f"needs job {need!r}, which does not exist", None, name)
                    )
            elif need == name:
                found.append(Problem(source, "a job cannot need itself", None, name))
            elif index.get(need, 0) > index.get(name, 0):
                found.append(Problem(source, f"needs {need!r} from a later stage", None, name))
        for dep in job.get("dependencies") or ():
            if dep not in jobs or index.get(dep, 0) >= index.get(name, 0):
                found.append(
                    Problem(source, f"dependency {dep!r} is not in an earlier stage", None, name)
                )
        found.extend(_artifact_problems(name, job, jobs, index, needs, source))
    found.extend(_cycle_problems(jobs, source))
    return found


def _artifact_problems(
    name: str,
    job: Mapping[str, Any],
    jobs: Mapping[str, Any],
    index: Mapping[str, int],
    needs: list[tuple[str, bool]],
    source: str,
) -> list[Problem]:
    trigger = job.get("trigger")
    includes = trigger.get("include") if isinstance(trigger, Mapping) else None
    found = []
    for inc in includes if isinstance(includes, list) else ():
        if not (isinstance(inc, Mapping) and "artifact" in inc):
            continue
        src = str(inc.get("job"))
        earlier = src in jobs and index.get(src, 0) < index.get(name, 0)
        if not (earlier or any(src == n for n, _ in needs)):
            found.append(
                Problem(
                    source, f"artifact job {src!r} is not an earlier stage or a need", None, name
                )
            )
    return found


def _cycle_problems(jobs: Mapping[str, Any], source: str) -> list[Problem]:
    graph = {n: [m for m, _ in _needs(j) if m in jobs] for n, j in jobs.items()}
    state: dict[str, int] = {}  # 1 visiting, 2 done
    for start in graph:
        stack = [(start, iter(graph[start]))]
        state.setdefault(start, 1)
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                state[node] = 2
                stack.pop()
            elif state.get(child) == 1:
                return [Problem(source, f"needs form a cycle through {child!r}", None, node)]
            elif child not in state:
                state[child] = 1
                stack.append((child, iter(graph[child])))
    return []


def _reference_problems(doc: Any, keys: set[str], source: str) -> Iterator[Problem]:
    if isinstance(doc, Reference):
        if doc and doc[0] not in keys:
            yield Problem(source, f"!reference to {doc[0]!r}, which does not exist")
    elif isinstance(doc, list):
        for v in doc:
            yield from _reference_problems(v, keys, source)
    elif isinstance(doc, dict):
        for v in doc.values():
            yield from _reference_problems(v, keys, source)


def problems(
    text: str,
    source: str = "<pipeline>",
    *,
    inputs: Mapping[str, Any] | None = None,
    max_jobs: int | None = None,
    gitlab: tuple[int, int] = OLDEST_GITLAB,
) -> list[Problem]:
    """Everything GitLab ``gitlab`` (default: the oldest supported) would refuse in this CI
    file; empty when it is fine."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_CONFIG_BYTES:
        return [Problem(source, f"{size} bytes; GitLab reads at most {MAX_CONFIG_BYTES}")]
    try:
        doc = _load(text, source, inputs, gitlab)
    except yaml.YAMLError as exc:
        return [Problem(source, "not valid YAML: " + " ".join(str(exc).split()))]
    except InvalidInput as exc:
        return exc.problems
    if not isinstance(doc, dict):
        return [Problem(source, "a CI file is a mapping of keywords and jobs")]
    found = _schema_problems(doc, source)
    jobs = {k: v for k, v in _jobs(doc).items() if isinstance(v, Mapping)}
    if not jobs:
        found.append(Problem(source, "no job"))
    if max_jobs is not None and len(jobs) > max_jobs:
        found.append(Problem(source, f"{len(jobs)} jobs; at most {max_jobs}"))
    declared = doc.get("stages")
    stages = [".pre", *declared, ".post"] if isinstance(declared, list) else list(DEFAULT_STAGES)
    found += _job_problems(jobs, stages, source) + _need_problems(jobs, stages, source)
    keys = {k for k in doc if isinstance(k, str)}
    if "include" not in doc:  # an extends target may come from an include we cannot see
        for name, job in jobs.items():
            targets = job.get("extends") or []
            for target in [targets] if isinstance(targets, str) else targets:
                if target not in keys:
                    found.append(
                        Problem(source, f"extends {target!r}, which does not exist", None, name)
                    )
        found.extend(_reference_problems(doc, keys, source))
    return found


def validate_text(
    text: str,
    source: str = "<pipeline>",
    *,
    inputs: Mapping[str, Any] | None = None,
    max_jobs: int | None = None,
    gitlab: tuple[int, int] = OLDEST_GITLAB,
) -> None:
    """Raise InvalidInput listing every problem :func:`problems` finds."""
    found = problems(text, source, inputs=inputs, max_jobs=max_jobs, gitlab=gitlab)
    if found:
        raise InvalidInput(found)
