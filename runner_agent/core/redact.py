"""Keep secret values out of everything the toolkit prints, writes or sends: one masker.

A :class:`Redactor` knows the secret values of a process (the ``${env:NAME}`` values a run
resolves, GitLab tokens) and replaces, in one pass, every form in which a value can show up in
text: as it is; inside JSON text, ASCII-escaped (``\\u00e9``) or not (Ansible prints non-ASCII
raw but escapes quotes and backslashes); inside a Python repr with either quote. Values are
masked where they are placed, before any text is shortened or reformatted, and only values:
callers hand over the free text of a report (messages, errors, outputs' values), never its
keys or status words, so a one-letter secret cannot corrupt a report.

:func:`process` is the process-wide instance: what the CLI prints (errors, problems, the
``-v`` stream, the table) goes through it, and the runtime adds the secrets it resolves to it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["MASK", "Redactor", "forget", "forms", "process"]

MASK = "********"


def _repr_inner(value: str, quote: str) -> str:
    """``value`` as Python writes it between ``quote`` characters (``repr`` picks one)."""
    out = []
    for ch in value:
        if ch == "\\":
            out.append("\\\\")
        elif ch == quote:
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        else:
            out.append(repr(ch)[1:-1])
    return "".join(out)


def forms(secret: str) -> set[str]:
    """Every text form of ``secret`` the toolkit or Ansible may print."""
    found = {
        secret,
        json.dumps(secret)[1:-1],  # JSON, ASCII-escaped
        json.dumps(secret, ensure_ascii=False)[1:-1],  # JSON as Ansible prints it: raw non-ASCII
        _repr_inner(secret, "'"),  # Python's repr (Ansible's msg of a list, an exception)
        _repr_inner(secret, '"'),
        repr(secret)[1:-1],
    }
    return {f for f in found if f}


class Redactor:
    """Replaces every known secret value, in every form it may take (see :func:`forms`)."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Mask these values too, from now on."""
        new = {s for s in secrets if isinstance(s, str) and s} - self._secrets
        if not new:
            return
        self._secrets |= new
        every = {f for s in self._secrets for f in forms(s)}
        # longest first, so a secret that contains another is masked whole; the mask itself
        # comes first and is kept, so masking twice changes nothing (a secret "*" included)
        alternatives = sorted(every, key=lambda f: (-len(f), f))
        self._pattern = re.compile(
            "|".join([re.escape(MASK), *(re.escape(f) for f in alternatives)])
        )

    @property
    def secrets(self) -> frozenset[str]:
        return frozenset(self._secrets)

    def __bool__(self) -> bool:
        return bool(self._secrets)

    def text(self, value: str) -> str:
        """``value`` with every form of every secret replaced by :data:`MASK`."""
        if self._pattern is None or not value:
            return value
        return self._pattern.sub(MASK, value)

    def values(self, value: Any) -> Any:
        """A copy of a JSON-like structure with secrets masked in its string values; keys are
        names, never masked (see the module)."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {k: self.values(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.values(v) for v in value]
        return value


_PROCESS = Redactor()


def process() -> Redactor:
    """The process-wide redactor: every secret this process learned, for what it prints."""
    return _PROCESS


def forget() -> None:
    """Start the process-wide redactor afresh: one CLI invocation's secrets are its own."""
    global _PROCESS
    _PROCESS = Redactor()
