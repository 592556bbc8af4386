"""The check contract, for every shipped agent against its real endpoint, through the job's
runtime (ansible-runner and the shipped collection): a file in tmp_path, etcd, redis-server and
json-server. For each agent: a dry run changes nothing (the endpoint compared before and after,
key by key and byte by byte), lists added, changed and removed keys with their values before
and after, masks secret keys on both sides (an ``${env:}`` value, a key the agent declares
``no_log``, and what the endpoint holds under them), and the JSON, table, JUnit and HTML
reports show the diff; a dry uninstall lists every key it would remove; cycle's drift says
found and expected. A new shipped agent fails the first test until it has an endpoint here."""

from __future__ import annotations

import html
import json
import shutil
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from endpoints import EtcdPrefix, JsonServer, RedisServer, start_json_server, start_redis

from runner_agent.core.redact import MASK
from runner_agent.core.resources import collection_dir
from runner_agent.model.agents import default_registry
from runner_agent.model.state import LocalStateStore
from runner_agent.model.tasks import as_check, tasks_from_data
from runner_agent.report.html import html_report
from runner_agent.report.model import Report, Status, junit, table
from runner_agent.run.rollback import rollback
from runner_agent.run.runtime import RunContext, run_tasks
from runner_agent.run.secret_keys import flat_keys

OLD_SECRET = "old-Held-s3cret-91k"
NEW_SECRET = "new-Canary-s3cret-63w"
SHIPPED = sorted(p.name for p in (collection_dir() / "roles").iterdir() if (p / "meta").is_dir())


@dataclass
class Endpoint:
    """One agent's endpoint for one test: the task's config, and the endpoint's content."""

    agent: str
    config: dict[str, Any]  # the task's config without values
    snapshot: Callable[[], Any]  # everything the endpoint holds, byte for byte where it can
    stored: Callable[[], dict[str, Any]]  # the packet as the endpoint holds it, by flat key


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = start_redis("check-Redis-pa55")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def json_server() -> Iterator[JsonServer]:
    server = start_json_server({"configs": []})
    yield server
    server.stop()


@pytest.fixture
def endpoints(
    tmp_path: Path, etcd: EtcdPrefix, redis_server: RedisServer, json_server: JsonServer
) -> dict[str, Endpoint]:
    path = tmp_path / "files" / "app.json"

    def file_snapshot() -> Any:
        if not path.exists():
            return sorted(path.parent.iterdir()) if path.parent.exists() else None
        stat = path.stat()
        return path.read_bytes(), stat.st_mtime_ns, stat.st_ino, sorted(path.parent.iterdir())

    key = f"check:{uuid.uuid4().hex[:12]}"
    doc = uuid.uuid4().hex[:12]
    json_server.post("/configs", {"id": doc})  # json-server 0.17 has no PUT that creates
    return {
        "kv_file": Endpoint(
            "kv_file",
            {"path": str(path), "format": "json"},
            file_snapshot,
            lambda: flat_keys(json.loads(path.read_text())) if path.exists() else {},
        ),
        "kv_etcd": Endpoint(
            "kv_etcd",
            {"endpoint": etcd.endpoint, "prefix": etcd.prefix},
            lambda: (etcd.get(), etcd.revision()),
            etcd.get,
        ),
        "kv_redis": Endpoint(
            "kv_redis",
            {"url": redis_server.url, "key": key, "password": redis_server.password},
            lambda: redis_server.snapshot(key),
            lambda: redis_server.client().hgetall(key),
        ),
        "kv_http": Endpoint(
            "kv_http",
            {"url": f"{json_server.base}/configs/{doc}", "ignore": ["id"]},
            json_server.stored,
            lambda: flat_keys(json_server.get(f"/configs/{doc}") or {}),
        ),
    }


def _ctx(tmp_path: Path, extra: tuple[Path, ...] = (), **environ: str) -> RunContext:
    return RunContext(
        registry=default_registry(extra),
        store=LocalStateStore(tmp_path / "state"),
        environ=environ,
    )


