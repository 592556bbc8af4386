"""``${env:NAME}`` and ``${outputs:IDENTITY:KEY}``: finding, resolving, escaping, errors."""

from __future__ import annotations

from typing import Any

import pytest

from runner_agent.model.placeholders import Placeholder, find_placeholders, resolve, walk_strings

ENV = {"USER": "alice", "TOKEN": "s3cr3t", "EMPTY": ""}
OUTPUTS: dict[str, dict[str, Any]] = {
    "acme/db": {"port": 5432, "host": "db1", "tls": True, "conn": {"user": "app", "pool": 5}},
    "acme/cache": {"nodes": ["c1", "c2"], "none": None},
}


def lookup(p: Placeholder) -> Any:
    if p.kind == "env":
        return ENV[p.name]
    value: Any = OUTPUTS[p.name]
    for part in p.key.split("."):
        value = value[part]
    return value


def test_whole_value_keeps_the_type() -> None:
    assert resolve("${env:USER}", lookup) == "alice"
    assert resolve("${env:EMPTY}", lookup) == ""
    assert resolve("${outputs:acme/db:port}", lookup) == 5432
    assert resolve("${outputs:acme/db:tls}", lookup) is True
    assert resolve("${outputs:acme/db:conn}", lookup) == {"user": "app", "pool": 5}
    assert resolve("${outputs:acme/db:conn.pool}", lookup) == 5
    assert resolve("${outputs:acme/cache:nodes}", lookup) == ["c1", "c2"]
    assert resolve("${outputs:acme/cache:none}", lookup) is None


def test_embedded_values_become_text() -> None:
    assert resolve("user=${env:USER};pw=${env:TOKEN}", lookup) == "user=alice;pw=s3cr3t"
    assert resolve("${outputs:acme/db:host}:${outputs:acme/db:port}", lookup) == "db1:5432"
    assert resolve("tls=${outputs:acme/db:tls}", lookup) == "tls=true"
    assert resolve("c=${outputs:acme/db:conn}", lookup) == 'c={"pool":5,"user":"app"}'
    assert resolve("n=${outputs:acme/cache:nodes}", lookup) == 'n=["c1","c2"]'
    assert resolve("x${outputs:acme/cache:none}", lookup) == "xnull"
    assert resolve(" ${env:USER}", lookup) == " alice"  # not whole: a leading space


def test_nested_structures_are_copied_not_changed() -> None:
    config = {
        "a": ["${env:USER}", 1, {"b": "${outputs:acme/db:port}"}],
        "c": ("${env:TOKEN}",),
        "d": None,
        "e": 2.5,
    }
    out = resolve(config, lookup)
    assert out == {"a": ["alice", 1, {"b": 5432}], "c": ["s3cr3t"], "d": None, "e": 2.5}
    assert config["a"][0] == "${env:USER}"


def test_escape_stays_literal() -> None:
    def nothing(_: Placeholder) -> Any:
        raise AssertionError("an escaped placeholder is not looked up")

    assert resolve("$${env:USER}", nothing) == "${env:USER}"
    assert resolve("a $${outputs:acme/db:port} b", nothing) == "a ${outputs:acme/db:port} b"
    assert resolve("$${env:USER} and ${env:USER}", lookup) == "${env:USER} and alice"
    assert list(find_placeholders({"x": "$${env:USER}"})) == []


def test_other_dollar_braces_are_plain_data() -> None:
    def nothing(_: Placeholder) -> Any:
        raise AssertionError("not a placeholder")

    for text in ["${HOME}", "$HOME", "${vault:x}", "{{ jinja }}", "$", "${", "price: 5$", "${}"]:
        assert resolve(text, nothing) == text
        assert list(find_placeholders(text)) == []


def test_find_placeholders_paths_and_kinds() -> None:
    config = {
        "url": "https://${env:USER}@${outputs:acme/db:host}/x",
        "list": ["plain", "${env:TOKEN}"],
        "deep": {"k": "${outputs:acme/db:conn.user}"},
    }
    found = list(find_placeholders(config))
    assert found == [
        ("url", Placeholder("env", "USER")),
        ("url", Placeholder("outputs", "acme/db", "host")),
        ("list[1]", Placeholder("env", "TOKEN", whole=True)),
        ("deep.k", Placeholder("outputs", "acme/db", "conn.user", whole=True)),
    ]
    assert str(found[1][1]) == "${outputs:acme/db:host}"
    assert str(found[0][1]) == "${env:USER}"


def test_walk_strings() -> None:
    assert list(walk_strings({"a": [{"b": "x"}, 1, "y"], "c": "z", 3: "k"})) == [
        ("a[0].b", "x"),
        ("a[2]", "y"),
        ("c", "z"),
        ("3", "k"),
    ]


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("${env:1BAD}", "bad placeholder '${env:1BAD}': expected ${env:NAME}"),
        ("${env:}", "bad placeholder '${env:}'"),
        ("${env:A-B}", "bad placeholder '${env:A-B}'"),
        ("${env:A B}", "bad placeholder '${env:A B}'"),
        ("x ${outputs:acme/db} y", "expected ${outputs:IDENTITY:KEY}"),
        ("${outputs:Acme:port}", "bad placeholder '${outputs:Acme:port}'"),
        ("${outputs:../etc:port}", "bad placeholder '${outputs:../etc:port}'"),
        ("${outputs:acme/db:}", "expected ${outputs:IDENTITY:KEY}"),
        ("${outputs:acme/db:a:b}", "expected ${outputs:IDENTITY:KEY}"),
        ("token ${env:TOKEN", "bad placeholder '${env:TOKEN': missing the closing '}'"),
        ("${outputs:acme/db:port", "missing the closing '}'"),
    ],
)
def test_bad_placeholders(text: str, fragment: str) -> None:
    found = list(find_placeholders({"k": text}))
    assert len(found) == 1
    path, message = found[0]
    assert path == "k"
    assert isinstance(message, str)
    assert fragment in message
    with pytest.raises(ValueError, match="bad placeholder"):
        resolve(text, lookup)


def test_escaped_unclosed_is_literal() -> None:
    assert list(find_placeholders("$${env:X")) == []
    assert resolve("$${env:X", lookup) == "$${env:X"


def test_lookup_errors_propagate() -> None:
    with pytest.raises(KeyError):
        resolve("${env:MISSING}", lookup)
    with pytest.raises(KeyError):
        resolve("x ${outputs:acme/db:nope}", lookup)


def test_non_strings_pass_through() -> None:
    for value in [1, 2.5, True, None]:
        assert resolve(value, lookup) == value
        assert list(find_placeholders(value)) == []
