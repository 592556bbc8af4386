"""The identity rule, in one place: the task schema's ``$defs.identity``
(``model/schemas/task.schema.json``). Tasks, ``outputs_from``, ``${outputs:IDENTITY:KEY}``
placeholders and schedules all check identities with it, so they cannot drift apart."""

from __future__ import annotations

import json
import re
from typing import Any

from runner_agent.core.resources import schema_path

__all__ = [
    "IDENTITY",
    "IDENTITY_PATTERN",
    "MAX_IDENTITY",
    "embedded",
    "identity_reason",
    "is_identity",
]


def _definition() -> dict[str, Any]:
    schema = json.loads(schema_path().read_text(encoding="utf-8"))
    found: dict[str, Any] = schema["$defs"]["identity"]
    return found


_DEFINITION = _definition()
IDENTITY_PATTERN: str = _DEFINITION["pattern"]  # anchored: ^...$
IDENTITY = re.compile(IDENTITY_PATTERN)
MAX_IDENTITY: int = _DEFINITION["maxLength"]
_SEGMENT_CHARS = re.compile(r"[^a-z0-9._-]")


def is_identity(value: object) -> bool:
    """Whether ``value`` is an identity the schema accepts."""
    return (
        isinstance(value, str)
        and 0 < len(value) <= MAX_IDENTITY
        and IDENTITY.fullmatch(value) is not None
    )


def embedded(group: str) -> str:
    """The rule without its anchors, as a named group, to match an identity inside text."""
    return f"(?P<{group}>{IDENTITY_PATTERN.removeprefix('^').removesuffix('$')})"


def identity_reason(value: str) -> str:
    """Why ``value`` is not an identity, said for a person."""
    segments = value.split("/")
    if not value:
        return "it is empty"
    if any(s in (".", "..") for s in segments):
        return "'.' and '..' segments are not allowed (path traversal)"
    if ".." in value:
        return "'..' is not allowed (GitLab refuses it in a package version, where state lives)"
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
    if len(value) > MAX_IDENTITY:
        return f"it is longer than {MAX_IDENTITY} characters"
    first = next((s for s in segments if not s[:1].isalnum()), value)
    return f"segment {first!r} must start with a lower-case letter or digit"
