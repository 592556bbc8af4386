# -*- coding: utf-8 -*-
# Copyright: the runner_agent authors. Apache-2.0.
"""What every runner_agent module shares: a packet's flat keys and the drift between two packets.

Standard library only: this file travels with the modules to the target host (AnsiballZ).
"""

from __future__ import annotations

SEP = "/"
CHANGES = ("added", "changed", "removed")


def normalize(value):
    """A copy with every mapping key a string and every tuple a list (JSON's data model)."""
    if isinstance(value, dict):
        return dict((str(k), normalize(v)) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return [normalize(v) for v in value]
    return value


def flatten(data, sep=SEP, _prefix=""):
    """{a: {b: 1}} -> {"a/b": 1}. Lists and empty mappings are leaves."""
    out = {}
    for key, value in data.items():
        name = _prefix + str(key)
        if isinstance(value, dict) and value:
            out.update(flatten(value, sep, name + sep))
        else:
            out[name] = value
    return out


def drift(desired, actual, same=None, removed=True):
    """Keys that differ between two flat mappings: [{key, change}], sorted by key.

    added: in desired only; removed: in actual only (when ``removed``); changed: in both, and
    ``same(desired_value, actual_value)`` (default ==) is false. Values never appear.
    """
    same = same or (lambda a, b: a == b)
    out = []
    for key in sorted(set(desired) | set(actual)):
        if key not in actual:
            out.append({"key": key, "change": "added"})
        elif key not in desired:
            if removed:
                out.append({"key": key, "change": "removed"})
        elif not same(desired[key], actual[key]):
            out.append({"key": key, "change": "changed"})
    return out


def key_changes(desired, actual, drift_items):
    """The drift with values: [{key, change, before, after}] (the check contract in
    docs/agents.md). ``before`` is what ``actual`` holds (absent for an added key), ``after``
    what ``desired`` holds (absent for a removed one). The runtime masks secret keys' values."""
    out = []
    for item in drift_items:
        entry = dict(item)
        if item["key"] in actual:
            entry["before"] = actual[item["key"]]
        if item["change"] != "removed":
            entry["after"] = desired[item["key"]]
        out.append(entry)
    return out
