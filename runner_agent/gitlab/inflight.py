"""Runs in flight: one pipeline per dispatch, identical submits joined, divergent ones refused.

Exactly one pipeline per dispatch: the dispatcher never posts again after a creation request
that may have taken effect before :func:`find_by_name` looked the pipeline up.

Coalescing and locks, at three reaches:

- threads of one process: :class:`Coalescer` makes identical submits share one call and
  its result;
- processes of one machine: a :class:`FileLedger`, a small JSON file under the user's cache
  folder guarded by ``flock``, held for the whole submit, lists the runs this machine started;
- machines: a marker per identity set in the project's package registry
  (``runner-agent-locks/<lock key>/inflight.json``) names the last run started for it.

An entry counts while its pipeline is not finished; the pipeline's status decides, asked only
when an entry overlaps the identities of a new submit. ``resource_group`` in the rendered jobs
stays the server-side guarantee: these checks refuse early and share results, nothing more.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

from runner_agent.core import fs
from runner_agent.core.errors import GitLabError, LockedError
from runner_agent.gitlab.bundle import Bundle, dump
from runner_agent.gitlab.follow import to_phase
from runner_agent.gitlab.port import ApiError, GitLab, NotFound

__all__ = [
    "LOCK_PACKAGE",
    "Coalescer",
    "Entry",
    "FileLedger",
    "InFlight",
    "Ledger",
    "MemoryLedger",
    "decide",
    "default_ledger_path",
    "find_by_name",
    "lock_key",
    "read_marker",
    "write_marker",
]

LOCK_PACKAGE = "runner-agent-locks"
MARKER_FILE = "inflight.json"
MAX_AGE = 8 * 24 * 3600  # longer than any task may run (7 days) plus queueing

T = TypeVar("T")


@dataclass(frozen=True)
class Entry:
    """One run started by a dispatcher: what it does and where it runs."""

    dispatch_id: str
    signature: str
    identities: tuple[str, ...]
    pipeline_id: int
    web_url: str
    gitlab_url: str
    project: str
    ref: str
    created: float
    plan_first: bool = False  # dispatch --plan: its pipeline waits for approval

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["identities"] = list(self.identities)
        return data

    @classmethod
    def from_dict(cls, data: Any) -> Entry | None:
        """The entry, or None when ``data`` is not one (a file from another version)."""
        try:
            return cls(
                dispatch_id=str(data["dispatch_id"]),
                signature=str(data["signature"]),
                identities=tuple(str(i) for i in data["identities"]),
                pipeline_id=int(data["pipeline_id"]),
                web_url=str(data["web_url"]),
                gitlab_url=str(data["gitlab_url"]),
                project=str(data["project"]),
                ref=str(data["ref"]),
                created=float(data["created"]),
                plan_first=data.get("plan_first", False) is True,
            )
        except (KeyError, TypeError, ValueError):
            return None


def lock_key(identities: Sequence[str]) -> str:
    """The registry version of an identity set's marker (one identity: one lock)."""
    return "l" + hashlib.sha256("\n".join(sorted(set(identities))).encode()).hexdigest()[:32]


def decide(
    entries: Sequence[Entry],
    bundle: Bundle,
    is_active: Callable[[Entry], bool],
    *,
    now: float,
) -> Entry | None:
    """The run an identical submit joins, None when nothing conflicts.

    Raises LockedError, naming the running pipeline, when a run in flight touches one of the
    bundle's identities and is not identical (other commands, config, ref or identities).
    """
    mine = set(bundle.identities)
    for entry in entries:
        shared = mine.intersection(entry.identities)
        if not shared or now - entry.created > MAX_AGE or not is_active(entry):
            continue
        if entry.signature == bundle.signature:
            return entry
        names = ", ".join(sorted(shared)[:5]) + (" ..." if len(shared) > 5 else "")
        raise LockedError(
            f"{names}: a different run is in flight in pipeline {entry.web_url} "
            f"(dispatch {entry.dispatch_id}); nothing was triggered. Wait for it, or cancel it"
        )
    return None


class Ledger(Protocol):
    """Runs this machine (or process) started, read and written under one lock."""

    def locked(self) -> contextlib.AbstractContextManager[dict[str, Any]]: ...


class MemoryLedger:
    """The ledger of one process (when no cache folder is usable)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[str, Any] = {}

    @contextlib.contextmanager
    def locked(self) -> Iterator[dict[str, Any]]:
        with self._lock:
            yield self._entries


def default_ledger_path(gitlab_url: str, project: str, environ: dict[str, str]) -> Path:
    """``$XDG_CACHE_HOME/runner-agent/inflight/<hash of GitLab URL and project>.json``."""
    base = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    key = hashlib.sha256(f"{gitlab_url}\n{project}".encode()).hexdigest()[:16]
    return Path(base) / "runner-agent" / "inflight" / f"{key}.json"


class FileLedger:
    """The ledger of one machine: a JSON file, ``flock``-ed while a submit runs.

    The lock is held across the submit's requests, so a second process (or thread) with the
    same run waits, then finds the first one's entry and joins it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.contextmanager
    def locked(self) -> Iterator[dict[str, Any]]:
        with fs.lock_file(self.path.with_suffix(".lock")) as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)
            try:
                entries = self._read()
                before = json.dumps(entries, sort_keys=True)
                yield entries
                if json.dumps(entries, sort_keys=True) != before:
                    self._write(entries)
            finally:
                fcntl.flock(guard, fcntl.LOCK_UN)

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}  # absent or damaged: the registry marker and resource_group still hold
        return data if isinstance(data, dict) else {}

    def _write(self, entries: dict[str, Any]) -> None:
        fs.write_text(self.path, json.dumps(entries, sort_keys=True))


