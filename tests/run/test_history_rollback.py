"""History and rollback against real endpoints (files in tmp_path, the session's etcd),
through the real ansible-runner: a revision per run that changed keys, and rollback as a
guarded forward run."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from endpoints import EtcdPrefix

from runner_agent.core.errors import InvalidInput, LockedError
from runner_agent.model.agents import default_registry
from runner_agent.model.state import LocalStateStore, State
from runner_agent.model.tasks import tasks_from_data
from runner_agent.report.model import Report, Status, table
from runner_agent.run.rollback import rollback
from runner_agent.run.runtime import RunContext, run_tasks

CANARY = "canary-Hist-9x1-s3cr3t"
PER_HOST = "/proc/self/cwd/web.json"  # see _two_hosts
OLD_SECRET = "held-by-hand-Q7-s3cr3t"


def make_ctx(tmp_path: Path, **environ: str) -> RunContext:
    return RunContext(
        registry=default_registry(),
        store=LocalStateStore(tmp_path / "state"),
        environ={"USER": "tester", **environ},
    )


def run(ctx: RunContext, *items: dict[str, Any]) -> list[Report]:
    return run_tasks(tasks_from_data(items, registry=ctx.registry), ctx)


def state(ctx: RunContext, identity: str) -> State:
    found = ctx.store.read(identity)
    assert found is not None
    return found


def etcd_task(etcd: EtcdPrefix, values: dict[str, Any]) -> dict[str, Any]:
    return {
        "identity": "acme/db",
        "agent": "kv_etcd",
        "config": {"endpoint": etcd.endpoint, "prefix": etcd.prefix, "values": values},
    }


def test_a_run_that_changed_keys_records_a_revision(tmp_path: Path, etcd: EtcdPrefix) -> None:
    ctx = make_ctx(tmp_path)
    etcd.put("old", "x")
    (first,) = run(ctx, etcd_task(etcd, {"a": "1", "b": {"c": "2"}}))
    assert first.revision == 1
    (revision,) = state(ctx, "acme/db").revisions
    assert revision["number"] == 1 and revision["status"] == "success"
    assert revision["command"] == "install,update"
    assert revision["agent"] == "kv_etcd" and revision["agent_version"] == "1.0.0"
    assert revision["who"] == {"user": "tester", "via": "local"}
    assert revision["hosts"] == {
        "localhost": {"a": {"absent": True}, "b/c": {"absent": True}, "old": {"value": "x"}}
    }
    assert revision["after"]["localhost"]["old"] == {"absent": True}
    assert revision["task"]["config"]["values"] == {"a": "1", "b": {"c": "2"}}


def test_a_run_that_changed_nothing_records_no_revision(tmp_path: Path, etcd: EtcdPrefix) -> None:
    ctx = make_ctx(tmp_path)
    run(ctx, etcd_task(etcd, {"a": "1"}))
    (again,) = run(ctx, etcd_task(etcd, {"a": "1"}))
    assert again.revision is None and len(state(ctx, "acme/db").revisions) == 1


def test_the_gitlab_user_is_who_ran_it_in_a_job(tmp_path: Path, etcd: EtcdPrefix) -> None:
    ctx = make_ctx(tmp_path, GITLAB_CI="true", GITLAB_USER_LOGIN="alice")
    run(ctx, etcd_task(etcd, {"a": "1"}))
    assert state(ctx, "acme/db").revisions[0]["who"] == {"user": "alice", "via": "gitlab"}


def test_rollback_after_install_removes_added_keys_and_restores_pruned_ones(
    tmp_path: Path, etcd: EtcdPrefix
) -> None:
    ctx = make_ctx(tmp_path)
    etcd.put("there-before", "kept")
    run(ctx, etcd_task(etcd, {"a": "1", "b": {"c": "2"}}))
    assert etcd.get() == {"a": "1", "b/c": "2"}

    (back,) = rollback("acme/db", "previous", ctx)

    assert back.status is Status.SUCCESS, back.error
    assert etcd.get() == {"there-before": "kept"}
    latest = state(ctx, "acme/db").revisions[-1]
    assert latest["command"] == "rollback of 1 to 0" and latest["state_of"] == 0


def test_rollback_after_update_restores_the_file(tmp_path: Path) -> None:
    ctx = make_ctx(tmp_path)
    target = tmp_path / "web.json"
    v1 = {"port": 8080, "old": "x", "db": {"host": "a"}}
    task = {"identity": "acme/web", "agent": "kv_file", "config": {"path": str(target)}}
    run(ctx, {**task, "config": {"path": str(target), "values": v1}})
    content = target.read_bytes()
    run(ctx, {**task, "config": {"path": str(target), "values": {"port": 9090, "new": 1}}})

    (back,) = rollback("acme/web", "previous", ctx)

    assert back.status is Status.SUCCESS, back.error
    assert target.read_bytes() == content
    assert back.revision == 3
    assert state(ctx, "acme/web").revisions[-1]["command"] == "rollback of 2 to 1"


def test_rollback_twice_in_a_row_goes_back_two_revisions(tmp_path: Path, etcd: EtcdPrefix) -> None:
    ctx = make_ctx(tmp_path)
    for v in ("1", "2", "3"):
        run(ctx, etcd_task(etcd, {"v": v}))

    rollback("acme/db", "previous", ctx)
    assert etcd.get() == {"v": "2"}
    rollback("acme/db", "previous", ctx)
    assert etcd.get() == {"v": "1"}

    commands = [r["command"] for r in state(ctx, "acme/db").revisions]
    assert commands[-2:] == ["rollback of 3 to 2", "rollback of 4 to 1"]


def test_rollback_to_a_number(tmp_path: Path, etcd: EtcdPrefix) -> None:
    ctx = make_ctx(tmp_path)
    for v in ("1", "2", "3"):
        run(ctx, etcd_task(etcd, {"v": v, f"only{v}": "x"}))
    rollback("acme/db", "1", ctx)
    assert etcd.get() == {"v": "1", "only1": "x"}


def test_a_key_changed_since_is_a_conflict_left_alone(tmp_path: Path, etcd: EtcdPrefix) -> None:
    ctx = make_ctx(tmp_path)
    run(ctx, etcd_task(etcd, {"a": "1", "b": "1"}))
    run(ctx, etcd_task(etcd, {"a": "2", "b": "2"}))
    etcd.put("a", "by-hand")

    (back,) = rollback("acme/db", "previous", ctx)

    assert etcd.get() == {"a": "by-hand", "b": "1"}
    assert back.conflicts == {
        "localhost": [
            {"key": "a", "found": {"value": "by-hand"}, "expected": {"value": "2"}},
        ]
    }
    assert '! a: found "by-hand", last written "2"' in table([back])


def test_force_overwrites_a_conflict(tmp_path: Path, etcd: EtcdPrefix) -> None:
    ctx = make_ctx(tmp_path)
    run(ctx, etcd_task(etcd, {"a": "1"}))
    run(ctx, etcd_task(etcd, {"a": "2"}))
    etcd.put("a", "by-hand")
    (back,) = rollback("acme/db", "previous", ctx, force=True)
    assert back.conflicts == {} and etcd.get() == {"a": "1"}


def test_rollback_check_changes_nothing_and_records_nothing(
    tmp_path: Path, etcd: EtcdPrefix
) -> None:
    ctx = make_ctx(tmp_path)
    run(ctx, etcd_task(etcd, {"a": "1"}))
    run(ctx, etcd_task(etcd, {"a": "2", "b": "3"}))
    stored, revision = etcd.get(), etcd.revision()
    kept = (tmp_path / "state" / "acme" / "db.json").read_bytes()

    (dry,) = rollback("acme/db", "previous", ctx, check=True)

    assert dry.check and etcd.get() == stored and etcd.revision() == revision
    assert (tmp_path / "state" / "acme" / "db.json").read_bytes() == kept
    assert {i["key"]: i for i in dry.key_changes["localhost"]} == {
        "a": {"key": "a", "change": "changed", "before": "2", "after": "1"},
        "b": {"key": "b", "change": "removed", "before": "3"},
    }


def test_rollback_refuses_while_another_run_holds_the_identity(
    tmp_path: Path, etcd: EtcdPrefix
) -> None:
    ctx = make_ctx(tmp_path)
    run(ctx, etcd_task(etcd, {"a": "1"}))
    with ctx.store.lock("acme/db", "update"), pytest.raises(LockedError):
        rollback("acme/db", "previous", ctx)
    assert etcd.get() == {"a": "1"}


def test_rollback_to_a_revision_not_kept_is_invalid(tmp_path: Path, etcd: EtcdPrefix) -> None:
    ctx = make_ctx(tmp_path)
    run(ctx, etcd_task(etcd, {"a": "1"}))
    run(ctx, etcd_task(etcd, {"a": "2"}))
    with pytest.raises(InvalidInput, match="keeps no revision 7"):
        rollback("acme/db", "7", ctx)


def test_the_history_store_never_holds_a_secret(tmp_path: Path, etcd: EtcdPrefix) -> None:
    ctx = make_ctx(tmp_path, RA_SECRET_DB=CANARY, RA_SECRET_NEXT="next-Pw-77-s3cr3t")
    etcd.put("password", OLD_SECRET)
    run(ctx, etcd_task(etcd, {"host": "h", "password": "${env:RA_SECRET_DB}"}))
    run(ctx, etcd_task(etcd, {"host": "h", "password": "${env:RA_SECRET_NEXT}"}))
    assert etcd.get()["password"] == "next-Pw-77-s3cr3t"

    (back,) = rollback("acme/db", "previous", ctx)

    assert back.status is Status.SUCCESS, back.error
    assert etcd.get()["password"] == CANARY  # its source, resolved again
    stored = (tmp_path / "state" / "acme" / "db.json").read_text()
    for secret in (CANARY, OLD_SECRET, "next-Pw-77-s3cr3t"):
        assert secret not in stored
    first, second, _ = state(ctx, "acme/db").revisions
    assert first["hosts"]["localhost"]["password"] == {"secret": None}
    assert first["after"]["localhost"]["password"] == {"secret": "${env:RA_SECRET_DB}"}
    assert second["hosts"]["localhost"]["password"] == {"secret": "${env:RA_SECRET_DB}"}


def test_a_secret_held_before_any_revision_is_not_restored(
    tmp_path: Path, etcd: EtcdPrefix
) -> None:
    ctx = make_ctx(tmp_path, RA_SECRET_DB=CANARY)
    etcd.put("password", OLD_SECRET)
    run(ctx, etcd_task(etcd, {"password": "${env:RA_SECRET_DB}"}))
    (back,) = rollback("acme/db", "previous", ctx)
    assert etcd.get() == {"password": CANARY}  # left alone: no revision names its source
    assert back.conflicts["localhost"][0]["key"] == "password"


def _two_hosts(tmp_path: Path) -> tuple[dict[str, Any], Path, dict[str, Path]]:
    """Two local hosts with a folder each: each host's interpreter starts in its folder, so
    the absolute path /proc/self/cwd/web.json is a file per host, as on two machines; host b
    fails while ``broken`` exists."""
    broken = tmp_path / "broken"
    folders = {h: tmp_path / h for h in ("a", "b")}
    hosts: dict[str, Any] = {}
    for host, folder in folders.items():
        folder.mkdir()
        script = tmp_path / f"python-{host}"
        guard = f'[ -e "{broken}" ] && exit 1\n' if host == "b" else ""
        script.write_text(
            f'#!/bin/sh\ncd "{folder}" || exit 1\n{guard}exec "{sys.executable}" "$@"\n'
        )
        script.chmod(0o755)
        hosts[host] = {"ansible_connection": "local", "ansible_python_interpreter": str(script)}
    return {"all": {"hosts": hosts}}, broken, folders


def test_rollback_after_a_partial_failure_on_one_of_two_hosts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNNER_AGENT_STRATEGY", "linear")  # modules start in the host's folder
    inventory, broken, folders = _two_hosts(tmp_path)
    ctx = make_ctx(tmp_path)
    task = {"identity": "acme/web", "agent": "kv_file", "hosts": inventory}
    run(ctx, {**task, "config": {"path": PER_HOST, "values": {"v": 1}}})
    assert all(json.loads((f / "web.json").read_text()) == {"v": 1} for f in folders.values())
    broken.touch()
    (partial,) = run(ctx, {**task, "config": {"path": PER_HOST, "values": {"v": 2}}})
    assert partial.status is Status.FAILED
    assert json.loads((folders["a"] / "web.json").read_text()) == {"v": 2}
    assert state(ctx, "acme/web").revisions[-1]["status"] == "failed"  # a's change is kept
    broken.unlink()

    (back,) = rollback("acme/web", "previous", ctx)

    assert back.status is Status.SUCCESS, back.error
    assert all(json.loads((f / "web.json").read_text()) == {"v": 1} for f in folders.values())
    assert back.conflicts == {}
