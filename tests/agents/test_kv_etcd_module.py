"""The kv_etcd agent: its module's pure functions, its HTTP client and the module against a real
etcd, and the role run by ansible-playbook against that etcd."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from agents.ansible_run import ROLES, load_library, run_module, run_role
from ansible.module_utils.common.arg_spec import ArgumentSpecValidator
from endpoints import EtcdPrefix

kv = load_library("kv_etcd", "kv_etcd")


# ---------------------------------------------------------------- pure logic


@pytest.mark.parametrize(
    ("prefix", "end"),
    [
        ("/acme/web/", b"/acme/web0"),
        ("a", b"b"),
        (b"a\xff", b"b"),
        (b"a\xfe\xff\xff", b"a\xff"),
        (b"\xff\xff", b"\0"),
        ("", b"\0"),
    ],
)
def test_range_end_is_the_prefix_with_its_last_byte_plus_one(prefix: Any, end: bytes) -> None:
    assert kv.range_end(prefix) == end


def test_prefix_gets_a_trailing_slash_and_may_not_be_empty() -> None:
    assert kv.normalize_prefix("/acme/web") == "/acme/web/"
    assert kv.normalize_prefix("/acme/web/") == "/acme/web/"
    for empty in ("", "  ", None):
        with pytest.raises(ValueError, match="whole keyspace"):
            kv.normalize_prefix(empty)


def test_values_flatten_under_the_prefix_strings_as_is_others_json() -> None:
    values = {
        "s": "text",
        "n": 3,
        "b": True,
        "z": None,
        "l": [1, "a"],
        "d": {"e": {"f": 1.5}},
        "empty": {},
        "j": '{"already": "json"}',
    }
    assert kv.desired_state(values) == {
        "s": "text",
        "n": "3",
        "b": "true",
        "z": "null",
        "l": '[1,"a"]',
        "d/e/f": "1.5",
        "empty": "{}",
        "j": '{"already": "json"}',
    }
    ops = kv.make_ops("/p/", [("d/e/f", "1.5")], ["gone"])
    assert ops == [
        {
            "requestPut": {
                "key": base64.b64encode(b"/p/d/e/f").decode(),
                "value": base64.b64encode(b"1.5").decode(),
            }
        },
        {"requestDeleteRange": {"key": base64.b64encode(b"/p/gone").decode()}},
    ]


def test_plan_writes_only_what_differs_and_reports_keys_only() -> None:
    desired = {"same": "1", "changed": "new", "added": "secret-a"}
    actual = {"same": "1", "changed": "old", "extra": "secret-x"}
    puts, deletes, drift = kv.plan(desired, actual)
    assert puts == [("added", "secret-a"), ("changed", "new")]
    assert deletes == ["extra"]
    assert drift == [
        {"key": "added", "change": "added"},
        {"key": "changed", "change": "changed"},
        {"key": "extra", "change": "removed"},
    ]
    assert "secret" not in json.dumps(drift)
    kept = kv.plan(desired, actual, prune=False)
    assert kept[1] == [] and {"key": "extra", "change": "removed"} not in kept[2]
    assert kv.plan(desired, dict(desired)) == ([], [], [])


def test_batches_hold_at_most_128_operations_in_order() -> None:
    ops = kv.make_ops("/p/", [(f"k{i:04d}", "v") for i in range(300)], ["x", "y"])
    batches = kv.batch_ops(ops)
    assert [len(b) for b in batches] == [128, 128, 46]
    assert [op for b in batches for op in b] == ops
    assert kv.batch_ops([]) == []
    assert [len(b) for b in kv.batch_ops(ops[:256])] == [128, 128]


def test_batches_also_stay_under_the_request_size() -> None:
    big = "x" * 300_000  # about 400 kB once base64-encoded
    batches = kv.batch_ops(kv.make_ops("/p/", [(f"k{i}", big) for i in range(7)], []))
    assert [len(b) for b in batches] == [2, 2, 2, 1]
    assert all(len(json.dumps({"success": b})) < 1024 * 1024 for b in batches)


def test_decode_kvs_gives_keys_relative_to_the_prefix() -> None:
    def b64(s: str) -> str:
        return base64.b64encode(s.encode()).decode()

    kvs = [{"key": b64("/p/a/b"), "value": b64("1")}, {"key": b64("/p/e")}]
    assert kv.decode_kvs("/p/", kvs) == {"a/b": "1", "e": ""}


# ---------------------------------------------------------------- client and module, real etcd


def test_client_writes_reads_and_deletes_a_prefix(etcd: EtcdPrefix) -> None:
    client = kv.Client(etcd.endpoint)
    etcd.put("old", "1")
    stored, revision = client.read_prefix(etcd.prefix)
    assert stored == {"old": "1"} and revision == etcd.revision()
    puts, deletes, _ = kv.plan({"new": "2"}, stored)
    new_revision = client.txn(kv.make_ops(etcd.prefix, puts, deletes))
    assert new_revision == revision + 1 and etcd.get() == {"new": "2"}
    assert client.count_prefix(etcd.prefix)[0] == 1
    assert client.delete_prefix(etcd.prefix)[0] == 1 and etcd.get() == {}


def test_etcd_itself_refuses_more_than_128_operations(etcd: EtcdPrefix) -> None:
    """The reason for batching: the real server's default limit."""
    ops = kv.make_ops(etcd.prefix, [(f"k{i}", "v") for i in range(129)], [])
    with pytest.raises(kv.EtcdError, match="too many operations in txn request"):
        kv.Client(etcd.endpoint).txn(ops)
    assert etcd.get() == {}