def ledger_entries(raw: dict[str, Any], gitlab_url: str, now: float) -> list[Entry]:
    """The entries on one GitLab (a ledger serves one project), dropping those too old to be
    running and unreadable ones."""
    found = []
    for key in list(raw):
        entry = Entry.from_dict(raw[key])
        if entry is None or now - entry.created > MAX_AGE:
            del raw[key]
        elif entry.gitlab_url == gitlab_url:
            found.append(entry)
    return found


class InFlight:
    """The runs a submit must join or yield to, read from a ledger the caller holds locked.

    Decides only: which run an identical submit joins, or that a different one refuses it
    (LockedError). Whether a run still goes on, GitLab says (once per pipeline, and only for
    runs that share an identity with the submit); finished runs leave the ledger.
    """

    def __init__(self, raw: dict[str, Any], api: GitLab, *, now: float) -> None:
        self.raw = raw
        self.api = api
        self.now = now
        self.entries = ledger_entries(raw, api.url, now)
        self._running: dict[tuple[str, int], bool] = {}

    def _is_running(self, entry: Entry) -> bool:
        key = (entry.project, entry.pipeline_id)
        if key not in self._running:
            try:
                pipeline = self.api.for_project(entry.project).get_pipeline(entry.pipeline_id)
                self._running[key] = not to_phase(str(pipeline.get("status"))).terminal
            except NotFound:
                self._running[key] = False
        return self._running[key]

    def join(self, bundle: Bundle) -> Entry | None:
        """The identical run this machine started, None when none of its runs conflicts.
        Raises LockedError when one of them is a different run for one of the identities."""
        joined = decide(self.entries, bundle, self._is_running, now=self.now)
        for entry in self.entries:
            if self._running.get((entry.project, entry.pipeline_id)) is False:
                self.raw.pop(entry.dispatch_id, None)
        return joined

    def join_marker(self, bundle: Bundle, marker: Entry | None) -> Entry | None:
        """The same for the run another machine recorded for the identity set (its marker).
        Raises LockedError."""
        if marker is None or marker.gitlab_url != self.api.url:
            return None
        return decide([marker], bundle, self._is_running, now=self.now)

    def record(self, entry: Entry) -> None:
        """Remember the run this submit follows, for the next submit on this machine."""
        self.raw[entry.dispatch_id] = entry.to_dict()


def find_by_name(
    api: GitLab, name: str, sleep: Callable[[float], None], settle: float
) -> dict[str, Any] | None:
    """The newest pipeline named ``name``, looked for twice, after ``settle`` and twice that
    (GitLab may still be creating it). Raises GitLabError when this cannot be known."""
    for attempt in (1, 2):
        sleep(settle * attempt)
        try:
            pipelines = api.list_pipelines(name=name)
        except ApiError as exc:
            raise GitLabError(
                f"the pipeline may or may not exist (look for {name!r}): {exc}"
            ) from exc
        if any("name" not in p for p in pipelines):
            raise GitLabError(
                f"cannot tell whether pipeline {name!r} was created: this GitLab does not "
                "report pipeline names (16.3+ does); look for it before dispatching again"
            )
        matches = [p for p in pipelines if p.get("name") == name]
        if matches:
            return max(matches, key=lambda p: int(p["id"]))
    return None


def read_marker(api: GitLab, key: str) -> Entry | None:
    """The last run started for an identity set, by any machine; None when there is none."""
    try:
        data = api.get_package_file(LOCK_PACKAGE, key, MARKER_FILE)
    except NotFound:
        return None
    try:
        return Entry.from_dict(json.loads(data))
    except ValueError:
        return None


def write_marker(api: GitLab, key: str, entry: Entry, warn: Callable[[str], None]) -> None:
    """Record a new run for other machines. A failure only weakens their early refusal."""
    try:
        api.put_package_file(LOCK_PACKAGE, key, MARKER_FILE, dump(entry.to_dict()))
    except GitLabError as exc:
        warn(f"warning: could not record the run for other machines: {exc}")


class Coalescer(Generic[T]):
    """Identical calls from threads of one process share one execution and its result."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running: dict[Any, Future[T]] = {}

    def run(self, key: Any, call: Callable[[], T]) -> T:
        """Run ``call``, or wait for the identical call already running and return its result
        (or raise its exception)."""
        with self._lock:
            future = self._running.get(key)
            leader = future is None
            if future is None:
                future = Future()
                self._running[key] = future
        if not leader:
            return future.result()
        try:
            result = call()
        except BaseException as exc:
            future.set_exception(exc)
            raise
        else:
            future.set_result(result)
            return result
        finally:
            with self._lock:
                del self._running[key]
