"""``${env:NAME}`` and ``${outputs:IDENTITY:KEY}`` placeholders in task configs.

Only these two prefixes are placeholders; any other ``${...}`` is plain data and stays as it is.
``$${`` escapes a literal ``${``. A value that is exactly one placeholder is replaced by the
resolved value with its type (an output may be a number or a mapping); a placeholder inside a
longer string is replaced by its text.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from runner_agent.model.identity import embedded, is_identity

__all__ = [
    "ENV_ALLOW_VARIABLE",
    "SECRET_PREFIX",
    "Placeholder",
    "env_allowlist",
    "env_refusal",
    "find_placeholders",
    "forbidden_env",
    "resolve",
    "walk_strings",
]

# Which variables ``${env:NAME}`` may read: a name starting with SECRET_PREFIX, or one the
# agent project lists in ENV_ALLOW_VARIABLE (a CI/CD variable, comma-separated names). Never
# GitLab's or the runner's own: CI_JOB_TOKEN, GITLAB_TOKEN, every CI_* and GITLAB_* variable
# (doc/ci/variables/predefined_variables.md), the runner's (RUNNER_*, FF_*, its registration
# token) and runner-agent's settings, even when listed: a task must not be able to write a
# credential of the pipeline into whatever file or service its config names. REDIS_PASSWORD is
# `stackl serve`'s (stackl/worker.py): whoever holds it can run code in the worker (arq pickles).
SECRET_PREFIX = "RA_SECRET_"
ENV_ALLOW_VARIABLE = "RUNNER_AGENT_ENV_ALLOW"
_FORBIDDEN_PREFIXES = ("CI_", "GITLAB_", "RUNNER_", "FF_")
_FORBIDDEN_NAMES = frozenset(
    {
        "REGISTRATION_TOKEN",
        "DOCKER_AUTH_CONFIG",
        "PYTHON_GITLAB_CFG",
        "GITLAB_URL",
        "REDIS_PASSWORD",
    }
)

_TOKEN = re.compile(r"\$(\$?)\{(env|outputs):([^}]*)\}")
_UNCLOSED = re.compile(r"(?<!\$)\$\{(?:env|outputs):[^}]*$")  # "${env:NAME" without "}"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_OUTPUT_REF = re.compile(rf"^{embedded('identity')}:(?P<key>[A-Za-z0-9_.-]+)$")


@dataclass(frozen=True)
class Placeholder:
    kind: str  # "env" or "outputs"
    name: str  # env variable name, or the identity for outputs
    key: str = ""  # output key (dotted for nested values)
    whole: bool = False  # the placeholder is the whole string

    def __str__(self) -> str:
        inner = self.name if self.kind == "env" else f"{self.name}:{self.key}"
        return f"${{{self.kind}:{inner}}}"


def walk_strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Yield (dotted path, string) for every string in a nested structure."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from walk_strings(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            yield from walk_strings(v, f"{path}[{i}]")


def _parse(text: str) -> Iterator[tuple[re.Match[str], Placeholder | str]]:
    """Yield each token match with its placeholder, or an error message."""
    for m in _TOKEN.finditer(text):
        if m.group(1):  # "$${" is an escaped literal
            continue
        kind, body = m.group(2), m.group(3)
        whole = m.start() == 0 and m.end() == len(text)
        if kind == "env":
            if not _ENV_NAME.match(body):
                yield m, f"bad placeholder {m.group(0)!r}: expected ${{env:NAME}}"
            else:
                yield m, Placeholder("env", body, whole=whole)
        else:
            ref = _OUTPUT_REF.match(body)
            if not ref or not is_identity(ref["identity"]):
                yield m, f"bad placeholder {m.group(0)!r}: expected ${{outputs:IDENTITY:KEY}}"
            else:
                yield m, Placeholder("outputs", ref["identity"], ref["key"], whole=whole)
    unclosed = _UNCLOSED.search(text)
    if unclosed:
        yield unclosed, f"bad placeholder {unclosed.group(0)!r}: missing the closing '}}'"


def find_placeholders(value: Any) -> Iterator[tuple[str, Placeholder | str]]:
    """Yield (path, placeholder or error message) for every placeholder in ``value``."""
    for path, text in walk_strings(value):
        for _m, found in _parse(text):
            yield path, found


def resolve(value: Any, lookup: Callable[[Placeholder], Any]) -> Any:
    """Return a copy of ``value`` with every placeholder replaced through ``lookup``."""
    if isinstance(value, str):
        return _resolve_string(value, lookup)
    if isinstance(value, Mapping):
        return {k: resolve(v, lookup) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [resolve(v, lookup) for v in value]
    return value


def _resolve_string(text: str, lookup: Callable[[Placeholder], Any]) -> Any:
    if "${" not in text:
        return text
    unclosed = _UNCLOSED.search(text)
    if unclosed:
        raise ValueError(f"bad placeholder {unclosed.group(0)!r}: missing the closing '}}'")
    parts: list[str] = []
    pos = 0
    for m in _TOKEN.finditer(text):
        parts.append(text[pos : m.start()])
        pos = m.end()
        if m.group(1):
            parts.append(m.group(0)[1:])  # "$${x}" -> "${x}"
            continue
        found = next(_parse(m.group(0)))[1]
        if isinstance(found, str):
            raise ValueError(found)
        if m.start() == 0 and m.end() == len(text):
            return lookup(Placeholder(found.kind, found.name, found.key, whole=True))
        resolved = lookup(found)
        parts.append(resolved if isinstance(resolved, str) else _compact_json(resolved))
    parts.append(text[pos:])
    return "".join(parts)


def _compact_json(value: Any) -> str:
    import json

    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def forbidden_env(name: str) -> str:
    """Why ``${env:NAME}`` may never read ``name`` ("" when it may, if allowed)."""
    if name.startswith(_FORBIDDEN_PREFIXES) or name in _FORBIDDEN_NAMES:
        return (
            f"${{env:{name}}} is refused: runner-agent never hands GitLab's or the runner's own "
            f"variables (CI_*, GITLAB_*, RUNNER_*, FF_*) to a task; put the secret in a masked "
            f"CI/CD variable named {SECRET_PREFIX}..."
        )
    return ""


def env_allowlist(environ: Mapping[str, str]) -> frozenset[str]:
    """The names the agent project allows besides RA_SECRET_*: ENV_ALLOW_VARIABLE, split."""
    listed = environ.get(ENV_ALLOW_VARIABLE, "")
    return frozenset(n.strip() for n in listed.split(",") if n.strip())


def env_refusal(name: str, environ: Mapping[str, str]) -> str:
    """Why ``${env:NAME}`` may not read ``name`` in this environment ("" when it may)."""
    forbidden = forbidden_env(name)
    if forbidden:
        return forbidden
    if name.startswith(SECRET_PREFIX) or name in env_allowlist(environ):
        return ""
    return (
        f"${{env:{name}}} is not allowed: name the variable {SECRET_PREFIX}{name}, or list "
        f"{name} in {ENV_ALLOW_VARIABLE} (a CI/CD variable of the agent project)"
    )
