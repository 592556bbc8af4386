"""Task files and the Python API: what is valid, the defaults, and the details of refusals."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from runner_agent.core.errors import InvalidInput, Problem
from runner_agent.model.agents import AgentRegistry, check_config, default_registry
from runner_agent.model.placeholders import resolve
from runner_agent.model.tasks import (
    DEFAULT_TIMEOUT,
    MAX_FILE_BYTES,
    check_tasks,
    load_tasks,
    parse_duration,
    tasks_from_data,
)

AGENTS = Path(__file__).resolve().parents[1] / "fixtures" / "agents"


@pytest.fixture(scope="module")
def registry() -> AgentRegistry:
    return default_registry([AGENTS])


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(exc: pytest.ExceptionInfo[InvalidInput]) -> list[tuple[int | None, str, str]]:
    return [(p.document, p.field, p.message) for p in exc.value.problems]


# -- valid files ----------------------------------------------------------------------------------


def test_single_document_with_defaults(tmp_path: Path, registry: AgentRegistry) -> None:
    path = write(tmp_path, "web.yml", "identity: acme/web\nagent: probe\n")
    [task] = load_tasks([path], registry)
    assert task.identity == "acme/web"
    assert task.agent == "probe"
    assert task.command is None
    assert task.version is None
    assert dict(task.config) == {}
    assert list(task.hosts) == ["localhost"]
    assert task.tags == ()
    assert task.timeout == DEFAULT_TIMEOUT == 3600
    assert task.outputs_from == ()
    assert (task.source, task.document, task.where) == (str(path), 0, f"{path}[0]")
    # the interpreter is added where the inventory is written (ansible_exec), not here
    assert task.inventory() == {"all": {"hosts": {"localhost": {"ansible_connection": "local"}}}}


def test_every_field(tmp_path: Path, registry: AgentRegistry) -> None:
    path = write(
        tmp_path,
        "web.yml",
        """\
apiVersion: runner-agent/v1
identity: acme/web-1.prod_eu
agent: probe
command: hello
version: "1.2.0"
config: {message: hi}
hosts: [web1, 10.0.0.7, "::1", "db[01:03]"]
runner: {tags: [acme-dc1, linux]}
timeout: 30m
outputs_from: [acme/db]
""",
    )
    [task] = load_tasks([path], registry)
    assert task.command == "hello"
    assert task.version == "1.2.0"
    assert dict(task.config) == {"message": "hi"}
    assert list(task.hosts) == ["web1", "10.0.0.7", "::1", "db[01:03]"]
    assert task.tags == ("acme-dc1", "linux")
    assert task.timeout == 1800
    assert task.outputs_from == ("acme/db",)
    assert task.inventory() == {
        "all": {"hosts": {"web1": {}, "10.0.0.7": {}, "::1": {}, "db[01:03]": {}}}
    }


def test_list_multi_document_and_json(tmp_path: Path, registry: AgentRegistry) -> None:
    listed = write(
        tmp_path,
        "list.yml",
        "- {identity: a, agent: probe}\n- {identity: b, agent: probe}\n",
    )
    multi = write(
        tmp_path,
        "multi.yaml",
        "---\nidentity: c\nagent: probe\n---\n# empty document\n---\n"
        "- {identity: d, agent: probe}\n- {identity: e, agent: probe}\n...\n",
    )
    one_json = write(tmp_path, "one.json", json.dumps({"identity": "f", "agent": "probe"}))
    many_json = write(
        tmp_path,
        "many.JSON",
        json.dumps([{"identity": "g", "agent": "probe"}, {"identity": "h", "agent": "probe"}]),
    )
    tasks = load_tasks([listed, multi, one_json, many_json], registry)
    assert [(t.identity, Path(t.source).name, t.document) for t in tasks] == [
        ("a", "list.yml", 0),
        ("b", "list.yml", 1),
        ("c", "multi.yaml", 0),
        ("d", "multi.yaml", 1),
        ("e", "multi.yaml", 2),
        ("f", "one.json", 0),
        ("g", "many.JSON", 0),
        ("h", "many.JSON", 1),
    ]


def test_byte_order_mark_and_crlf_are_fine(tmp_path: Path) -> None:
    path = tmp_path / "bom.yml"
    path.write_bytes(b"\xef\xbb\xbfidentity: acme/web\r\nagent: probe\r\n")
    [task] = load_tasks([path])
    assert task.identity == "acme/web"


def test_json_extension_is_parsed_as_json_and_others_as_yaml(tmp_path: Path) -> None:
    # YAML is a superset of JSON: a .yml file may hold JSON
    path = write(tmp_path, "task.yml", '{"identity": "acme/web", "agent": "probe"}')
    assert load_tasks([path])[0].identity == "acme/web"
    bad = write(tmp_path, "task.json", "identity: acme/web\nagent: probe\n")
    with pytest.raises(InvalidInput) as exc:
        load_tasks([bad])
    assert exc.value.problems[0].message.startswith("not valid JSON at line 1, column 1")


def test_yaml_anchors_and_merge_keys(tmp_path: Path, registry: AgentRegistry) -> None:
    path = write(
        tmp_path,
        "anchors.yml",
        """\
