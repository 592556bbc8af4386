"""Runs in flight: one pipeline per dispatch, identical submits joined, divergent ones refused.

Exactly one pipeline per dispatch: :func:`create_once` never posts again after a creation
request that may have taken effect before looking the pipeline up by its name.

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
from runner_agent.gitlab.api import AmbiguousRequest, ApiError, GitLabAPI, NotFound
from runner_agent.gitlab.bundle import Bundle, dump

__all__ = [
    "LOCK_PACKAGE",
    "Coalescer",
    "Entry",
    "FileLedger",
    "Ledger",
    "MemoryLedger",
    "create_once",
    "decide",
    "default_ledger_path",
    "find_by_name",
    "join_or_start",
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


class _Activity:
    """Whether entries' pipelines still run, asking GitLab at most once per pipeline."""

    def __init__(self, api: GitLabAPI, finished: Callable[[str], bool]) -> None:
        self.api = api
        self.finished = finished
        self.seen: dict[tuple[str, int], bool] = {}

    def __call__(self, entry: Entry) -> bool:
        key = (entry.project, entry.pipeline_id)
        if key not in self.seen:
            try:
                pipeline = self.api.for_project(entry.project).get_pipeline(entry.pipeline_id)
                self.seen[key] = not self.finished(str(pipeline.get("status")))
            except NotFound:
                self.seen[key] = False
        return self.seen[key]


def join_or_start(
    ledger: Ledger,
    api: GitLabAPI,
    bundle: Bundle,
    start: Callable[[], Entry],
    *,
    finished: Callable[[str], bool],
    now: float,
    warn: Callable[[str], None],
) -> Entry:
    """The run to follow for ``bundle``: an identical run in flight (this machine's ledger
    first, then the registry marker of its identity set), else the one ``start`` creates.

    The ledger stays locked throughout, so runs started on this machine are serialised and
    an identical second submit finds the first one's entry. Raises LockedError when a
    different run for one of the identities is in flight; whatever ``start`` raises.
    """
    with ledger.locked() as raw:
        active = _Activity(api, finished)
        entries = ledger_entries(raw, api.url, now)
        joined = decide(entries, bundle, active, now=now)
        for entry in entries:
            if active.seen.get((entry.project, entry.pipeline_id)) is False:
                raw.pop(entry.dispatch_id, None)
        if joined is None:
            key = lock_key(bundle.identities)
            marker = read_marker(api, key)  # the project's own registry: same project
            if marker is not None and marker.gitlab_url == api.url:
                joined = decide([marker], bundle, active, now=now)
            if joined is None:
                joined = start()
                write_marker(api, key, joined, warn)
        raw[joined.dispatch_id] = joined.to_dict()
    return joined


def create_once(
    post: Callable[[], dict[str, Any]],
    find: Callable[[], dict[str, Any] | None],
    *,
    name: str,
    rounds: int,
    warn: Callable[[str], None],
) -> dict[str, Any]:
    """Create a pipeline with ``post``; when that fails after being sent (AmbiguousRequest),
    ``find`` it by name before posting again, so one dispatch never gets two pipelines.
    Raises GitLabError when every round failed."""
    last: AmbiguousRequest | None = None
    for _ in range(rounds):
        try:
            return post()
        except AmbiguousRequest as exc:
            last = exc
            warn(f"warning: {exc}; looking for pipeline {name!r} before trying again")
        found = find()
        if found is not None:
            return found
    raise GitLabError(f"could not create the pipeline: {last}")


def find_by_name(
    api: GitLabAPI, name: str, sleep: Callable[[float], None], settle: float
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


def read_marker(api: GitLabAPI, key: str) -> Entry | None:
    """The last run started for an identity set, by any machine; None when there is none."""
    try:
        data = api.get_package_file(LOCK_PACKAGE, key, MARKER_FILE)
    except NotFound:
        return None
    try:
        return Entry.from_dict(json.loads(data))
    except ValueError:
        return None


def write_marker(api: GitLabAPI, key: str, entry: Entry, warn: Callable[[str], None]) -> None:
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