def _run(
    ctx: RunContext, end: Endpoint, values: dict[str, Any], check: bool = False, **extra: Any
) -> Report:
    item = {
        "identity": f"check/{end.agent.replace('_', '-')}",
        "agent": extra.pop("agent", end.agent),
        "config": {**end.config, "values": values},
        **extra,
    }
    tasks = tasks_from_data([item], registry=ctx.registry)
    (report,) = run_tasks(as_check(tasks) if check else tasks, ctx)
    assert report.status is Status.SUCCESS, report.error
    return report


def _by_key(report: Report) -> dict[str, dict[str, Any]]:
    return {item["key"]: item for item in report.key_changes["localhost"]}


def _all_forms(reports: list[Report]) -> str:
    data = json.dumps([r.to_dict(results=True) for r in reports])
    return "\n".join([data, table(reports), junit(reports), html_report(reports)])


def test_every_shipped_agent_has_an_endpoint_here(endpoints: dict[str, Endpoint]) -> None:
    assert sorted(endpoints) == SHIPPED


@pytest.mark.parametrize("agent", SHIPPED)
def test_a_dry_run_changes_nothing_and_lists_every_key_with_values(
    agent: str, endpoints: dict[str, Endpoint], tmp_path: Path
) -> None:
    end = endpoints[agent]
    ctx = _ctx(tmp_path)
    _run(ctx, end, {"host": "db1", "pool": {"max": "20"}, "stray": "x", "same": "s"})
    before = end.snapshot()
    state = (tmp_path / "state").rglob("*.json")
    state_bytes = {p: p.read_bytes() for p in state}

    dry = _run(ctx, end, {"host": "db2", "pool": {"max": "20", "min": "2"}, "same": "s"}, True)

    assert end.snapshot() == before
    assert {p: p.read_bytes() for p in (tmp_path / "state").rglob("*.json")} == state_bytes
    assert dry.check and _by_key(dry) == {
        "host": {"key": "host", "change": "changed", "before": "db1", "after": "db2"},
        "pool/min": {"key": "pool/min", "change": "added", "after": "2"},
        "stray": {"key": "stray", "change": "removed", "before": "x"},
    }
    system_out = ET.fromstring(junit([dry])).iterfind(".//system-out")
    forms = {
        "json": json.dumps(dry.to_dict(results=True)),
        "table": table([dry]),
        "junit": "".join(out.text or "" for out in system_out),
        "html": html_report([dry]),
    }
    assert json.loads(forms["json"])["key_changes"] == dry.key_changes
    for form in ("table", "junit"):
        assert '~ host: "db1" -> "db2"' in forms[form], form
        assert '+ pool/min: "2"' in forms[form] and '- stray: was "x"' in forms[form], form
    for value in ('"db1"', '"db2"', '"2"', '"x"'):  # struck before, inserted after
        assert html.escape(value) in forms["html"], value
    assert "<del>" in forms["html"] and "<ins>" in forms["html"]


@pytest.mark.parametrize("agent", SHIPPED)
def test_a_dry_uninstall_lists_every_key_and_removes_nothing(
    agent: str, endpoints: dict[str, Endpoint], tmp_path: Path
) -> None:
    end = endpoints[agent]
    ctx = _ctx(tmp_path)
    _run(ctx, end, {"a": "1", "b": {"c": "2"}})
    before = end.snapshot()
    dry = _run(ctx, end, {"a": "1"}, True, command="uninstall")
    assert end.snapshot() == before
    assert _by_key(dry) == {
        "a": {"key": "a", "change": "removed", "before": "1"},
        "b/c": {"key": "b/c", "change": "removed", "before": "2"},
    }
    state = ctx.store.read(f"check/{agent.replace('_', '-')}")
    assert state is not None and state.installed


