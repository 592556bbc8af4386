"""The whole lifecycle with the shipped agents against real endpoints: files in tmp_path and
an etcd on 127.0.0.1, through the real ansible-runner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from endpoints import EtcdPrefix

from runner_agent.model.agents import default_registry
from runner_agent.model.state import LocalStateStore
from runner_agent.model.tasks import tasks_from_data
from runner_agent.report.model import Report, Status
from runner_agent.run.runtime import RunContext, run_tasks


def make_ctx(tmp_path: Path, **environ: str) -> RunContext:
    return RunContext(
        registry=default_registry(), store=LocalStateStore(tmp_path / "state"), environ=environ
    )


def run(ctx: RunContext, *items: dict[str, Any]) -> list[Report]:
    return run_tasks(tasks_from_data(items, registry=ctx.registry), ctx)


def test_kv_file_lifecycle(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    target = tmp_path / "etc" / "web.json"
    values = {"port": "8080", "replicas": 3, "motd": "{{ lookup('pipe', 'id') }} $(id) #x"}
    web = {
        "identity": "acme/web",
        "agent": "kv_file",
        "version": "1.0.0",
        "config": {"path": str(target), "format": "json", "mode": "0640", "values": values},
    }

    (first,) = run(ctx, web)
    assert first.status is Status.SUCCESS, first.error
    assert [c.command for c in first.commands] == ["install", "update"]
    assert json.loads(target.read_text()) == values  # strings stay strings, templates literal
    assert oct(target.stat().st_mode & 0o777) == "0o640"
    assert first.outputs["path"] == str(target) and first.outputs["keys"] == 3

    (second,) = run(ctx, web)
    assert [c.command for c in second.commands] == ["update"] and second.changed == 0

    (bumped,) = run(ctx, {**web, "version": "1.1.0"})
    assert [c.command for c in bumped.commands] == ["install", "update"]
    assert ctx.store.read("acme/web").installed_version == "1.1.0"  # type: ignore[union-attr]

    by_hand = {**values, "port": "9999", "extra": 1}
    del by_hand["motd"]
    target.write_text(json.dumps(by_hand))
    (cycle,) = run(ctx, {**web, "version": "1.1.0", "command": "cycle"})
    assert cycle.status is Status.SUCCESS
    assert sorted((d["key"], d["change"]) for d in cycle.drift["localhost"]) == [
        ("extra", "removed"),
        ("motd", "added"),
        ("port", "changed"),
    ]
    assert json.loads(target.read_text()) == by_hand  # cycle changed nothing

    (backup,) = run(ctx, {**web, "command": "backup", "config": {"path": str(target)}})
    assert backup.status is Status.SUCCESS
    assert json.loads(Path(backup.outputs["backup_path"]).read_text()) == by_hand

    (gone,) = run(ctx, {**web, "command": "uninstall"})
    assert gone.status is Status.SUCCESS and not target.exists()
    state = ctx.store.read("acme/web")
    assert state is not None and not state.installed and state.outputs == {}


def test_kv_etcd_lifecycle_and_outputs_from(tmp_path: Path, etcd: EtcdPrefix) -> None:
    ctx = make_ctx(tmp_path, RA_SECRET_DB_PASSWORD="pw-canary-51x")
    values = {
        "host": "db.internal",
        "port": 5432,
        "pool": {"min": 2, "max": 20},
        "password": "${env:RA_SECRET_DB_PASSWORD}",
    }
    db = {
        "identity": "acme/db",
        "agent": "kv_etcd",
        "config": {"endpoint": etcd.endpoint, "prefix": etcd.prefix, "values": values},
    }
    env_file = tmp_path / "web.env"
    web = {
        "identity": "acme/web-env",
        "agent": "kv_file",
        "outputs_from": ["acme/db"],
        "config": {
            "path": str(env_file),
            "format": "env",
            "values": {
                "DB_PREFIX": "${outputs:acme/db:prefix}",
                "DB_KEYS": "${outputs:acme/db:keys}",
            },
        },
    }

    first, consumer = run(ctx, db, web)
    assert first.status is Status.SUCCESS, first.error
    assert etcd.get() == {
        "host": "db.internal",
        "port": "5432",
        "pool/min": "2",
        "pool/max": "20",
        "password": "pw-canary-51x",
    }
    assert consumer.status is Status.SUCCESS, consumer.error
    assert f"DB_PREFIX={etcd.prefix}" in env_file.read_text()
    assert "DB_KEYS=5" in env_file.read_text()

    etcd.put("port", "6543")
    etcd.put("stray", "x")
    (cycle,) = run(ctx, {**db, "command": "cycle"})
    assert sorted((d["key"], d["change"]) for d in cycle.drift["localhost"]) == [
        ("port", "changed"),
        ("stray", "removed"),
    ]
    assert etcd.get()["port"] == "6543"  # cycle wrote nothing

    (again,) = run(ctx, db)
    assert [c.command for c in again.commands] == ["update"]
    assert etcd.get()["port"] == "5432" and "stray" not in etcd.get()

    (gone,) = run(ctx, {**db, "command": "uninstall"})
    assert gone.status is Status.SUCCESS and etcd.get() == {}
    stored = (tmp_path / "state" / "acme" / "db.json").read_text()
    reports = json.dumps([r.to_dict(results=True) for r in (first, cycle, again, gone)])
    assert "pw-canary-51x" not in stored + reports


def test_failures_leave_state_as_it_was(tmp_path: Path, etcd: EtcdPrefix) -> None:
    ctx = make_ctx(tmp_path)
    db = {
        "identity": "acme/db",
        "agent": "kv_etcd",
        "config": {"endpoint": etcd.endpoint, "prefix": etcd.prefix, "values": {"a": 1}},
    }
    run(ctx, db)
    before = (tmp_path / "state" / "acme" / "db.json").read_bytes()
    dead = {
        **db,
        "version": "2",
        "config": {
            **db["config"],  # type: ignore[dict-item]
            "endpoint": "http://127.0.0.1:9",
        },
    }
    (failed,) = run(ctx, dead)
    assert failed.status is Status.FAILED
    assert failed.commands[0].failed_tasks and "127.0.0.1:9" in failed.error + json.dumps(
        [f.message for f in failed.commands[0].failed_tasks]
    )
    assert (tmp_path / "state" / "acme" / "db.json").read_bytes() == before
