"""The changes kv_redis and kv_http report, as properties of their pure planners: for any
packet and any content held, the changes say exactly what the write does. Applying them to
what was held gives what is held after the write; every ``before`` is what was held and every
``after`` what the task wants; the keys are those of drift, once each, sorted."""

from __future__ import annotations

import json
from typing import Any

from agents.ansible_run import load_library
from hypothesis import given, settings
from hypothesis import strategies as st

redis = load_library("kv_redis", "kv_redis")
http = load_library("kv_http", "kv_http")

names = st.text(alphabet="ab/_é\x00 ", min_size=1, max_size=3)
scalars = st.none() | st.booleans() | st.integers(-3, 3) | st.text(alphabet="xy/\n", max_size=3)
packets = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(names, inner, max_size=3),
    max_leaves=8,
)
documents = st.dictionaries(names, packets, max_size=4)
SETTINGS = settings(max_examples=300, deadline=None)


def _apply(held: dict[str, Any], changes: list[dict[str, Any]]) -> dict[str, Any]:
    out = dict(held)
    for item in changes:
        if item["change"] == "removed":
            assert out.pop(item["key"]) == item["before"]
        else:
            assert out.get(item["key"], "<absent>") == item.get("before", "<absent>")
            out[item["key"]] = item["after"]
    return out


def _well_formed(changes: list[dict[str, Any]], drift: list[dict[str, Any]]) -> None:
    assert [{"key": c["key"], "change": c["change"]} for c in changes] == drift
    keys = [c["key"] for c in changes]
    assert keys == sorted(set(keys))
    for c in changes:
        assert ("before" in c) == (c["change"] != "added")
        assert ("after" in c) == (c["change"] != "removed")


@SETTINGS
@given(values=documents, held=st.dictionaries(names, st.text(max_size=3), max_size=5))
def test_redis_changes_turn_the_hash_held_into_the_hash_written(
    values: dict[str, Any], held: dict[str, str]
) -> None:
    desired = redis.desired_state(values)
    sets, deletes, drift = redis.plan(desired, held, True)
    changes = redis.key_changes(desired, held, drift)
    _well_formed(changes, drift)
    written = dict(held, **dict(sets))
    for field in deletes:
        del written[field]
    assert _apply(held, changes) == written == desired


def _rfc7396(target: Any, patch: Any) -> Any:
    """RFC 7396 section 2's MergePatch, as a server that implements it applies a PATCH."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _rfc7396(out.get(key), value)
    return out


def _no_null(value: Any) -> bool:
    if isinstance(value, dict):
        return all(v is not None and _no_null(v) for v in value.values())
    return True


def _canonical(flat: dict[str, Any]) -> dict[str, str]:
    return {k: json.dumps(v, sort_keys=True) for k, v in flat.items()}


@SETTINGS
@given(values=documents, document=documents, method=st.sampled_from(["PUT", "PATCH"]))
def test_http_changes_say_what_the_server_leaves(
    values: dict[str, Any], document: dict[str, Any], method: str
) -> None:
    ignore = {"a"}
    body, drift = http.plan(document, values, method, ignore)
    held = http.compared(document, ignore)
    changes = http.key_changes(http.compared(http.outcome(document, values, method, ignore),
                                             ignore), held, drift)  # fmt: skip
    _well_formed(changes, drift)
    assert (body is None) == (changes == [])
    expected = _canonical(_apply(held, changes))
    if body is None:
        assert expected == _canonical(held)
    elif method == "PUT":  # the server stores the body
        assert _canonical(http.compared(body, ignore)) == expected
    else:
        # a server that replaces the top-level values it is sent (json-server) ...
        assert _canonical(http.compared({**document, **body}, ignore)) == expected
        if _no_null(body):  # ... and one that merges them (RFC 7396) leave the same
            assert _canonical(http.compared(_rfc7396(document, body), ignore)) == expected
        for key, value in http.compared(values, ignore).items():  # the values hold, as asked
            if key in expected:
                assert expected[key] == json.dumps(value, sort_keys=True)