@pytest.mark.parametrize("agent", SHIPPED)
def test_secret_values_are_masked_on_both_sides_everywhere(
    agent: str, endpoints: dict[str, Endpoint], tmp_path: Path
) -> None:
    end = endpoints[agent]
    values = {"host": "db1", "password": "${env:RA_SECRET_DB}"}
    _run(_ctx(tmp_path, RA_SECRET_DB=OLD_SECRET), end, values)  # the endpoint holds the old one
    before = end.snapshot()
    ctx = _ctx(tmp_path, RA_SECRET_DB=NEW_SECRET)  # no redactor here knows the old secret

    dry = _run(ctx, end, values, True)
    cycle = _run(ctx, end, values, command="cycle")

    assert end.snapshot() == before
    masked = {"key": "password", "change": "changed", "before": MASK, "after": MASK}
    assert _by_key(dry) == {"password": masked}
    assert cycle.drift == {"localhost": [masked]}
    everything = _all_forms([dry, cycle])
    assert OLD_SECRET not in everything and NEW_SECRET not in everything


@pytest.mark.parametrize("agent", SHIPPED)
def test_keys_the_agent_declares_no_log_are_masked_as_the_endpoint_holds_them(
    agent: str, endpoints: dict[str, Endpoint], tmp_path: Path
) -> None:
    extra = tmp_path / "agents"
    shutil.copytree(collection_dir() / "roles" / agent, extra / f"{agent}_nolog")
    meta = extra / f"{agent}_nolog" / "meta" / "runner_agent.yml"
    meta.write_text(meta.read_text() + 'no_log_keys: ["*token*", "auth/*"]\n')
    end = endpoints[agent]
    ctx = _ctx(tmp_path, (extra,))
    old = {"api_token": OLD_SECRET, "auth": {"key": OLD_SECRET}, "name": "app"}
    _run(ctx, end, old, agent=f"{agent}_nolog")
    before = end.snapshot()

    new = {"api_token": "t2", "name": "app2"}
    dry = _run(ctx, end, new, True, agent=f"{agent}_nolog")

    assert end.snapshot() == before
    assert _by_key(dry) == {
        "api_token": {"key": "api_token", "change": "changed", "before": MASK, "after": MASK},
        "auth/key": {"key": "auth/key", "change": "removed", "before": MASK},
        "name": {"key": "name", "change": "changed", "before": "app", "after": "app2"},
    }
    assert OLD_SECRET not in _all_forms([dry])


@pytest.mark.parametrize("agent", SHIPPED)
def test_cycle_drift_says_found_and_expected(
    agent: str, endpoints: dict[str, Endpoint], tmp_path: Path
) -> None:
    end = endpoints[agent]
    ctx = _ctx(tmp_path)
    _run(ctx, end, {"host": "db1", "port": "5432"})
    _run(ctx, end, {"host": "rogue", "extra": "x", "port": "5432"}, command="update")  # by hand
    before = end.snapshot()
    cycle = _run(ctx, end, {"host": "db1", "port": "5432"}, command="cycle")
    assert end.snapshot() == before
    assert cycle.drift == {
        "localhost": [
            {"key": "extra", "change": "removed", "before": "x"},
            {"key": "host", "change": "changed", "before": "rogue", "after": "db1"},
        ]
    }
    text = table([cycle])
    assert '~ host: found "rogue", expected "db1"' in text
    assert '- extra: found "x", not expected' in text


@pytest.mark.parametrize("agent", SHIPPED)
def test_rollback_after_an_update_restores_what_the_endpoint_held(
    agent: str, endpoints: dict[str, Endpoint], tmp_path: Path
) -> None:
    """The changes an agent publishes are what history keeps and rollback works from."""
    end = endpoints[agent]
    ctx = _ctx(tmp_path)
    _run(ctx, end, {"host": "db1", "old": "x", "pool": {"max": "20"}})
    held = end.stored()
    updated = _run(ctx, end, {"host": "db2", "new": "1", "pool": {"max": "20"}})
    assert updated.revision == 2

    (back,) = rollback(f"check/{agent.replace('_', '-')}", "previous", ctx)

    assert back.status is Status.SUCCESS, back.error
    assert end.stored() == held
    assert _by_key(back) == {
        "host": {"key": "host", "change": "changed", "before": "db2", "after": "db1"},
        "new": {"key": "new", "change": "removed", "before": "1"},
        "old": {"key": "old", "change": "added", "after": "x"},
    }