def test_client_fails_over_and_reports_unreachable_endpoints(etcd: EtcdPrefix) -> None:
    dead = "http://127.0.0.1:9"  # the discard port: nothing listens on it here
    client = kv.Client(f"{dead}, {etcd.endpoint}/", timeout=2)
    assert client.read_prefix(etcd.prefix)[0] == {}
    assert client.used == etcd.endpoint
    with pytest.raises(kv.EtcdError, match="cannot reach etcd"):
        kv.Client(dead, timeout=2).read_prefix(etcd.prefix)


def test_module_check_mode_and_prune(etcd: EtcdPrefix, tmp_path: Path) -> None:
    etcd.put("keep", "mine")
    args: dict[str, Any] = {
        "endpoint": etcd.endpoint,
        "prefix": etcd.prefix,
        "values": {"a": 1},
        "prune": False,
    }
    dry = run_module("kv_etcd", "kv_etcd", args, tmp_path, check=True)
    assert dry["changed"] is True and dry["transactions"] == 0
    assert dry["drift"] == [{"key": "a", "change": "added"}]
    assert etcd.get() == {"keep": "mine"}

    done = run_module("kv_etcd", "kv_etcd", args, tmp_path)
    assert done["changed"] is True and done["transactions"] == 1
    assert etcd.get() == {"keep": "mine", "a": "1"}
    assert "keep = mine\n" in done["diff"]["after"]

    pruned = run_module("kv_etcd", "kv_etcd", {**args, "prune": True}, tmp_path)
    assert pruned["deleted"] == 1 and etcd.get() == {"a": "1"}

    failed = run_module(
        "kv_etcd",
        "kv_etcd",
        {**args, "endpoint": "http://127.0.0.1:9", "request_timeout": 2},
        tmp_path,
    )
    assert failed["failed"] is True and "cannot reach etcd" in failed["msg"]


@pytest.mark.parametrize(
    ("endpoint", "words"),
    [
        ("http://root:pa55word@127.0.0.1:9", "must not hold credentials"),
        ("http://127.0.0.1:9\r\nX-Injected: 1", "control character"),
        ("http://127.0.0.1 :9", "a space"),
    ],
    ids=["credentials", "crlf", "space"],
)
def test_an_endpoint_with_credentials_or_control_characters_fails_unquoted(
    endpoint: str, words: str, tmp_path: Path
) -> None:
    args = {"endpoint": endpoint, "prefix": "/ra/", "values": {"a": 1}}
    failed = run_module("kv_etcd", "kv_etcd", args, tmp_path)
    assert failed["failed"] is True and words in failed["msg"]
    # refused before the endpoint is quoted or returned (its output would be published)
    assert "pa55word" not in failed["msg"] and "endpoint" not in failed


# ---------------------------------------------------------------- argument specs


