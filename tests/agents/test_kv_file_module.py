"""The kv_file agent: its module's pure functions, the module run directly, and the role run by
ansible-playbook against files in tmp_path."""

from __future__ import annotations

import datetime
import json
import re
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from agents.ansible_run import ROLES, load_library, run_module, run_role
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

kv = load_library("kv_file", "kv_file")

SAMPLE: dict[str, Any] = {
    "port": 8080,
    "name": "web",
    "flags": {"debug": False, "ratio": 0.25, "big": 1e100, "none": None},
    "hosts": ["a", "b", {"c": 1, "d": [1, [2, 3]]}, [], {}],
    "tricky": {
        "yes": "yes",
        "octal": "0640",
        "number": "1.5",
        "empty": "",
        "null": "null",
        "colon": "a: b",
        "hash": "a #b",
        "quote": 'say "hi"',
        "newline": "one\ntwo",
        "unicode": "héllo",
        "path": "/etc/acme web",
        "template": "{{ not_rendered }}",
    },
    "empty": {},
    "7": "numeric key",
}


# ---------------------------------------------------------------- rendering


def test_json_is_sorted_indented_and_ends_with_newline() -> None:
    text = kv.render({"b": 1, "a": {"d": True, "c": None}}, "json")
    assert text == '{\n  "a": {\n    "c": null,\n    "d": true\n  },\n  "b": 1\n}\n'


def test_yaml_is_block_style_and_deterministic() -> None:
    values = {"b": [1, {"y": 2, "x": "s"}], "a": {"on": "off", "n": None}, "c": {}, "d": []}
    assert kv.render(values, "yaml") == (
        'a:\n  "n": null\n  "on": "off"\nb:\n  - 1\n  - x: s\n    "y": 2\nc: {}\nd: []\n'
    )
    assert kv.render({}, "yaml") == "{}\n"


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_structured_formats_round_trip(fmt: str) -> None:
    text = kv.render(SAMPLE, fmt)
    assert kv.parse(text, fmt) == kv.normalize(SAMPLE)
    loaded = json.loads(text) if fmt == "json" else yaml.safe_load(text)
    assert loaded == kv.normalize(SAMPLE)


def test_yaml_subset_parser_reads_what_the_emitter_writes() -> None:
    """Hosts without PyYAML read YAML files back with the module's own parser."""
    text = kv.render(SAMPLE, "yaml")
    assert kv.parse_yaml_subset(text) == kv.normalize(SAMPLE)
    assert kv.parse_yaml_subset("# c\n---\na:\n- 1\n- b: 2\n  c: x\nd: 'it''s'\n") == {
        "a": [1, {"b": 2, "c": "x"}],
        "d": "it's",
    }


@pytest.mark.parametrize(
    "text", ["yes", "No", "on", "true", "null", "~", "0640", "1.5", "1e3", "", "-x", "a: b"]
)
def test_yaml_quotes_strings_a_parser_would_retype(text: str) -> None:
    rendered = kv.render({"k": text}, "yaml")
    assert yaml.safe_load(rendered) == {"k": text}
    assert kv.parse_yaml_subset(rendered) == {"k": text}


def test_ini_top_level_scalars_first_then_sections() -> None:
    values = {
        "zeta": True,
        "alpha": 3,
        "db": {"user": "app", "port": 5432, "ssl": False, "opt": None},
        "cache": {"ttl": 1.5},
    }
    assert kv.render(values, "ini") == (
        "alpha = 3\n"
        "zeta = true\n"
        "\n"
        "[cache]\n"
        "ttl = 1.5\n"
        "\n"
        "[db]\n"
        "opt = null\n"
        "port = 5432\n"
        "ssl = false\n"
        "user = app\n"
    )
    assert kv.parse_ini(kv.render(values, "ini"))["db"]["ssl"] == "false"


def test_env_quotes_only_when_needed_and_parses_back() -> None:
    values = {
        "PLAIN": "a-b_c.d/e:f@g%h+i,j",
        "SPACE": "a b",
        "EMPTY": "",
        "NUM": 3,
        "FLAG": True,
        "NOTHING": None,
        "HARD": 'q"uote $HOME `cmd` back\\slash\nline\ttab',
    }
    text = kv.render(values, "env")
    assert text == (
        'EMPTY=""\n'
        "FLAG=true\n"
        'HARD="q\\"uote \\$HOME \\`cmd\\` back\\\\slash\\nline\\ttab"\n'
        "NOTHING=null\n"
        "NUM=3\n"
        "PLAIN=a-b_c.d/e:f@g%h+i,j\n"
        'SPACE="a b"\n'
    )
    parsed = kv.parse_env(text)
    assert parsed == {k: kv.scalar_text(v) for k, v in values.items()}
    assert kv.parse_env("# c\nexport A='x y'\nB=z # comment\n") == {"A": "x y", "B": "z"}


