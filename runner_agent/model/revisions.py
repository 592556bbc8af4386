"""Revisions: what each run that changed keys did to an identity, so it can be undone.

A revision is a JSON object kept in the identity's state document (``State.revisions``):

- ``number`` (1, 2, ...; never reused), ``time``, ``command`` (``install,update``, or
  ``rollback of 7 to 5``), ``status`` (``success``, or ``failed`` for a run that failed after
  changing some hosts), ``agent``, ``agent_version``, ``who`` (``{user, via: gitlab|local}``),
  ``pipeline_url``;
- ``task``: the task as given (its config unresolved: a secret is its ``${env:NAME}``
  placeholder, never its value); a rollback to this revision runs it again;
- ``hosts``: per host, the value each key it touched had before: ``{"value": v}``,
  ``{"absent": true}``, or for a secret key ``{"secret": "${env:NAME}"}`` (the source the
  value came from, ``null`` when unknown);
- ``after``: per host, the same for the value it left; a rollback compares it with what the
  endpoint holds now to find keys changed since;
- ``state_of``: the revision whose state this one established (itself; a rollback's target),
  ``pinned``, and ``folded`` (older revisions merged into this one when they were pruned).

At most :data:`REVISIONS_MAX` unpinned revisions are kept; the oldest is merged into the next
kept one (its ``before`` values win, so rolling back to a revision older than both still
works) and pinned revisions are never dropped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runner_agent.core.errors import InvalidInput, Problem
from runner_agent.model.state import REVISIONS_MAX, State

__all__ = ["add_revision", "expected_after", "find_revision", "pin"]


def add_revision(state: State, revision: dict[str, Any], keep: int = REVISIONS_MAX) -> int:
    """Number ``revision``, append it, and prune to ``keep`` unpinned ones. Returns its number."""
    number = max(state.next_revision, 1 + max((r["number"] for r in state.revisions), default=0))
    revision = {**revision, "number": number}
    revision.setdefault("state_of", number)
    revision.setdefault("pinned", False)
    revision.setdefault("folded", [])
    state.revisions = [*state.revisions, revision]
    state.next_revision = number + 1
    while sum(1 for r in state.revisions if not r.get("pinned")) > keep:
        _drop_oldest_unpinned(state)
    return number


def _drop_oldest_unpinned(state: State) -> None:
    index = next(i for i, r in enumerate(state.revisions) if not r.get("pinned"))
    old = state.revisions[index]
    rest = state.revisions[:index] + state.revisions[index + 1 :]
    if index < len(rest):  # merge into the next kept revision: its span now starts at old's
        nxt = dict(rest[index])
        before = {h: dict(keys) for h, keys in (nxt.get("hosts") or {}).items()}
        after = {h: dict(keys) for h, keys in (nxt.get("after") or {}).items()}
        for host, keys in (old.get("hosts") or {}).items():
            before.setdefault(host, {}).update(keys)
        for host, keys in (old.get("after") or {}).items():
            for key, value in keys.items():
                after.setdefault(host, {}).setdefault(key, value)
        nxt["hosts"], nxt["after"] = before, after
        nxt["folded"] = sorted({*nxt.get("folded", []), *old.get("folded", []), old["number"]})
        rest[index] = nxt
    state.revisions = rest


def find_revision(state: State, number: int) -> dict[str, Any]:
    """The kept revision ``number``. Raises InvalidInput naming the kept ones."""
    for revision in state.revisions:
        if revision["number"] == number:
            return revision
    kept = ", ".join(str(r["number"]) for r in state.revisions) or "none"
    raise InvalidInput(
        Problem("--to", f"{state.identity!r} keeps no revision {number} (kept: {kept})")
    )


def expected_after(
    revisions: list[dict[str, Any]], host: str, key: str
) -> Mapping[str, Any] | None:
    """What the latest of ``revisions`` touching ``key`` on ``host`` left there, or None."""
    for revision in reversed(revisions):
        left = (revision.get("after") or {}).get(host) or {}
        if key in left:
            found: Mapping[str, Any] = left[key]
            return found
    return None


def pin(state: State, number: int, pinned: bool = True) -> None:
    """Pin (or unpin) a kept revision. Raises InvalidInput when it is not kept."""
    find_revision(state, number)
    state.revisions = [
        {**r, "pinned": pinned} if r["number"] == number else r for r in state.revisions
    ]
    if not pinned:
        while sum(1 for r in state.revisions if not r.get("pinned")) > REVISIONS_MAX:
            _drop_oldest_unpinned(state)
