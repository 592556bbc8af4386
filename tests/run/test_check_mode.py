"""Dry runs (task.check, `run --check`) against real endpoints: files in tmp_path and the
session's etcd, through the real ansible-runner. Nothing changes, nothing is recorded, and the
report says per host and key what would change, secrets masked."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from endpoints import EtcdPrefix

from runner_agent.core.redact import MASK
from runner_agent.model.agents import default_registry
from runner_agent.model.state import LocalStateStore
from runner_agent.model.tasks import as_check, tasks_from_data
from runner_agent.report.html import html_report
from runner_agent.report.model import Report, Status, junit, table
from runner_agent.run.runtime import RunContext, run_tasks

OLD_SECRET = "old-Held-s3cret-77q"
NEW_SECRET = "new-Canary-s3cret-42z"


def make_ctx(tmp_path: Path, extra_agents: tuple[Path, ...] = (), **environ: str) -> RunContext:
    return RunContext(
        registry=default_registry(extra_agents),
        store=LocalStateStore(tmp_path / "state"),
        environ=environ,
    )


def run(ctx: RunContext, *items: dict[str, Any], check: bool = False) -> list[Report]:
    tasks = tasks_from_data(items, registry=ctx.registry)
    return run_tasks(as_check(tasks) if check else tasks, ctx)


def by_key(report: Report, host: str = "localhost") -> dict[str, dict[str, Any]]:
    return {item["key"]: item for item in report.key_changes[host]}


def file_task(path: Path, values: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "identity": "acme/web",
        "agent": "kv_file",
        "config": {"path": str(path), "format": "json", "values": values},
        **extra,
    }


def etcd_task(etcd: EtcdPrefix, values: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "identity": "acme/db",
        "agent": "kv_etcd",
        "config": {"endpoint": etcd.endpoint, "prefix": etcd.prefix, "values": values},
        **extra,
    }


def test_check_leaves_the_file_byte_for_byte(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    target = tmp_path / "web.json"
    (first,) = run(ctx, file_task(target, {"port": "8080"}))
    assert first.status is Status.SUCCESS, first.error
    before, stat = target.read_bytes(), target.stat()
    state = (tmp_path / "state" / "acme" / "web.json").read_bytes()

    (dry,) = run(ctx, file_task(target, {"port": "9090", "new": 1}), check=True)

    assert dry.status is Status.SUCCESS and dry.check
    assert target.read_bytes() == before
    assert (target.stat().st_mtime_ns, target.stat().st_ino) == (stat.st_mtime_ns, stat.st_ino)
    assert (tmp_path / "state" / "acme" / "web.json").read_bytes() == state  # nothing recorded
    assert sorted(os.listdir(tmp_path)) == ["state", "web.json"]  # no temporary file left


def test_check_of_a_new_identity_writes_no_state_and_no_file(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    target = tmp_path / "etc" / "web.json"
    (dry,) = run(ctx, file_task(target, {"port": "8080"}), check=True)
    assert dry.status is Status.SUCCESS, dry.error
    assert [c.command for c in dry.commands] == ["install", "update"]  # what the run would do
    assert not target.exists() and not (tmp_path / "etc").exists()
    assert not (tmp_path / "state" / "acme" / "web.json").exists()
    assert by_key(dry) == {"port": {"key": "port", "change": "added", "after": "8080"}}


def test_check_diff_names_added_changed_removed_and_nested_keys(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    target = tmp_path / "web.json"
    old = {"keep": "same", "port": 8080, "db": {"host": "a", "pool": {"max": 5}}, "gone": True}
    run(ctx, file_task(target, old))
    new = {"keep": "same", "port": 9090, "db": {"host": "b", "pool": {"max": 5, "min": 1}}}

    (dry,) = run(ctx, file_task(target, new), check=True)

    assert by_key(dry) == {
        "db/host": {"key": "db/host", "change": "changed", "before": "a", "after": "b"},
        "db/pool/min": {"key": "db/pool/min", "change": "added", "after": 1},
        "gone": {"key": "gone", "change": "removed", "before": True},
        "port": {"key": "port", "change": "changed", "before": 8080, "after": 9090},
    }
    assert json.loads(target.read_text()) == old


def test_check_leaves_etcd_key_by_key_at_the_same_revision(
    tmp_path: Path, etcd: EtcdPrefix
) -> None:
    ctx = make_ctx(tmp_path)
    run(ctx, etcd_task(etcd, {"host": "db1", "pool": {"max": 20}, "stray": "x"}))
    etcd.put("by-hand", "y")
    stored, revision = etcd.get(), etcd.revision()

    (dry,) = run(ctx, etcd_task(etcd, {"host": "db2", "pool": {"max": 20, "min": 2}}), check=True)

    assert dry.status is Status.SUCCESS, dry.error
    assert etcd.get() == stored and etcd.revision() == revision
    assert by_key(dry) == {
        "by-hand": {"key": "by-hand", "change": "removed", "before": "y"},
        "host": {"key": "host", "change": "changed", "before": "db1", "after": "db2"},
        "pool/min": {"key": "pool/min", "change": "added", "after": "2"},
        "stray": {"key": "stray", "change": "removed", "before": "x"},
    }


def test_check_of_uninstall_lists_every_key_it_would_remove(
    tmp_path: Path, etcd: EtcdPrefix
) -> None:
    ctx = make_ctx(tmp_path)
    run(ctx, etcd_task(etcd, {"a": "1", "b": {"c": "2"}}))
    (dry,) = run(ctx, etcd_task(etcd, {"a": "1"}, command="uninstall"), check=True)
    assert etcd.get() == {"a": "1", "b/c": "2"}
    assert by_key(dry) == {
        "a": {"key": "a", "change": "removed", "before": "1"},
        "b/c": {"key": "b/c", "change": "removed", "before": "2"},
    }
    state = ctx.store.read("acme/db")
    assert state is not None and state.installed  # the dry uninstall recorded nothing


def test_check_runs_while_the_identity_is_locked(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    target = tmp_path / "web.json"
    with ctx.store.lock("acme/web", "update"):
        (dry,) = run(ctx, file_task(target, {"port": "1"}), check=True)
    assert dry.status is Status.SUCCESS, dry.error


def test_a_real_run_reports_what_it_changed(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    target = tmp_path / "web.json"
    run(ctx, file_task(target, {"port": "1"}))
    (done,) = run(ctx, file_task(target, {"port": "2"}))
    assert not done.check and done.changed == 1
    assert by_key(done) == {
        "port": {"key": "port", "change": "changed", "before": "1", "after": "2"}
    }
    assert "acme/web update changed on localhost:" in table([done])
    assert '~ port: "1" -> "2"' in table([done])


def test_cycle_drift_says_found_and_expected_values(tmp_path: Path, etcd: EtcdPrefix) -> None:
    ctx = make_ctx(tmp_path)
    run(ctx, etcd_task(etcd, {"host": "db1", "port": 5432}))
    etcd.put("host", "rogue")
    etcd.put("extra", "x")
    (cycle,) = run(ctx, etcd_task(etcd, {"host": "db1", "port": 5432}, command="cycle"))
    assert cycle.drift == {
        "localhost": [
            {"key": "extra", "change": "removed", "before": "x"},
            {"key": "host", "change": "changed", "before": "rogue", "after": "db1"},
        ]
    }
    text = table([cycle])
    assert '~ host: found "rogue", expected "db1"' in text
    assert '- extra: found "x", not expected' in text


def _all_forms(reports: list[Report], tmp_path: Path) -> str:
    data = json.dumps([r.to_dict(results=True) for r in reports])
    return "\n".join([data, table(reports), junit(reports), html_report(reports)])


def test_secret_values_are_masked_in_the_diff_both_sides(tmp_path: Path, etcd: EtcdPrefix) -> None:
    ctx = make_ctx(tmp_path, RA_SECRET_DB=NEW_SECRET)
    etcd.put("password", OLD_SECRET)  # held by the endpoint: no redactor knows it
    task = etcd_task(etcd, {"host": "db1", "password": "${env:RA_SECRET_DB}"})

    (dry,) = run(ctx, task, check=True)
    (cycle,) = run(ctx, {**task, "command": "cycle"})

    assert by_key(dry)["password"] == {
        "key": "password",
        "change": "changed",
        "before": MASK,
        "after": MASK,
    }
    assert {d["key"]: d for d in cycle.drift["localhost"]}["password"]["before"] == MASK
    everything = _all_forms([dry, cycle], tmp_path)
    assert OLD_SECRET not in everything and NEW_SECRET not in everything
    assert etcd.get()["password"] == OLD_SECRET


def test_secret_inside_a_longer_value_masks_the_whole_key(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path, RA_SECRET_PW=NEW_SECRET)
    target = tmp_path / "web.json"
    (dry,) = run(ctx, file_task(target, {"dsn": "pg://u:${env:RA_SECRET_PW}@db/x"}), check=True)
    assert by_key(dry)["dsn"]["after"] == MASK
    assert NEW_SECRET not in _all_forms([dry], tmp_path)


def test_keys_an_agent_declares_no_log_are_masked(tmp_path: Path) -> None:
    agents = tmp_path / "agents"
    shutil.copytree(Path(default_registry().get("kv_file").path), agents / "kv_file_nolog")
    meta = agents / "kv_file_nolog" / "meta" / "runner_agent.yml"
    meta.write_text(meta.read_text() + 'no_log_keys: ["*token*", "auth/*"]\n')
    ctx = make_ctx(tmp_path, (agents,))
    target = tmp_path / "app.json"
    target.write_text(json.dumps({"api_token": OLD_SECRET, "auth": {"key": OLD_SECRET}}))
    task = {
        "identity": "acme/app",
        "agent": "kv_file_nolog",
        "config": {"path": str(target), "values": {"api_token": "t2", "name": "app"}},
    }
    (dry,) = run(ctx, task, check=True)
    assert by_key(dry) == {
        "api_token": {"key": "api_token", "change": "changed", "before": MASK, "after": MASK},
        "auth/key": {"key": "auth/key", "change": "removed", "before": MASK},
        "name": {"key": "name", "change": "added", "after": "app"},
    }
    assert OLD_SECRET not in _all_forms([dry], tmp_path)
