"""The job side through the real CLI, as a GitLab job runs it: ``plan`` fetches and verifies the
bundle, ``run`` keeps state in the registry and uploads its report, ``collect`` uploads the
summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from fake_gitlab import CANARY_TOKEN, FakeGitLab
from gitlab_helpers import RunCli, kv_task, make_tasks

from runner_agent.gitlab.bundle import DISPATCH_PACKAGE, build_bundle
from runner_agent.gitlab.state_store import STATE_PACKAGE
from runner_agent.model.agents import AgentRegistry

FIXTURE_AGENTS = Path(__file__).resolve().parents[1] / "fixtures" / "agents"


@pytest.fixture
def in_job(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, run_cli: RunCli) -> RunCli:
    """The environment of a GitLab job of project 42, the project checked out in tmp_path."""
    monkeypatch.delenv("GITLAB_TOKEN")
    monkeypatch.delenv("GITLAB_URL")
    for key, value in {
        "GITLAB_CI": "true",
        "CI_SERVER_URL": "http://localhost",
        "CI_JOB_TOKEN": CANARY_TOKEN,
        "CI_PROJECT_ID": "42",
        "CI_JOB_ID": "555",
        "CI_JOB_NAME": "runner-agent-plan",
        "CI_PROJECT_DIR": str(tmp_path),
    }.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    return run_cli


def test_plan_fetches_verifies_and_renders_a_dispatched_bundle(
    fake: FakeGitLab,
    in_job: RunCli,
    registry: AgentRegistry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bundle = build_bundle(make_tasks(registry, kv_task(), kv_task("acme/db")), ref="main")
    fake.put_package(DISPATCH_PACKAGE, bundle.dispatch_id, "bundle.json", bundle.data)
    monkeypatch.setenv("RA_DISPATCH_ID", bundle.dispatch_id)
    monkeypatch.setenv("RA_CHECKSUM", "sha256:" + "0" * 64)
    code, _, err = in_job("plan")
    assert code == 2 and "checksum mismatch" in err
    assert not (tmp_path / ".runner-agent" / "pipeline.yml").exists()

    monkeypatch.setenv("RA_CHECKSUM", bundle.checksum)
    code, _, err = in_job("plan", "-o", "json")
    assert code == 0, err
    pipeline = yaml.safe_load((tmp_path / ".runner-agent" / "pipeline.yml").read_text())
    assert pipeline["variables"] == {"RA_DISPATCH_ID": bundle.dispatch_id}
    tasks = sorted((tmp_path / ".runner-agent" / "tasks").glob("*.json"))
    assert [json.loads(t.read_text())["identity"] for t in tasks] == ["acme/web", "acme/db"]
    assert fake.calls[-1].headers["JOB-TOKEN"] == CANARY_TOKEN


def test_run_in_a_job_keeps_state_in_gitlab_and_uploads_its_report(
    fake: FakeGitLab, in_job: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RA_DISPATCH_ID", "d-1")
    task = tmp_path / "task.json"
    task.write_text(json.dumps({"identity": "ci/probe", "agent": "probe", "config": {}}))
    report = tmp_path / ".runner-agent" / "reports" / "0000.json"
    args = ("run", str(task), "--report", str(report), "--agents-path", str(FIXTURE_AGENTS))
    code, _, err = in_job(*args)
    assert code == 0, err
    state = json.loads(fake.package(STATE_PACKAGE, "ci+probe", "state.json") or b"{}")
    assert state["installed"] and state["last_status"] == "success"
    uploaded = json.loads(fake.package(DISPATCH_PACKAGE, "d-1", "report-555.json") or b"{}")
    assert uploaded["identity"] == "ci/probe"
    assert uploaded["commands_run"] == ["install", "update"]

    report.unlink()
    fake.inject("PUT", "package", "", *["503"] * 7)  # state saved, the report upload fails
    code, _, err = in_job(*args)
    assert code == 0 and "could not upload the report" in err and report.exists()
    assert json.loads(report.read_text())["commands_run"] == ["update"]

    fake.inject("PUT", "package", *["503"] * 7)  # the state cannot be saved: the run says so
    code, _, err = in_job(*args)
    assert code == 1 and "state store" in json.loads(report.read_text())["error"]
    assert CANARY_TOKEN not in err

    summary = tmp_path / ".runner-agent" / "summary.json"
    code, _, err = in_job("collect", str(report.parent), "--summary", str(summary))
    stored = json.loads(fake.package(DISPATCH_PACKAGE, "d-1", "summary.json") or b"{}")
    assert code == 1 and stored["tasks"] == 1 and stored == json.loads(summary.read_text())
