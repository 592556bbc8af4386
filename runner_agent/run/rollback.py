"""Rollback: a guarded forward run whose desired state is an earlier revision's.

``rollback(identity, to, ctx)`` takes the identity's lock (LockedError, exit 3, when another
run holds it) and, holding it:

1. runs the latest revision's task (``update``) as a dry run: what the endpoint holds now,
   per host, is that task's values corrected by the dry run's ``before`` values;
2. for each key the revisions after ``to`` touched, compares what the endpoint holds with what
   the last of them left there (:func:`~runner_agent.model.revisions.expected_after`). A key
   someone changed since is a conflict, left alone (kept as found) unless ``force``; a secret
   key's value is never stored, so it cannot be compared and counts as unchanged;
3. every other such key goes back to the value it had before the first revision undone (a
   secret to its ``${env:}`` source, resolved now); keys nobody undoes keep what they hold;
4. runs ``update`` with those values for real (or, with ``check``, as a dry run), recorded as
   the revision ``rollback of N to T`` whose ``state_of`` is T.

When the values differ between hosts, the task runs once per host (one revision each).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from dataclasses import replace
from typing import Any

from runner_agent.core.errors import InvalidInput, Problem
from runner_agent.core.redact import MASK
from runner_agent.model.revisions import expected_after, find_revision
from runner_agent.model.state import State, StateStore
from runner_agent.model.tasks import Task, as_check, tasks_from_data
from runner_agent.report.model import Report, Status
from runner_agent.run.runtime import RunContext, run_tasks
from runner_agent.run.secret_keys import SEP, flat_keys

__all__ = ["rollback"]


class _Held(StateStore):
    """The store, with the identity's lock already held by the rollback around the runs."""

    def __init__(self, store: StateStore) -> None:
        self.store = store

    def read(self, identity: str) -> State | None:
        return self.store.read(identity)

    def write(self, state: State) -> None:
        self.store.write(state)

    @contextlib.contextmanager
    def lock(self, identity: str, command: str, wait: bool = False) -> Iterator[None]:
        yield


def _goal(state: State, to: str) -> int:
    """The revision to go back to: 0 is the state before the oldest kept revision (pruned ones
    are merged into it, so that is before the first run recorded)."""
    if to == "previous":
        effective = state.revisions[-1].get("state_of", state.revisions[-1]["number"])
        older = [r["number"] for r in state.revisions if r["number"] < effective]
        return older[-1] if older else 0
    try:
        number = int(to)
    except ValueError:
        raise InvalidInput(
            Problem("--to", f"a revision number or 'previous', not {to!r}")
        ) from None
    if number != 0:
        find_revision(state, number)
    if number >= state.revisions[-1]["number"]:
        raise InvalidInput(Problem("--to", f"revision {number} is the latest: nothing to undo"))
    return number


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _same(found: Mapping[str, Any], left: Mapping[str, Any] | None) -> bool:
    """Whether the endpoint still holds what the last undone revision left there."""
    if left is None:
        return True
    if "secret" in left or found.get("value") == MASK:  # never stored: cannot be compared
        return True
    if "absent" in found or "absent" in left:
        return "absent" in found and "absent" in left
    return _text(found.get("value")) == _text(left.get("value"))


def _earliest_before(undone: list[dict[str, Any]], host: str, key: str) -> Mapping[str, Any]:
    for revision in undone:
        was = (revision.get("hosts") or {}).get(host) or {}
        if key in was:
            found: Mapping[str, Any] = was[key]
            return found
    return {"absent": True}


def _touched(undone: list[dict[str, Any]], host: str) -> list[str]:
    keys: set[str] = set()
    for revision in undone:
        keys.update(((revision.get("hosts") or {}).get(host) or {}).keys())
    return sorted(keys)


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in sorted(flat):
        parts = key.split(SEP)
        node = out
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = flat[key]
    return out


