"""``run --check``, ``history`` and ``rollback`` as a script sees them: exit codes and output,
against a real etcd."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from endpoints import EtcdPrefix

from runner_agent.cli import main
from runner_agent.model.state import LocalStateStore


def write_task(path: Path, etcd: EtcdPrefix, values: dict[str, str]) -> Path:
    config = {"endpoint": etcd.endpoint, "prefix": etcd.prefix, "values": values}
    path.write_text(yaml.safe_dump({"identity": "cli/db", "agent": "kv_etcd", "config": config}))
    return path


def local(tmp_path: Path) -> list[str]:
    return ["--local", "--state-dir", str(tmp_path / "state")]


def test_run_check_exits_0_writes_no_state_and_prints_the_diff(
    tmp_path: Path, etcd: EtcdPrefix, capsys: pytest.CaptureFixture[str]
) -> None:
    task = write_task(tmp_path / "db.yml", etcd, {"a": "1"})
    assert main(["run", str(task), *local(tmp_path), "--check"]) == 0
    out = capsys.readouterr().out
    assert "cli/db install would change on localhost:" in out and '+ a: "1"' in out
    assert etcd.get() == {} and not (tmp_path / "state" / "cli" / "db.json").exists()


def test_history_lists_revisions_and_json_has_them_all(
    tmp_path: Path, etcd: EtcdPrefix, capsys: pytest.CaptureFixture[str]
) -> None:
    task = tmp_path / "db.yml"
    for v in ("1", "2"):
        assert main(["run", str(write_task(task, etcd, {"a": v})), *local(tmp_path)]) == 0
    capsys.readouterr()
    assert main(["history", "cli/db", *local(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["REV", "TIME", "WHO", "COMMAND", "STATUS", "KEYS"]
    assert [line.split()[0] for line in lines[1:]] == ["1", "2"]
    assert main(["history", "cli/db", *local(tmp_path), "--output", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["revisions"][1]["hosts"] == {"localhost": {"a": {"value": "1"}}}


def test_history_pin_keeps_the_mark(
    tmp_path: Path, etcd: EtcdPrefix, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["run", str(write_task(tmp_path / "db.yml", etcd, {"a": "1"})), *local(tmp_path)]) == 0
    )
    assert main(["history", "cli/db", *local(tmp_path), "--pin", "1"]) == 0
    assert "pinned" in capsys.readouterr().out.splitlines()[-1]
    stored = LocalStateStore(tmp_path / "state").read("cli/db")
    assert stored is not None and stored.revisions[0]["pinned"]


def test_history_of_an_unknown_identity_is_invalid_input(tmp_path: Path) -> None:
    assert main(["history", "cli/none", *local(tmp_path)]) == 2


def test_rollback_exits_0_and_restores(tmp_path: Path, etcd: EtcdPrefix) -> None:
    task = tmp_path / "db.yml"
    for v in ("1", "2"):
        assert main(["run", str(write_task(task, etcd, {"a": v})), *local(tmp_path)]) == 0
    assert main(["rollback", "cli/db", *local(tmp_path)]) == 0
    assert etcd.get() == {"a": "1"}


def test_rollback_with_conflicts_left_alone_exits_1(tmp_path: Path, etcd: EtcdPrefix) -> None:
    task = tmp_path / "db.yml"
    for v in ("1", "2"):
        assert main(["run", str(write_task(task, etcd, {"a": v, "b": v})), *local(tmp_path)]) == 0
    etcd.put("a", "by-hand")
    assert main(["rollback", "cli/db", *local(tmp_path)]) == 1
    assert etcd.get() == {"a": "by-hand", "b": "1"}


def test_rollback_while_locked_exits_3(tmp_path: Path, etcd: EtcdPrefix) -> None:
    assert (
        main(["run", str(write_task(tmp_path / "db.yml", etcd, {"a": "1"})), *local(tmp_path)]) == 0
    )
    with LocalStateStore(tmp_path / "state").lock("cli/db", "update"):
        assert main(["rollback", "cli/db", *local(tmp_path)]) == 3


def test_rollback_to_a_bad_revision_is_invalid_input(tmp_path: Path, etcd: EtcdPrefix) -> None:
    assert (
        main(["run", str(write_task(tmp_path / "db.yml", etcd, {"a": "1"})), *local(tmp_path)]) == 0
    )
    assert main(["rollback", "cli/db", *local(tmp_path), "--to", "latest"]) == 2


def test_run_of_a_rollback_task_rolls_back_as_a_job_would(tmp_path: Path, etcd: EtcdPrefix) -> None:
    task = tmp_path / "db.yml"
    for v in ("1", "2"):
        assert main(["run", str(write_task(task, etcd, {"a": v})), *local(tmp_path)]) == 0
    item = yaml.safe_load(task.read_text())
    task.write_text(yaml.safe_dump({**item, "rollback": {"to": "previous"}}))
    assert main(["run", str(task), *local(tmp_path)]) == 0
    assert etcd.get() == {"a": "1"}


def test_a_rollback_task_while_locked_reports_locked(tmp_path: Path, etcd: EtcdPrefix) -> None:
    task = write_task(tmp_path / "db.yml", etcd, {"a": "1"})
    assert main(["run", str(task), *local(tmp_path)]) == 0
    item = yaml.safe_load(task.read_text())
    task.write_text(yaml.safe_dump({**item, "rollback": {"to": "previous"}}))
    report = tmp_path / "report.json"
    with LocalStateStore(tmp_path / "state").lock("cli/db", "update"):
        assert main(["run", str(task), *local(tmp_path), "--report", str(report)]) == 3
    assert json.loads(report.read_text())["status"] == "locked"
