"""The kv_redis agent: its pure functions, the module run directly against a real redis-server
with a password and ACL users, and the role run by ansible-playbook."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agents.ansible_run import load_library, run_module, run_role
from endpoints import RedisServer, start_redis

kv = load_library("kv_redis", "kv_redis")
PASSWORD = "default-Pa55 word"
READER_PASSWORD = "reader-S3cret"


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """requirepass for the default user, and an ACL user who may only read."""
    server = start_redis(PASSWORD, users=(f"reader on >{READER_PASSWORD} ~* &* +@read",))
    yield server
    server.stop()


@pytest.fixture
def key() -> str:
    return f"runner-agent-test:{uuid.uuid4().hex[:12]}"


def _args(server: RedisServer, key: str, **extra: Any) -> dict[str, Any]:
    return {"url": server.url, "key": key, "password": PASSWORD, **extra}


# ---------------------------------------------------------------- pure functions


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("redis://127.0.0.1", ("redis", "127.0.0.1", 6379, 0)),
        ("rediss://cache.internal:6380/3", ("rediss", "cache.internal", 6380, 3)),
    ],
)
def test_url_gives_scheme_host_port_and_db(url: str, expected: tuple[Any, ...]) -> None:
    assert kv.parse_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis://:pw@127.0.0.1", "must not hold credentials"),
        ("redis://user:pw@127.0.0.1", "must not hold credentials"),
        ("http://127.0.0.1", "must start with redis:// or rediss://"),
        ("redis://127.0.0.1/x", "database number"),
        ("redis:///0", "names no host"),
    ],
)
def test_bad_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        kv.parse_url(url)


def test_commands_are_encoded_as_resp_bulk_strings() -> None:
    assert kv.encode_command("HSET", "k", "f", "ü") == (
        b"*4\r\n$4\r\nHSET\r\n$1\r\nk\r\n$1\r\nf\r\n$2\r\n\xc3\xbc\r\n"
    )


def test_plan_sets_only_what_differs_and_prunes_the_rest() -> None:
    desired = kv.desired_state({"a": {"b": 1}, "s": "x", "same": "y"})
    sets, deletes, drift = kv.plan(desired, {"s": "old", "same": "y", "gone": "1"})
    assert sets == [("a/b", "1"), ("s", "x")] and deletes == ["gone"]
    assert [d["change"] for d in drift] == ["added", "removed", "changed"]
    assert kv.plan(desired, {"gone": "1"}, prune=False)[1] == []


# ---------------------------------------------------------------- against redis-server


def test_write_stores_one_hash_in_one_read_and_one_write(
    redis_server: RedisServer, key: str, tmp_path: Path
) -> None:
    values = {"port": 8080, "db": {"host": "h", "pool": 10}, "name": "web"}
    result = run_module("kv_redis", "kv_redis", _args(redis_server, key, values=values), tmp_path)
    assert result["changed"] is True and result["round_trips"] == 2, result
    assert redis_server.client().hgetall(key) == {
        "port": "8080",
        "db/host": "h",
        "db/pool": "10",
        "name": "web",
    }


def test_a_second_write_of_the_same_values_changes_nothing(
    redis_server: RedisServer, key: str, tmp_path: Path
) -> None:
    args = _args(redis_server, key, values={"a": 1})
    run_module("kv_redis", "kv_redis", args, tmp_path)
    again = run_module("kv_redis", "kv_redis", args, tmp_path)
    assert again["changed"] is False and again["drift"] == [] and again["round_trips"] == 1


def test_only_differing_fields_are_written_and_others_pruned(
    redis_server: RedisServer, key: str, tmp_path: Path
) -> None:
    redis_server.client().hset(key, mapping={"keep": "1", "old": "x", "gone": "y"})
    args = _args(redis_server, key, values={"keep": 1, "old": "new"})
    result = run_module("kv_redis", "kv_redis", args, tmp_path)
    assert result["drift"] == [
        {"key": "gone", "change": "removed"},
        {"key": "old", "change": "changed"},
    ]
    assert result["changes"] == [
        {"key": "gone", "change": "removed", "before": "y"},
        {"key": "old", "change": "changed", "before": "x", "after": "new"},
    ]
    assert redis_server.client().hgetall(key) == {"keep": "1", "old": "new"}


def test_check_mode_reports_the_changes_and_writes_nothing(
    redis_server: RedisServer, key: str, tmp_path: Path
) -> None:
    redis_server.client().hset(key, mapping={"a": "1", "gone": "x", "same": "s"})
    before = redis_server.snapshot(key)
    args = _args(redis_server, key, values={"a": 2, "b": {"c": 3}, "same": "s"})
    result = run_module("kv_redis", "kv_redis", args, tmp_path, check=True)
    assert result["changed"] is True and result["deleted"] == 0
    assert result["drift"] == [
        {"key": "a", "change": "changed"},
        {"key": "b/c", "change": "added"},
        {"key": "gone", "change": "removed"},
    ]
    assert result["changes"] == [
        {"key": "a", "change": "changed", "before": "1", "after": "2"},
        {"key": "b/c", "change": "added", "after": "3"},
        {"key": "gone", "change": "removed", "before": "x"},
    ]
    assert redis_server.snapshot(key) == before


def test_check_mode_of_remove_lists_every_field_and_deletes_nothing(
    redis_server: RedisServer, key: str, tmp_path: Path
) -> None:
    redis_server.client().hset(key, mapping={"a": "1", "b/c": "2"})
    before = redis_server.snapshot(key)
    args = _args(redis_server, key, operation="remove")
    result = run_module("kv_redis", "kv_redis", args, tmp_path, check=True)
    assert result["changed"] is True and result["deleted"] == 1
    assert result["changes"] == [
        {"key": "a", "change": "removed", "before": "1"},
        {"key": "b/c", "change": "removed", "before": "2"},
    ]
    assert redis_server.snapshot(key) == before


def test_remove_deletes_the_hash(redis_server: RedisServer, key: str, tmp_path: Path) -> None:
    redis_server.client().hset(key, "a", "1")
    result = run_module(
        "kv_redis", "kv_redis", _args(redis_server, key, operation="remove"), tmp_path
    )
    assert result["changed"] is True and result["deleted"] == 1
    assert result["changes"] == [{"key": "a", "change": "removed", "before": "1"}]
    assert redis_server.client().exists(key) == 0
    again = run_module(
        "kv_redis", "kv_redis", _args(redis_server, key, operation="remove"), tmp_path
    )
    assert again["changed"] is False and again["changes"] == [] and again["deleted"] == 0


def test_remove_refuses_a_key_that_is_not_a_hash(
    redis_server: RedisServer, key: str, tmp_path: Path
) -> None:
    redis_server.client().set(key, "someone else's string")
    result = run_module(
        "kv_redis", "kv_redis", _args(redis_server, key, operation="remove"), tmp_path
    )
    assert result["failed"] is True and "WRONGTYPE" in result["msg"]
    assert redis_server.client().get(key) == "someone else's string"


def test_a_change_between_read_and_delete_aborts_the_delete(
    redis_server: RedisServer, key: str
) -> None:
    redis_server.client().hset(key, "a", "1")
    client = kv.Client(redis_server.url, 5, None, None, PASSWORD)
    try:
        assert client.read(key, watch=True) == {"a": "1"}
        redis_server.client().hset(key, "b", "added meanwhile")
        with pytest.raises(kv.RedisError, match="changed while it was being written"):
            client.delete(key)
    finally:
        client.close()
    assert redis_server.client().hgetall(key) == {"a": "1", "b": "added meanwhile"}


def test_read_returns_the_fields(redis_server: RedisServer, key: str, tmp_path: Path) -> None:
    redis_server.client().hset(key, mapping={"a": "1", "b/c": "x"})
    result = run_module(
        "kv_redis", "kv_redis", _args(redis_server, key, operation="read"), tmp_path
    )
    assert result["values"] == {"a": "1", "b/c": "x"} and result["keys"] == 2


def test_a_wrong_password_fails_naming_the_server_and_writes_nothing(
    redis_server: RedisServer, key: str, tmp_path: Path
) -> None:
    args = _args(redis_server, key, values={"a": 1}, password="not-the-password")
    result = run_module("kv_redis", "kv_redis", args, tmp_path)
    assert result["failed"] is True
    assert result["msg"].startswith(f"redis {redis_server.url} refused the credentials")
    assert "not-the-password" not in json.dumps(result)
    assert redis_server.client().exists(key) == 0


def test_a_user_without_write_rights_fails_and_nothing_is_written(
    redis_server: RedisServer, key: str, tmp_path: Path
) -> None:
    redis_server.client().hset(key, "kept", "as it was")
    args = _args(redis_server, key, values={"a": 1}, user="reader", password=READER_PASSWORD)
    result = run_module("kv_redis", "kv_redis", args, tmp_path)
    assert result["failed"] is True and redis_server.url in result["msg"]
    assert "NOPERM" in result["msg"]
    assert redis_server.client().hgetall(key) == {"kept": "as it was"}


def test_a_user_with_read_rights_may_read(
    redis_server: RedisServer, key: str, tmp_path: Path
) -> None:
    redis_server.client().hset(key, "a", "1")
    args = _args(redis_server, key, operation="read", user="reader", password=READER_PASSWORD)
    assert run_module("kv_redis", "kv_redis", args, tmp_path)["values"] == {"a": "1"}


def test_a_change_between_read_and_write_aborts_the_write(
    redis_server: RedisServer, key: str
) -> None:
    client = kv.Client(redis_server.url, 5, None, None, PASSWORD)
    try:
        client.read(key, watch=True)
        redis_server.client().hset(key, "other", "edit")  # another writer, meanwhile
        with pytest.raises(kv.RedisError, match="changed while it was being written"):
            client.write(key, [("a", "1")], [])
    finally:
        client.close()
    assert redis_server.client().hgetall(key) == {"other": "edit"}


def test_an_unreachable_server_fails_naming_it(tmp_path: Path) -> None:
    from endpoints import free_port

    url = f"redis://127.0.0.1:{free_port()}/0"
    result = run_module("kv_redis", "kv_redis", {"url": url, "key": "k", "values": {}}, tmp_path)
    assert result["failed"] is True and result["msg"].startswith(f"cannot reach redis {url}")


# ---------------------------------------------------------------- the role


def test_role_lifecycle_with_the_password_kept_out_of_results(
    redis_server: RedisServer, key: str, tmp_path: Path
) -> None:
    config = {"url": redis_server.url, "key": key, "password": PASSWORD, "values": {"a": 1}}
    install = run_role("kv_redis", "install", config, tmp_path / "install")
    assert install.custom["key"] == key and install.custom["keys"] == 1
    redis_server.client().hset(key, "a", "edited")
    cycle = run_role("kv_redis", "cycle", config, tmp_path / "cycle", check=True, diff=True)
    assert install.custom["runner_agent_changes"] == {
        "localhost": [{"key": "a", "change": "added", "after": "1"}]
    }
    assert cycle.custom["runner_agent_drift"] == {
        "localhost": [{"key": "a", "change": "changed", "before": "edited", "after": "1"}]
    }
    export = run_role("kv_redis", "export", config, tmp_path / "export")
    assert export.custom["values"] == {"a": "edited"}
    gone = run_role("kv_redis", "uninstall", config, tmp_path / "uninstall")
    assert gone.custom["runner_agent_changes"] == {
        "localhost": [{"key": "a", "change": "removed", "before": "edited"}]
    }
    assert redis_server.client().exists(key) == 0
    for run in (install, cycle, export):
        assert PASSWORD not in run.output + json.dumps(run.results) + json.dumps(run.custom)


def test_the_url_selects_the_database(redis_server: RedisServer, key: str, tmp_path: Path) -> None:
    url = redis_server.url.rsplit("/", 1)[0] + "/3"
    args = {"url": url, "key": key, "password": PASSWORD, "values": {"a": 1}}
    assert run_module("kv_redis", "kv_redis", args, tmp_path)["changed"] is True
    assert redis_server.client().exists(key) == 0  # not in db 0
    assert redis_server.client(db=3).hgetall(key) == {"a": "1"}