def test_every_command_has_an_entry_point_and_metadata() -> None:
    specs = yaml.safe_load((ROLES / "kv_etcd" / "meta" / "argument_specs.yml").read_text())
    commands = {
        p.stem for p in (ROLES / "kv_etcd" / "tasks").glob("*.yml") if not p.stem.startswith("_")
    }
    assert (
        set(specs["argument_specs"])
        == commands
        == {"install", "update", "uninstall", "cycle", "export"}
    )
    meta = yaml.safe_load((ROLES / "kv_etcd" / "meta" / "runner_agent.yml").read_text())
    assert meta["version"] == "1.0.0" and set(meta["readonly"]) == {"cycle", "export"}
    options = specs["argument_specs"]["update"]["options"]
    ok = ArgumentSpecValidator(options).validate(
        {"endpoint": "http://e:2379", "prefix": "/p/", "values": {"a": 1}, "prune": "no"}
    )
    assert not ok.error_messages and ok.validated_parameters["request_timeout"] == 10
    bad = ArgumentSpecValidator(options).validate({"prefix": "/p/", "values": [], "prune": "x"})
    assert len(bad.error_messages) >= 3  # endpoint missing, values not a dict, prune not a bool


# ---------------------------------------------------------------- the role, run by Ansible


def test_role_lifecycle(etcd: EtcdPrefix, tmp_path: Path) -> None:
    values: dict[str, Any] = {f"key{i:03d}": f"value {i}" for i in range(300)}
    values["app"] = {
        "port": 8080,
        "debug": False,
        "hosts": ["a", "b"],
        "template": "{{ not_rendered }}",
        "octal": "0640",
    }
    config = {"endpoint": etcd.endpoint, "prefix": etcd.prefix, "values": values}
    stale = "stale/key"
    etcd.put(stale, "pruned by update")

    # update: 306 operations (305 puts, 1 delete) in three transactions
    start = etcd.revision()
    first = run_role("kv_etcd", "update", config, tmp_path / "run1")
    assert etcd.revision() - start == 3
    stored = etcd.get()
    assert len(stored) == 305 and stale not in stored
    assert stored["key042"] == "value 42"
    assert stored["app/port"] == "8080" and stored["app/debug"] == "false"
    assert stored["app/hosts"] == '["a","b"]'
    assert stored["app/template"] == "{{ not_rendered }}" and stored["app/octal"] == "0640"
    changes = first.custom.pop("runner_agent_changes")["localhost"]
    assert len(changes) == 306
    assert {"key": stale, "change": "removed", "before": "pruned by update"} in changes
    assert {"key": "app/port", "change": "added", "after": "8080"} in changes
    assert first.custom == {
        "endpoint": etcd.endpoint,
        "prefix": etcd.prefix,
        "keys": 305,
        "revision": etcd.revision(),
    }
    assert "[WARNING]" not in first.output and "DEPRECATION" not in first.output

    # update again: one read, no transaction
    second = run_role("kv_etcd", "update", config, tmp_path / "run2", no_log=True)
    assert second.changed() == 0 and etcd.revision() - start == 3
    assert "value 42" not in second.output

    # someone changes etcd: cycle reports the keys and writes nothing
    etcd.put("key001", "edited")
    etcd.put("intruder", "x")
    kv.Client(etcd.endpoint).delete_prefix(etcd.prefix + "app/port")
    before = etcd.get()
    cycle = run_role(
        "kv_etcd", "cycle", config, tmp_path / "run3", check=True, diff=True, no_log=True
    )
    assert cycle.custom == {
        "runner_agent_drift": {
            "localhost": [
                {"key": "app/port", "change": "added", "after": "8080"},
                {"key": "intruder", "change": "removed", "before": "x"},
                {"key": "key001", "change": "changed", "before": "edited", "after": "value 1"},
            ]
        }
    }
    assert etcd.get() == before
    assert "value 1" not in cycle.output and "edited" not in cycle.output

    # export: what is stored becomes outputs
    export = run_role(
        "kv_etcd", "export", {"endpoint": etcd.endpoint, "prefix": etcd.prefix}, tmp_path / "run4"
    )
    assert export.custom["values"] == before and export.custom["keys"] == len(before)

    # uninstall: the prefix is empty
    gone = run_role("kv_etcd", "uninstall", config, tmp_path / "run5")
    assert gone.changed() == 1 and gone.custom["deleted"] == len(before)
    assert etcd.get() == {}
