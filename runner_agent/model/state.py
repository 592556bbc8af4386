"""State documents, one per identity, and the stores that keep them.

The state says what the agent last did for the entity: installed version, outputs, last
command and status, and a bounded history. It is written only after a run that succeeded, so a
failed run leaves the entity's state as it was.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from runner_agent.core import fs, strict_json
from runner_agent.core.errors import InvalidInput, LockedError, Problem
from runner_agent.core.resources import schema_path
from runner_agent.model.identity import is_identity

__all__ = [
    "HISTORY_MAX",
    "REVISIONS_MAX",
    "LocalStateStore",
    "State",
    "StateStore",
    "UnreadableState",
    "default_state_dir",
    "parse_state",
]

HISTORY_MAX = 20
REVISIONS_MAX = 20  # unpinned revisions kept per identity; pinned ones are kept besides
SCHEMA = 1


@dataclass
class State:
    identity: str
    agent: str = ""
    installed: bool = False
    installed_version: str | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    last_command: str = ""
    last_status: str = ""
    updated: str = ""
    history: list[dict[str, Any]] = field(default_factory=list)
    # a revision per run that changed keys (runner_agent.model.revisions), oldest first
    revisions: list[dict[str, Any]] = field(default_factory=list)
    next_revision: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> State:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def record(self, entry: dict[str, Any]) -> None:
        self.history = [*self.history, entry][-HISTORY_MAX:]


class UnreadableState(InvalidInput):
    """A state document that is not one, or not the asked identity's: the run stops before
    anything runs (exit 2). ``where`` is its file, or its place in the package registry."""

    def __init__(self, where: str, reason: str) -> None:
        super().__init__(Problem(f"unreadable state document: {where}", reason))


@functools.cache
def _state_validator() -> jsonschema.protocols.Validator:
    schema = json.loads(schema_path("state").read_text(encoding="utf-8"))
    task = json.loads(schema_path("task").read_text(encoding="utf-8"))
    schema["$defs"]["identity"] = task["$defs"]["identity"]  # one identity rule: the task's
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema)


def parse_state(text: str | bytes, identity: str, where: str) -> State:
    """The state document in ``text``, checked against model/schemas/state.schema.json and
    holding ``identity`` itself. Raises UnreadableState naming ``where`` and the reason."""
    try:
        # NaN and Infinity are not JSON (RFC 8259, section 6): Python reads them, and 1e400 as
        # inf, then `state -o json` would print them back as text no JSON reader accepts
        data: Any = strict_json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise UnreadableState(where, f"not JSON ({exc})") from exc
    error = jsonschema.exceptions.best_match(_state_validator().iter_errors(data))
    if error is not None:
        field_ = ".".join(str(p) for p in error.absolute_path) or "the document"
        message = error.message if len(error.message) <= 200 else error.message[:200] + "..."
        raise UnreadableState(where, f"{field_}: {message}")
    if data["identity"] != identity:
        raise UnreadableState(where, f"it holds identity {data['identity']!r}, not {identity!r}")
    return State.from_dict(data)


class StateStore(ABC):
    """Where state documents live. ``lock`` guards one identity for the length of a run."""

    @abstractmethod
    def read(self, identity: str) -> State | None: ...

    @abstractmethod
    def write(self, state: State) -> None: ...

    def check_writable(self) -> None:
        """Raise when the store can be seen, before a run, not to take a write."""
        return None

    def check_lock(self, identity: str) -> None:
        """Raise when the identity's lock can be seen, before a run, not to be takeable."""
        return None

    @contextlib.contextmanager
    def lock(self, identity: str, command: str, wait: bool = False) -> Iterator[None]:
        """Hold the identity for ``command``; raises LockedError when another run holds it,
        or, with ``wait``, waits for it to be free."""
        yield


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "runner-agent"


class LocalStateStore(StateStore):
    """A folder: ``<dir>/<identity>.json``, written atomically, locked with flock."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def check_writable(self) -> None:
        """Raises UnsafePath when the folder cannot be made or written."""
        fs.check_writable(self.root / ".runner-agent")

    def check_lock(self, identity: str) -> None:
        """Raises UnsafePath when a link or anything but a regular file is at the lock."""
        fs.check_lockable(self._path(identity, ".lock"))

    def _path(self, identity: str, suffix: str) -> Path:
        # the identity rule (lower-case segments, no "..", no leading "/") keeps every
        # document inside the folder; an identity that breaks it is never made a path
        if not is_identity(identity):  # the schema's rule: so it is a safe path
            raise InvalidInput(Problem(str(self.root), f"{identity!r} is not a valid identity"))
        return self.root / f"{identity}{suffix}"

    def read(self, identity: str) -> State | None:
        """The identity's state, or None. Raises UnreadableState (a link, not UTF-8, not a
        state document, another identity's)."""
        path = self._path(identity, ".json")
        try:
            text = fs.read_text(path)
        except fs.UnsafePath as exc:
            raise UnreadableState(str(path), exc.reason) from exc
        return None if text is None else parse_state(text, identity, str(path))

    def write(self, state: State) -> None:
        """Replace the identity's document (0600, atomically). Raises UnsafePath."""
        path = self._path(state.identity, ".json")
        fs.write_text(path, json.dumps(state.to_dict(), indent=2, sort_keys=True, default=str))

    @contextlib.contextmanager
    def lock(self, identity: str, command: str, wait: bool = False) -> Iterator[None]:
        """Raises LockedError, or UnsafePath when the lock file is a link or cannot be made."""
        with fs.lock_file(self._path(identity, ".lock")) as fd:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                holder = os.pread(fd, 400, 0).decode(errors="replace").strip() or "another run"
                raise LockedError(
                    f"identity {identity!r} is locked by {holder}; refusing {command!r}"
                ) from None
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{command} (pid {os.getpid()})".encode(), 0)
            try:
                yield
            finally:
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