@pytest.mark.parametrize(
    ("values", "fmt", "message"),
    [
        ({"A": {"b": 1}}, "env", "env: the value of 'A' is nested (dict)"),
        ({"A": [1]}, "env", "env: the value of 'A' is nested (list)"),
        ({"1A": "x"}, "env", "env: key '1A' is not a variable name"),
        ({"A-B": "x"}, "env", "env: key 'A-B' is not a variable name"),
        ({"s": {"k": {"x": 1}}}, "ini", "ini: 's/k' is nested (dict)"),
        ({"s": {"k": [1]}}, "ini", "ini: 's/k' is nested (list)"),
        ({"k": [1]}, "ini", "ini: 'k' is nested (list)"),
        ({"k": "a\nb"}, "ini", "holds a line break"),
        ({"s": {"a=b": 1}}, "ini", "cannot hold '='"),
        ({"a]": {"k": 1}}, "ini", "section name 'a]'"),
        ({"k": 1}, "toml", "unknown format 'toml'"),
    ],
)
def test_unwritable_values_are_refused_clearly(values: Any, fmt: str, message: str) -> None:
    with pytest.raises(kv.KVError, match=re.escape(message)):
        kv.render(values, fmt)


# ---------------------------------------------------------------- flatten, drift, helpers


def test_flatten_joins_nested_keys_with_slash() -> None:
    assert kv.flatten({"a": {"b": {"c": 1}, "d": [1]}, "e": {}, 3: "x"}) == {
        "a/b/c": 1,
        "a/d": [1],
        "e": {},
        "3": "x",
    }


def test_drift_lists_keys_and_kinds_never_values() -> None:
    desired = {"same": 1, "changed": "new", "added": "secret-a", "typed": 1}
    actual = {"same": 1, "changed": "old", "removed": "secret-r", "typed": True}
    drift = kv.compute_drift(desired, actual, "json")
    assert drift == [
        {"key": "added", "change": "added"},
        {"key": "changed", "change": "changed"},
        {"key": "removed", "change": "removed"},
        {"key": "typed", "change": "changed"},  # 1 is not true in a JSON file
    ]
    assert "secret" not in json.dumps(drift)
    assert kv.compute_drift(desired, actual, "json", removed=False)[-1]["key"] == "typed"


def test_drift_in_ini_and_env_compares_the_written_text() -> None:
    desired = {"n": 3, "b": True, "s": "x", "pad": " y "}
    assert kv.compute_drift(desired, {"n": "3", "b": "true", "s": "x", "pad": "y"}, "ini") == []
    assert kv.compute_drift(desired, {"n": "3", "b": "True", "s": "x", "pad": " y "}, "env") == [
        {"key": "b", "change": "changed"}
    ]


def test_backup_name_is_timestamped_and_never_overwrites(tmp_path: Path) -> None:
    now = datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.UTC)
    target = tmp_path / "app.json"
    first = kv.backup_name(str(target), None, now)
    assert first == str(tmp_path / "app.json.20240506T070809Z.bak")
    Path(first).write_text("x")
    assert kv.backup_name(str(target), None, now).endswith("app.json.20240506T070809Z-1.bak")
    assert kv.backup_name(str(target), str(tmp_path / "bk"), now) == str(
        tmp_path / "bk" / "app.json.20240506T070809Z.bak"
    )


# ---------------------------------------------------------------- argument specs


def _specs(role: str) -> dict[str, Any]:
    data = yaml.safe_load((ROLES / role / "meta" / "argument_specs.yml").read_text())
    return dict(data["argument_specs"])


def _commands(role: str) -> set[str]:
    return {
        p.stem
        for p in (ROLES / role / "tasks").glob("*.yml")
        if not p.stem.startswith("_") and p.stem != "main"
    }


def test_every_command_has_an_entry_point_and_metadata() -> None:
    specs = _specs("kv_file")
    assert (
        set(specs) == _commands("kv_file") == {"install", "update", "uninstall", "cycle", "backup"}
    )
    assert all(spec["short_description"] for spec in specs.values())
    meta = yaml.safe_load((ROLES / "kv_file" / "meta" / "runner_agent.yml").read_text())
    assert meta["version"] == "1.0.0" and meta["readonly"] == ["cycle"] and meta["description"]