def _desired(
    base: Mapping[str, Any],
    dry: list[dict[str, Any]],
    undone: list[dict[str, Any]],
    host: str,
    force: bool,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(flat values to write on ``host``, conflicts left alone there).

    What the endpoint holds now is the latest task's values, corrected by the dry run's
    ``before`` values; each key the undone revisions touched goes back to the value it had
    before the first of them, unless someone changed it since (a conflict)."""
    current: dict[str, Any] = dict(base)
    for item in dry:
        if "before" in item:
            current[item["key"]] = item["before"]
        else:
            current.pop(item["key"], None)
    conflicts: list[dict[str, Any]] = []
    for key in _touched(undone, host):
        found = {"value": current[key]} if key in current else {"absent": True}
        left = expected_after(undone, host, key)
        goal = _earliest_before(undone, host, key)
        if not force and not _same(found, left):
            conflicts.append({"key": key, "found": found, "expected": dict(left or {})})
            continue
        if "secret" in goal and not goal["secret"]:
            why = "its value before came from a source no revision names"
            conflicts.append({"key": key, "found": found, "expected": {}, "why": why})
            continue
        if "absent" in goal:
            current.pop(key, None)
        else:
            current[key] = goal["secret"] if "secret" in goal else goal["value"]
    unknown = sorted(k for k, v in current.items() if v == MASK)
    if unknown:
        if not force:
            raise InvalidInput(
                Problem(
                    "rollback",
                    f"{host}: secret key(s) {', '.join(unknown)} changed since and cannot be "
                    "kept as they are (their values are never stored); --force writes the "
                    "latest task's values there",
                )
            )
        for key in unknown:
            if key in base:
                current[key] = base[key]
            else:
                current.pop(key)
    return current, conflicts


def _host_inventory(task: Task, host: str) -> dict[str, Any]:
    """An inventory of ``host`` alone, with its variables and its groups' variables."""
    merged: dict[str, Any] = {}

    def walk(groups: Mapping[str, Any], inherited: dict[str, Any]) -> None:
        for group in groups.values():
            if not isinstance(group, Mapping):
                continue
            here = {**inherited, **(group.get("vars") or {})}
            hosts = group.get("hosts") or {}
            if host in hosts:
                merged.update({**here, **(hosts[host] or {})})
            walk(group.get("children") or {}, here)

    walk(task.inventory(), {})
    return {"all": {"hosts": {host: merged}}}


def rollback(
    identity: str, to: str, ctx: RunContext, *, check: bool = False, force: bool = False
) -> list[Report]:
    """Roll ``identity`` back to revision ``to`` (a number, ``0`` for before the first kept,
    or ``previous``): its reports, each with the conflicts it left alone. Raises LockedError
    when another run holds the identity, InvalidInput when there is no such revision, or a
    secret changed since cannot be kept."""
    with ctx.store.lock(identity, "rollback"):
        state = ctx.store.read(identity)
        if state is None or not state.revisions:
            raise InvalidInput(Problem("IDENTITY", f"{identity!r} has no revisions to roll back"))
        goal = _goal(state, to)
        undone = [r for r in state.revisions if r["number"] > goal]
        latest = state.revisions[-1]
        if MASK in json.dumps(latest.get("task", {})):
            raise InvalidInput(
                Problem("rollback", f"revision {latest['number']} holds values kept secret")
            )
        item = {**latest["task"], "identity": identity, "command": "update"}
        (task,) = tasks_from_data([item], f"revision {latest['number']}", ctx.registry)
        agent = ctx.registry.get(task.agent)
        held = replace(ctx, store=_Held(ctx.store))
        (dry,) = run_tasks(as_check([task]), held)
        if dry.status is not Status.SUCCESS:
            return [dry]
        values = task.config.get(agent.keys_from)
        base = flat_keys(values) if isinstance(values, Mapping) else {}
        hosts = sorted({h for c in dry.commands for h in c.hosts} | set(dry.key_changes))
        plans = {h: _desired(base, dry.key_changes.get(h, []), undone, h, force) for h in hosts}
        note = {
            "command": f"rollback of {latest['number']} to {goal}",
            "state_of": goal,
            "rollback_of": latest["number"],
        }

        def with_values(flat: Mapping[str, Any], inventory: Any) -> Task:
            config = {**task.config, agent.keys_from: _nest(flat)}
            return replace(task, config=config, hosts=inventory)

        shapes = {json.dumps(plan[0], sort_keys=True, default=str) for plan in plans.values()}
        if len(shapes) <= 1:
            flat = next(iter(plans.values()))[0] if plans else base
            tasks = [with_values(flat, task.hosts)]
        else:
            tasks = [with_values(plans[h][0], _host_inventory(task, h)) for h in hosts]
        runs = as_check(tasks) if check else tasks
        reports = run_tasks(runs, replace(held, revision_note=note))
    conflicts = {h: plan[1] for h, plan in plans.items() if plan[1]}
    for report in reports:
        report.conflicts = conflicts
    return reports