- &web
  identity: acme/web
  agent: probe
  config: &cfg {message: hi, count: 2}
- <<: *web
  identity: acme/web2
  config:
    <<: *cfg
    count: 3
""",
    )
    first, second = load_tasks([path], registry)
    assert dict(first.config) == {"message": "hi", "count": 2}
    assert second.agent == "probe"
    assert dict(second.config) == {"message": "hi", "count": 3}


def test_dates_stay_strings(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "dates.yml",
        "identity: acme/web\nagent: probe\nversion: 2024-05-01\n"
        "config: {extra: {at: 2024-05-01 10:00:00}}\n",
    )
    [task] = load_tasks([path])
    assert task.version == "2024-05-01"
    assert task.config["extra"] == {"at": "2024-05-01 10:00:00"}
    json.dumps(task.to_dict())  # plain data all the way down


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("30s", 30), ("10m", 600), ("2h", 7200), (45, 45), ("168h", 168 * 3600), ("1s", 1)],
)
def test_timeouts(value: str | int, seconds: int) -> None:
    [task] = tasks_from_data([{"identity": "a", "agent": "probe", "timeout": value}])
    assert task.timeout == seconds
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["soon", "10", "1d", "-5m", "0s", "1.5h", "10 m", "m"])
def test_bad_durations(value: str) -> None:
    with pytest.raises(ValueError, match="bad duration"):
        parse_duration(value)
    with pytest.raises(InvalidInput) as exc:
        tasks_from_data([{"identity": "a", "agent": "probe", "timeout": value}])
    assert [p.field for p in exc.value.problems] == ["timeout"]


@pytest.mark.parametrize("host", ["-oProxyCommand=touch x", ".hidden", "web 1", "a;b", ""])
def test_bad_host_names(host: str) -> None:
    with pytest.raises(InvalidInput) as exc:
        tasks_from_data([{"identity": "a", "agent": "probe", "hosts": ["ok", host]}])
    assert [p.field for p in exc.value.problems] == ["hosts[1]"]


def test_inventory_mapping_hosts(registry: AgentRegistry) -> None:
    inventory = {
        "all": {
            "hosts": {"web1": {"ansible_host": "10.0.0.1"}},
            "children": {"db": {"hosts": {"db1": {}}}, "vars": {"ansible_user": "deploy"}},
        }
    }
    [task] = tasks_from_data(
        [{"identity": "a", "agent": "probe", "hosts": inventory}], registry=registry
    )
    assert task.inventory() == inventory
    assert task.to_dict()["hosts"] == inventory


def test_placeholders_stand_in_for_typed_options(registry: AgentRegistry) -> None:
    config = {
        "count": "${env:N}",
        "sleep": "${outputs:acme/db:sleep}",
        "fail": "${env:FAIL}",
        "extra": "${env:EXTRA}",
        "message": "hello ${env:NAME}, port ${outputs:acme/db:port}",
    }
    [task] = tasks_from_data(
        [{"identity": "acme/web", "agent": "probe", "config": config, "outputs_from": ["acme/db"]}],
        registry=registry,
    )
    assert dict(task.config) == config  # validation does not touch the values
    assert task.secret_env_names() == ["EXTRA", "FAIL", "N", "NAME"]


def test_placeholders_stand_in_for_choices_and_required(registry: AgentRegistry) -> None:
    config = {"path": "${env:OUT}", "format": "${env:FORMAT}", "values": "${env:VALUES}"}
    [task] = tasks_from_data(
        [{"identity": "a", "agent": "kv_file", "config": config}], registry=registry
    )
    assert task.secret_env_names() == ["FORMAT", "OUT", "VALUES"]


def test_escaped_placeholder_stays_literal(tmp_path: Path, registry: AgentRegistry) -> None:
    path = write(
        tmp_path,
        "escape.yml",
        "identity: acme/web\nagent: probe\nconfig: {message: 'cost $${env:X} and ${HOME}'}\n",
    )
    [task] = load_tasks([path], registry)
    assert task.config["message"] == "cost $${env:X} and ${HOME}"
    assert task.secret_env_names() == []

    def nothing(_: object) -> str:
        raise AssertionError("nothing to look up")

    assert resolve(task.config, nothing) == {"message": "cost ${env:X} and ${HOME}"}


def test_to_dict_round_trips(tmp_path: Path, registry: AgentRegistry) -> None:
    path = write(
        tmp_path,
        "tasks.yml",
        """\
