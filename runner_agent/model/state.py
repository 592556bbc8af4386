"""State documents, one per identity, and the stores that keep them.

The state says what the agent last did for the entity: installed version, outputs, last
command and status, and a bounded history. It is written only after a run that succeeded, so a
failed run leaves the entity's state as it was.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from runner_agent.core.errors import InvalidInput, LockedError, Problem

__all__ = ["HISTORY_MAX", "LocalStateStore", "State", "StateStore", "default_state_dir"]

HISTORY_MAX = 20
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

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> State:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def record(self, entry: dict[str, Any]) -> None:
        self.history = [*self.history, entry][-HISTORY_MAX:]


class StateStore(ABC):
    """Where state documents live. ``lock`` guards one identity for the length of a run."""

    @abstractmethod
    def read(self, identity: str) -> State | None: ...

    @abstractmethod
    def write(self, state: State) -> None: ...

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

    def _path(self, identity: str, suffix: str) -> Path:
        # identities are validated: lower-case segments, no "..", no leading "/"
        return self.root / f"{identity}{suffix}"

    def read(self, identity: str) -> State | None:
        path = self._path(identity, ".json")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise InvalidInput(Problem(str(path), f"unreadable state document: {exc}")) from exc
        return State.from_dict(data)

    def write(self, state: State) -> None:
        path = self._path(state.identity, ".json")
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(state.to_dict(), fh, indent=2, sort_keys=True, default=str)
                fh.write("\n")
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    @contextlib.contextmanager
    def lock(self, identity: str, command: str, wait: bool = False) -> Iterator[None]:
        path = self._path(identity, ".lock")
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(path, "a+", encoding="utf-8") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read().strip() or "another run"
                raise LockedError(
                    f"identity {identity!r} is locked by {holder}; refusing {command!r}"
                ) from None
            fh.seek(0)
            fh.truncate()
            fh.write(f"{command} (pid {os.getpid()})")
            fh.flush()
            try:
                yield
            finally:
                fh.truncate(0)
                fcntl.flock(fh, fcntl.LOCK_UN)