@pytest.mark.parametrize(
    ("command", "config", "error"),
    [
        ("update", {"path": "/x", "values": {"a": 1}, "format": "ini", "mode": "0640"}, None),
        ("update", {"path": "/x", "values": {"a": 1}, "format": "xml"}, "format"),
        ("update", {"path": "/x"}, "values"),
        ("update", {"path": "/x", "values": {}, "colour": "red"}, "colour"),
        ("cycle", {"values": {}}, "path"),
        ("uninstall", {"path": "/x"}, None),
        ("backup", {"path": "/x", "backup_dir": "/b", "values": {"a": 1}}, None),
    ],
)
def test_argument_specs_validate_configs(
    command: str, config: dict[str, Any], error: str | None
) -> None:
    options = _specs("kv_file")[command]["options"]
    result = ArgumentSpecValidator(options).validate(config)
    messages = " ".join([*result.error_messages, *result.unsupported_parameters])
    if error is None:
        assert not messages
    else:
        assert error in messages


# ---------------------------------------------------------------- the module, run directly


@pytest.mark.parametrize("fmt", ["json", "yaml", "ini", "env"])
def test_module_writes_each_format_idempotently(tmp_path: Path, fmt: str) -> None:
    values = (
        {"A": "x y", "B": 3, "C": {"D": True}}
        if fmt in ("json", "yaml", "ini")
        else {"A": "x y", "B": 3}
    )
    target = tmp_path / "deep" / "er" / f"conf.{fmt}"
    args = {"path": str(target), "format": fmt, "values": values}

    dry = run_module("kv_file", "kv_file", args, tmp_path, check=True)
    assert dry["changed"] is True and not target.exists()
    assert {d["change"] for d in dry["drift"]} == {"added"}

    first = run_module("kv_file", "kv_file", args, tmp_path)
    assert first["changed"] is True, first
    content = target.read_text()
    assert content == kv.render(values, fmt)
    assert first["sha256"] == dry["sha256"] and first["keys"] == len(kv.flatten(values))
    assert first["diff"][0]["after"] == content

    again = run_module("kv_file", "kv_file", args, tmp_path)
    assert again["changed"] is False and again["drift"] == []


def test_module_refuses_nested_env_values(tmp_path: Path) -> None:
    target = tmp_path / "app.env"
    result = run_module(
        "kv_file",
        "kv_file",
        {"path": str(target), "format": "env", "values": {"DB": {"HOST": "h"}}},
        tmp_path,
    )
    assert result["failed"] is True and result["rc"] != 0
    assert "env: the value of 'DB' is nested" in result["msg"]
    assert not target.exists()


@pytest.mark.parametrize("operation", ["write", "remove", "backup"])
def test_module_fails_cleanly_where_the_system_refuses(tmp_path: Path, operation: str) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, so no folder can be made under it")
    target = blocker / "app.json"
    args: dict[str, Any] = {"path": str(target), "values": {"k": "v"}, "operation": operation}
    result = run_module("kv_file", "kv_file", args, tmp_path / "work")
    if operation != "write":  # nothing there to remove or back up: done, nothing changed
        assert result.get("failed") is not True and result["changed"] is False
        return
    assert result["failed"] is True and "Traceback" not in json.dumps(result)
    assert result["msg"] == f"{target}: Not a directory"


def test_module_says_which_file_it_could_not_write(tmp_path: Path) -> None:
    target = "/proc/runner-agent-test.json"  # a folder where no file can be made, even by root
    result = run_module("kv_file", "kv_file", {"path": target, "values": {"k": 1}}, tmp_path)
    assert result["failed"] is True and "Traceback" not in json.dumps(result)
    assert result["msg"] == f"{target}: No such file or directory"  # the file, not a temp name


def test_module_mode_new_file_and_mode_only_change(tmp_path: Path) -> None:
    target = tmp_path / "secret.json"
    args: dict[str, Any] = {"path": str(target), "values": {"k": "v"}, "mode": "0600"}
    assert run_module("kv_file", "kv_file", args, tmp_path)["changed"] is True
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    before = target.read_text()
    changed = run_module("kv_file", "kv_file", {**args, "mode": "0640"}, tmp_path)
    assert changed["changed"] is True and changed["drift"] == []
    assert stat.S_IMODE(target.stat().st_mode) == 0o640 and target.read_text() == before
    # without mode, an update keeps the file's mode
    kept = run_module("kv_file", "kv_file", {"path": str(target), "values": {"k": 2}}, tmp_path)
    assert kept["changed"] is True and stat.S_IMODE(target.stat().st_mode) == 0o640


def test_module_cycle_on_unreadable_file_counts_every_key_as_added(tmp_path: Path) -> None:
    target = tmp_path / "broken.json"
    target.write_text("{not json")
    result = run_module(
        "kv_file",
        "kv_file",
        {"path": str(target), "values": {"a": 1, "b": 2}},
        tmp_path,
        check=True,
    )
    assert result["changed"] is True and target.read_text() == "{not json"
    assert result["drift"] == [{"key": "a", "change": "added"}, {"key": "b", "change": "added"}]
    assert "cannot be read as json" in json.dumps(result.get("warnings"))  # 2.19: structured


