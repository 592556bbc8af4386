"""Revisions in the state document: numbered, bounded, pinned, merged when pruned."""

from __future__ import annotations

from typing import Any

import pytest

from runner_agent.core.errors import InvalidInput
from runner_agent.model.revisions import add_revision, expected_after, find_revision, pin
from runner_agent.model.state import REVISIONS_MAX, State


def revision(key: str, before: Any, after: Any) -> dict[str, Any]:
    return {
        "command": "update",
        "hosts": {"h": {key: {"value": before}}},
        "after": {"h": {key: {"value": after}}},
    }


def test_revisions_are_numbered_and_never_reuse_a_number() -> None:
    state = State("acme/web")
    assert [add_revision(state, revision("k", i, i + 1)) for i in range(3)] == [1, 2, 3]
    state.revisions = state.revisions[:1]
    assert add_revision(state, revision("k", 9, 10)) == 4


def test_history_is_bounded() -> None:
    state = State("acme/web")
    for i in range(REVISIONS_MAX + 5):
        add_revision(state, revision("k", i, i + 1))
    numbers = [r["number"] for r in state.revisions]
    assert numbers == list(range(6, REVISIONS_MAX + 6))


def test_a_pruned_revision_is_merged_into_the_next_kept_one() -> None:
    state = State("acme/web")
    add_revision(state, revision("a", "a0", "a1"), keep=2)
    add_revision(state, revision("b", "b0", "b1"), keep=2)
    add_revision(state, revision("a", "a1", "a2"), keep=2)
    first = state.revisions[0]
    assert first["number"] == 2 and first["folded"] == [1]
    assert first["hosts"]["h"] == {"a": {"value": "a0"}, "b": {"value": "b0"}}  # before both
    assert first["after"]["h"] == {"a": {"value": "a1"}, "b": {"value": "b1"}}


def test_a_pinned_revision_is_kept_beyond_the_bound() -> None:
    state = State("acme/web")
    add_revision(state, revision("k", 0, 1), keep=3)
    pin(state, 1)
    for i in range(1, 10):
        add_revision(state, revision("k", i, i + 1), keep=3)
    numbers = [r["number"] for r in state.revisions]
    assert numbers == [1, 8, 9, 10] and state.revisions[0]["pinned"]
    assert state.revisions[1]["hosts"]["h"]["k"] == {"value": 1}  # since 1: merged 2..8
    assert state.revisions[1]["folded"] == [2, 3, 4, 5, 6, 7]


def test_pinning_a_revision_not_kept_is_invalid() -> None:
    state = State("acme/web")
    add_revision(state, revision("k", 0, 1))
    with pytest.raises(InvalidInput, match="keeps no revision 5"):
        pin(state, 5)
    assert find_revision(state, 1)["number"] == 1


def test_expected_after_is_what_the_latest_revision_touching_the_key_left() -> None:
    state = State("acme/web")
    add_revision(state, revision("a", 0, 1))
    add_revision(state, revision("b", 0, 1))
    assert expected_after(state.revisions, "h", "a") == {"value": 1}
    assert expected_after(state.revisions, "h", "zzz") is None
    assert expected_after(state.revisions, "other", "a") is None
