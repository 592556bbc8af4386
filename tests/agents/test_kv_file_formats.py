"""kv_file's writers, as properties: every value a format accepts reads back the same, with the
module's own readers and with PyYAML; every other value is refused before anything is written.

Generated values cover what a task file or a JSON extra-vars file can carry: text with control
characters, line breaks Unicode knows (NEL, LS, PS), the byte order mark, DEL, lone surrogates,
surrounding spaces; floats with NaN and infinity; nesting in lists and mappings.
"""

from __future__ import annotations

import json
import math
from typing import Any

import yaml
from agents.ansible_run import load_library
from hypothesis import given, settings
from hypothesis import strategies as st

kv = load_library("kv_file", "kv_file")

# every code point, surrogates and controls included, with the awkward ones made likely
AWKWARD = "\x00\x01\t\n\x0b\x0c\r\x1c\x1f \x7f\x85\xa0\u2028\u2029\ufeff\ud800\udfff\"'\\$`#=:;[]"
text = st.text(alphabet=st.characters(codec=None) | st.sampled_from(AWKWARD), max_size=12)
scalars = st.none() | st.booleans() | st.integers() | st.floats() | text
packets = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
    max_leaves=12,
)
top = st.dictionaries(text, packets, max_size=5)
flat_env = st.dictionaries(st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,6}", fullmatch=True), scalars)
ini_key = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_. ;#\[-]{0,5}", fullmatch=True) | text
ini_shaped = st.dictionaries(ini_key, scalars | st.dictionaries(ini_key, scalars, max_size=3))

SETTINGS = settings(max_examples=300, deadline=None)


def _same(a: Any, b: Any) -> bool:
    """Equal as data, NaN equal to NaN, 0.0 equal to -0.0 only when typed alike."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or a == b
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _rendered(values: dict[str, Any], fmt: str) -> str | None:
    """The file text, or None when the writer refused the values (with KVError only)."""
    try:
        return str(kv.render(values, fmt))
    except kv.KVError:
        return None


def _text_form(values: dict[str, Any]) -> dict[str, Any]:
    """What an ini or env file holds: every scalar as its written text."""
    return {
        k: _text_form(v) if isinstance(v, dict) else kv.scalar_text(v) for k, v in values.items()
    }


@SETTINGS
@given(top)
def test_json_reads_back_every_value_it_accepts(values: dict[str, Any]) -> None:
    written = _rendered(values, "json")
    if written is None:
        return
    written.encode("utf-8")  # valid UTF-8: the file is written as such
    assert _same(kv.parse(written, "json"), values)
    # strict JSON: no NaN or Infinity tokens, which readers other than Python's refuse
    json.loads(written, parse_constant=lambda name: pytest_fail(f"non-JSON token {name}"))


@SETTINGS
@given(top)
def test_yaml_reads_back_every_value_it_accepts_with_pyyaml(values: dict[str, Any]) -> None:
    written = _rendered(values, "yaml")
    if written is None:
        return
    written.encode("utf-8")
    assert _same(yaml.safe_load(written), values)


@SETTINGS
@given(top)
def test_yaml_reads_back_every_value_it_accepts_without_pyyaml(values: dict[str, Any]) -> None:
    written = _rendered(values, "yaml")
    if written is None:
        return
    assert _same(kv.parse_yaml_subset(written), values)


@SETTINGS
@given(ini_shaped)
def test_ini_reads_back_the_text_of_every_value_it_accepts(values: dict[str, Any]) -> None:
    written = _rendered(values, "ini")
    if written is None:
        return
    written.encode("utf-8")
    assert kv.parse(written, "ini") == _text_form(values)


@SETTINGS
@given(flat_env)
def test_env_reads_back_the_text_of_every_value_it_accepts(values: dict[str, Any]) -> None:
    written = _rendered(values, "env")
    if written is None:
        return
    written.encode("utf-8")
    assert kv.parse(written, "env") == _text_form(values)


@SETTINGS
@given(top)
def test_a_written_file_shows_no_drift_against_its_own_values(values: dict[str, Any]) -> None:
    """What cycle relies on: after a write, comparing the file with the values finds nothing."""
    for fmt in ("json", "yaml"):
        written = _rendered(values, fmt)
        if written is None:
            continue
        desired = kv.flatten(kv.normalize(values))
        assert kv.compute_drift(desired, kv.flatten(kv.parse(written, fmt)), fmt) == []


def pytest_fail(message: str) -> Any:
    raise AssertionError(message)