def test_module_remove_and_backup(tmp_path: Path) -> None:
    target = tmp_path / "app.json"
    missing = run_module(
        "kv_file", "kv_file", {"path": str(target), "operation": "backup"}, tmp_path
    )
    assert missing["changed"] is False and missing["backup_path"] == ""
    target.write_text('{"a": 1}\n')
    backup = run_module(
        "kv_file",
        "kv_file",
        {"path": str(target), "operation": "backup", "backup_dir": str(tmp_path / "bk")},
        tmp_path,
    )
    assert backup["changed"] is True
    assert Path(backup["backup_path"]).parent == tmp_path / "bk"
    assert Path(backup["backup_path"]).read_text() == '{"a": 1}\n'
    removed = run_module(
        "kv_file", "kv_file", {"path": str(target), "operation": "remove"}, tmp_path
    )
    assert removed["changed"] is True and not target.exists()
    again = run_module("kv_file", "kv_file", {"path": str(target), "operation": "remove"}, tmp_path)
    assert again["changed"] is False and again["rc"] == 0


# ---------------------------------------------------------------- the role, run by Ansible


def test_role_lifecycle(tmp_path: Path) -> None:
    target = tmp_path / "etc" / "acme" / "web.json"
    config: dict[str, Any] = {
        "path": str(target),
        "format": "json",
        "mode": "0640",
        "values": {
            "port": 8080,
            "replicas": "3",  # a string stays a string
            "db": {"host": "db1", "password": "s3cr3t-value"},
            "template": "{{ not_rendered }}",
        },
    }

    # update: writes the file (and its folders), publishes outputs
    first = run_role("kv_file", "update", config, tmp_path / "run1")
    assert first.changed() == 1
    written = json.loads(target.read_text())
    assert written == config["values"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    changes = first.custom.pop("runner_agent_changes")["localhost"]
    assert {"key": "db/host", "change": "added", "after": "db1"} in changes
    assert len(changes) == len(written) + 1  # the leaves: db is two
    assert first.custom == {
        "path": str(target),
        "format": "json",
        "sha256": first.result("runner_agent.agents.kv_file")["sha256"],
        "keys": 5,
    }
    assert "[WARNING]" not in first.output and "DEPRECATION" not in first.output

    # update again, secrets marked: nothing changes, no value in the output
    second = run_role("kv_file", "update", config, tmp_path / "run2", no_log=True)
    assert second.changed() == 0
    assert "s3cr3t-value" not in second.output + json.dumps(second.results)

    # someone edits the file: cycle (as the runtime runs it) reports the keys, changes nothing;
    # two inventory hosts (both local, same file) show that the drift of each host is merged
    edited = dict(written, port=9090, extra=True)
    del edited["replicas"]
    target.write_text(json.dumps(edited))
    cycle = run_role(
        "kv_file",
        "cycle",
        config,
        tmp_path / "run3",
        check=True,
        diff=True,
        no_log=True,
        hosts=("localhost", "node2"),
    )
    drift = [
        {"key": "extra", "change": "removed", "before": True},
        {"key": "port", "change": "changed", "before": 9090, "after": 8080},
        {"key": "replicas", "change": "added", "after": "3"},
    ]
    assert cycle.custom == {"runner_agent_drift": {"localhost": drift, "node2": drift}}
    assert json.loads(target.read_text()) == edited
    assert "s3cr3t-value" not in cycle.output + json.dumps(cycle.results)

    # backup: a timestamped copy beside the file
    backup = run_role("kv_file", "backup", {"path": str(target)}, tmp_path / "run4")
    backup_path = Path(backup.custom["backup_path"])
    assert backup_path.parent == target.parent and backup_path.name.startswith("web.json.")
    assert backup_path.suffix == ".bak" and json.loads(backup_path.read_text()) == edited

    # uninstall: the file goes, the backup stays
    gone = run_role("kv_file", "uninstall", config, tmp_path / "run5")
    removed = gone.custom.pop("runner_agent_changes")["localhost"]
    assert {"key": "port", "change": "removed", "before": 9090} in removed
    assert gone.changed() == 1 and gone.custom == {"path": str(target), "removed": True}
    assert not target.exists() and backup_path.exists()


def test_role_refuses_a_bad_config_before_touching_anything(tmp_path: Path) -> None:
    target = tmp_path / "x.xml"
    run = run_role(
        "kv_file",
        "update",
        {"path": str(target), "format": "xml", "values": {"a": 1}},
        tmp_path / "run",
        expect_rc=2,
    )
    assert "format" in run.output and "xml" in run.output
    assert not target.exists()