- identity: acme/web
  agent: probe
  command: update
  version: "2"
  config: {message: "${env:M}", extra: {nested: [1, {a: b}]}}
  hosts: [web1, web2]
  runner: {tags: [dc1]}
  timeout: 2h
- identity: acme/db
  agent: probe
  outputs_from: [acme/web]
  hosts: {all: {hosts: {db1: {ansible_port: 2222}}}}
- identity: acme/cache
  agent: probe
""",
    )
    tasks = load_tasks([path], registry)
    data = [t.to_dict() for t in tasks]
    again = tasks_from_data(json.loads(json.dumps(data)), source=str(path), registry=registry)
    assert [t.to_dict() for t in again] == data
    for before, after in zip(tasks, again, strict=True):
        assert dataclasses.replace(after, hosts=before.hosts) == before
    assert data[2] == {
        "identity": "acme/cache",
        "agent": "probe",
        "config": {},
        "hosts": ["localhost"],
        "timeout": 3600,
    }


def test_tasks_from_data_takes_one_mapping_too() -> None:
    [task] = tasks_from_data({"identity": "acme/web", "agent": "probe"})
    assert (task.source, task.document) == ("<api>", 0)


def test_without_a_registry_agents_are_not_looked_up() -> None:
    [task] = tasks_from_data([{"identity": "a", "agent": "not_installed_here", "command": "x"}])
    assert task.agent == "not_installed_here"


def test_same_identity_same_agent_is_fine() -> None:
    tasks = tasks_from_data(
        [
            {"identity": "a", "agent": "probe"},
            {"identity": "a", "agent": "probe", "command": "cycle"},
        ]
    )
    assert check_tasks(tasks) == []


# -- refusals through the API ---------------------------------------------------------------------


def test_api_problems_name_source_index_and_field(registry: AgentRegistry) -> None:
    items: list[Any] = [
        {"identity": "ok", "agent": "probe"},
        {"identity": "x", "agent": "probe", "config": {"count": "many"}},
        "not a task",
        {"identity": "../up", "agent": "probe", "runner": {"tags": ["a", "a"]}},
    ]
    with pytest.raises(InvalidInput) as exc:
        tasks_from_data(items, source="stackl", registry=registry)
    found = exc.value.problems
    assert [(p.source, p.document, p.field) for p in found] == [
        ("stackl", 1, "config.count"),
        ("stackl", 2, ""),
        ("stackl", 3, "identity"),
        ("stackl", 3, "runner.tags"),
    ]
    assert str(found[1]) == "stackl[2]: a task is a mapping, not str"
    assert "has non-unique elements" in found[3].message
    assert exc.value.exit_code == 2


def test_no_tasks_at_all() -> None:
    with pytest.raises(InvalidInput) as exc:
        tasks_from_data([])
    assert exc.value.problems == [Problem("<api>", "no task found")]


def test_api_refuses_what_json_cannot_say() -> None:
    import datetime

    item = {
        "identity": "a",
        "agent": "probe",
        "config": {
            "when": datetime.date(2024, 1, 1),
            "blob": b"x",
            "ratio": float("inf"),
            "tags": {"a", "b"},
            "nested": {"list": [{1: "x"}]},
        },
    }
    with pytest.raises(InvalidInput) as exc:
        tasks_from_data([item])
    assert [(p.field, p.message.split(" ", 2)[:2]) for p in exc.value.problems] == [
        ("config.blob", ["a", "bytes"]),
        ("config.nested.list[0]", ["key", "1"]),
        ("config.ratio", ["inf", "is"]),
        ("config.tags", ["a", "set"]),
        ("config.when", ["a", "date"]),
    ]


def test_deep_nesting_from_the_api_does_not_exhaust_the_stack() -> None:
    deep: Any = "leaf"
    for _ in range(5000):
        deep = [deep]
    with pytest.raises(InvalidInput) as exc:
        tasks_from_data([{"identity": "a", "agent": "probe", "config": {"extra": deep}}])
    assert problems_of(exc) == [(0, "config.extra", "nested deeper than 64 levels: refused")]


def test_deeply_nested_json_file(tmp_path: Path) -> None:
    path = write(tmp_path, "deep.json", "[" * 100_000 + "]" * 100_000)
    with pytest.raises(InvalidInput) as exc:
        load_tasks([path])
    assert problems_of(exc) == [(None, "", "not valid JSON: nested too deeply")]


def test_deeply_nested_yaml_file(tmp_path: Path) -> None:
    path = write(tmp_path, "deep.yml", "[" * 100_000 + "]" * 100_000)
    with pytest.raises(InvalidInput) as exc:
        load_tasks([path])
    assert problems_of(exc) == [(None, "", "not valid YAML: nested too deeply")]


def test_file_size_limit_is_inclusive(tmp_path: Path) -> None:
    head = "identity: acme/web\nagent: probe\n"
    path = write(tmp_path, "big.yml", head + "#" * (MAX_FILE_BYTES - len(head) - 1) + "\n")
    assert path.stat().st_size == MAX_FILE_BYTES
    assert load_tasks([path])[0].identity == "acme/web"


def test_all_duplicate_keys_of_a_document_are_reported(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "dups.yml",
        "- {identity: a, agent: probe}\n"
        "- identity: b\n  agent: probe\n  agent: probe\n  config: {extra: {k: 1, k: 2}}\n",
    )
    with pytest.raises(InvalidInput) as exc:
        load_tasks([path])
    assert [(p.document, p.field) for p in exc.value.problems] == [
        (1, "agent"),
        (1, "config.extra.k"),
    ]
    assert "duplicate key 'agent' (line 4, column 3; first at line 3, column 3)" in str(
        exc.value.problems[0]
    )


def test_duplicate_keys_in_a_json_list(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "dups.json",
        '[{"identity": "a", "agent": "probe"},'
        ' {"identity": "b", "agent": "probe", "config": {"x": {"y": 1, "y": 2}}}]',
    )
    with pytest.raises(InvalidInput) as exc:
        load_tasks([path])
    assert problems_of(exc) == [(1, "config.x.y", "duplicate key 'y'")]


def test_yaml_tags_in_keys_are_refused_too(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "tag.yml",
        "identity: a\nagent: probe\nconfig: {? !!python/name:os.system : x}\n",
    )
    with pytest.raises(InvalidInput) as exc:
        load_tasks([path])
    assert [(p.document, p.field) for p in exc.value.problems] == [(0, "config")]
    assert "!!python/name:os.system is not allowed" in exc.value.problems[0].message


def test_bad_scalar_for_its_tag(tmp_path: Path) -> None:
    path = write(tmp_path, "int.yml", "identity: a\nagent: probe\nconfig: {count: !!int abc}\n")
    with pytest.raises(InvalidInput) as exc:
        load_tasks([path])
    [(index, field, message)] = problems_of(exc)
    assert (index, field) == (0, "")
    assert message.startswith("not valid YAML: ")


def test_digest_checks_both_install_and_update(tmp_path: Path, registry: AgentRegistry) -> None:
    # a task without a command may run install and update: the config must fit both,
    # and a problem found for both is reported once
    with pytest.raises(InvalidInput) as exc:
        tasks_from_data(
            [{"identity": "a", "agent": "probe", "config": {"count": "x"}}], registry=registry
        )
    assert [p.field for p in exc.value.problems] == ["config.count"]


def test_uninstall_takes_its_own_spec(registry: AgentRegistry) -> None:
    [task] = tasks_from_data(
        [{"identity": "a", "agent": "probe", "command": "uninstall", "config": {"message": "bye"}}],
        registry=registry,
    )
    assert task.command == "uninstall"
    with pytest.raises(InvalidInput) as exc:
        tasks_from_data(
            [{"identity": "a", "agent": "probe", "command": "uninstall", "config": {"count": 1}}],
            registry=registry,
        )
    assert [p.field for p in exc.value.problems] == ["config.count"]


# -- check_config: an Ansible argument spec, placeholders standing in ----------------------------

SPEC: dict[str, Any] = {
    "name": {"type": "str", "required": True},
    "port": {"type": "int", "default": 80},
    "mode": {"type": "str", "choices": ["fast", "safe"]},
    "size": {"type": "bytes"},
    "ports": {"type": "list", "elements": "int"},
    "db": {
        "type": "dict",
        "options": {"host": {"type": "str", "required": True}, "port": {"type": "int"}},
    },
    "users": {
        "type": "list",
        "elements": "dict",
        "options": {"login": {"type": "str", "required": True}, "uid": {"type": "int"}},
    },
}


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"name": "x"}, []),
        ({}, [("config.name", "missing required arguments: name")]),
        ({"name": "x", "port": "http"}, [("config.port", "unable to convert to int")]),
        ({"name": "x", "mode": "slow"}, [("config.mode", "must be one of: fast, safe, got: slow")]),
        ({"name": "x", "ports": [1, "two"]}, [("config.ports", "unable to convert to int")]),
        (
            {"name": "x", "db": {"port": 1}},
            [("config.db.host", "missing required arguments: host")],
        ),
        ({"name": "x", "db": {"host": "h", "port": "p"}}, [("config.db.port", "convert to int")]),
        ({"name": "x", "db": 3}, [("config.db", "unable to convert to dict")]),
        ({"name": "x", "db": {"host": "h", "pw": 1}}, [("config.db.pw", "accepts: host, port")]),
        ({"name": "x", "users": [{"uid": "u", "login": "l"}]}, [("config.users.uid", "to int")]),
        (
            {"name": "x", "colour": 1, "db": {"host": "h", "zz": 2}},
            [("config.colour", "unknown option"), ("config.db.zz", "unknown option")],
        ),
    ],
)
def test_check_config(config: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    found = check_config(config, SPEC)
    assert [f for f, _ in found] == [f for f, _ in expected]
    for (_, message), (_, fragment) in zip(found, expected, strict=True):
        assert fragment in message


def test_check_config_whole_placeholders_stand_in_for_any_type() -> None:
    config = {
        "name": "${env:NAME}",
        "port": "${outputs:acme/db:port}",
        "mode": "${env:MODE}",
        "size": "${env:SIZE}",
        "ports": ["${env:P1}", 2],
        "db": "${env:DB}",
        "users": ["${env:U1}", {"login": "${env:LOGIN}", "uid": "${env:UID}"}],
    }
    assert check_config(config, SPEC) == []


def test_check_config_embedded_placeholder_is_a_string() -> None:
    assert [f for f, _ in check_config({"name": "x", "port": "8${env:P}"}, SPEC)] == ["config.port"]


def test_check_config_without_spec_accepts_anything() -> None:
    assert check_config({"anything": [1, {"x": None}]}, {}) == []


@pytest.mark.parametrize(
    "inventory",
    [
        {"localhost": {"ansible_user": "x"}},  # a group named localhost, holding no host
        {"all": {"hosts": {}}},
        {"web": {"children": {"db": {"vars": {"a": 1}}}}},
    ],
)
def test_an_inventory_mapping_naming_no_host_is_invalid(inventory: dict[str, Any]) -> None:
    with pytest.raises(InvalidInput) as exc:
        tasks_from_data([{"identity": "a", "agent": "probe", "hosts": inventory}])
    assert [p.field for p in exc.value.problems] == ["hosts"]
    assert "names no host" in str(exc.value)
