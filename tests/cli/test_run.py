"""``runner-agent run --local`` and ``collect`` as a script sees them: exit codes, files, JSON."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import yaml

from runner_agent.cli import main
from runner_agent.model.state import LocalStateStore

FIXTURE_AGENTS = Path(__file__).resolve().parents[1] / "fixtures" / "agents"


def write_task(path: Path, **fields: object) -> Path:
    task = {"identity": "cli/probe", "agent": "probe", **fields}
    path.write_text(yaml.safe_dump(task))
    return path


def run_cli(tmp_path: Path, *args: str) -> int:
    return main(
        [
            "run",
            *args,
            "--local",
            "--state-dir",
            str(tmp_path / "state"),
            "--agents-path",
            str(FIXTURE_AGENTS),
        ]
    )


def test_run_writes_report_junit_and_json_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task = write_task(tmp_path / "t.yml", config={"message": "hi"})
    report = tmp_path / "out" / "report.json"
    assert run_cli(tmp_path, str(task), "--report", str(report), "--output", "json") == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["status"] == "success" and printed["commands_run"] == ["install", "update"]
    assert json.loads(report.read_text())["outputs"]["message"] == "hi"
    junit = (tmp_path / "out" / "report.junit.xml").read_text()
    assert 'classname="cli/probe.update.localhost"' in junit and "<testsuite " in junit


def test_exit_codes_follow_the_outcome(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    failing = write_task(tmp_path / "f.yml", config={"fail": True})
    assert run_cli(tmp_path, str(failing)) == 1
    assert "probe failed with hello" in capsys.readouterr().out

    slow = write_task(tmp_path / "s.yml", identity="cli/slow", timeout="2s", config={"sleep": 120})
    assert run_cli(tmp_path, str(slow)) == 5

    store = LocalStateStore(tmp_path / "state")
    ok = write_task(tmp_path / "ok.yml", identity="cli/locked")
    with store.lock("cli/locked", "update"):
        assert run_cli(tmp_path, str(ok)) == 3
    assert "locked by update" in capsys.readouterr().out


def test_command_override_must_exist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    task = write_task(tmp_path / "t.yml")
    assert run_cli(tmp_path, str(task), "--command", "nope") == 2
    assert "has no command 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "state").exists()


def test_missing_secret_variable_is_invalid_input(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("RA_SECRET_TEST_UNSET", raising=False)
    task = write_task(tmp_path / "t.yml", config={"message": "${env:RA_SECRET_TEST_UNSET}"})
    assert run_cli(tmp_path, str(task)) == 2
    assert "config.message: environment variable RA_SECRET_TEST_UNSET is not set" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "state").exists()


def test_task_values_never_reach_a_command_line(tmp_path: Path) -> None:
    """Sample every process's argv while the run goes on: the value must never be there."""
    canary = "argv-canary-7Yx"
    task = write_task(tmp_path / "t.yml", config={"message": canary, "sleep": 2})
    seen: list[str] = []
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
                try:
                    seen.append(cmdline.read_bytes().decode(errors="replace"))
                except OSError:
                    continue
            done.wait(0.05)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        assert run_cli(tmp_path, str(task)) == 0
    finally:
        done.set()
        sampler.join()
    assert any("ansible-playbook" in s for s in seen)  # the sampler did see the run
    assert not [s for s in seen if canary in s]


def test_collect_merges_reports_and_names_failures(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write_task(tmp_path / "g.yml", identity="cli/good")
    bad = write_task(tmp_path / "b.yml", identity="cli/bad", config={"fail": True})
    run_cli(tmp_path, str(good), "--report", str(tmp_path / "r" / "good.json"))
    run_cli(tmp_path, str(bad), "--report", str(tmp_path / "r" / "bad.json"))
    capsys.readouterr()
    summary = tmp_path / "summary.json"
    assert main(["collect", str(tmp_path / "r"), "--summary", str(summary)]) == 1
    data = json.loads(summary.read_text())
    assert data["counts"] == {"failed": 1, "success": 1}
    assert [f["identity"] for f in data["failed"]] == ["cli/bad"]
    assert "probe failed with hello" in data["failed"][0]["error"]
    assert "cli/bad" in capsys.readouterr().out


def test_after_a_failed_or_missing_report_the_task_is_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task = write_task(tmp_path / "t.yml", config={"message": "later"})
    failed = tmp_path / "before.json"
    failed.write_text(json.dumps({"identity": "cli/probe", "status": "failed"}))
    report, env = tmp_path / "r.json", tmp_path / "r.env"
    args = ["--report", str(report), "--dotenv", str(env)]
    assert run_cli(tmp_path, str(task), "--after", str(failed), *args) == 0
    data = json.loads(report.read_text())
    assert data["status"] == "skipped" and "ended failed" in data["error"]
    assert env.read_text() == "RA_CLI_PROBE_STATUS=skipped\n"
    assert not (tmp_path / "state" / "cli").exists()  # nothing ran
    missing = tmp_path / "nowhere.json"
    assert run_cli(tmp_path, str(task), "--after", str(missing), *args) == 0
    assert "left no report" in json.loads(report.read_text())["error"]

    failed.write_text(json.dumps({"identity": "cli/probe", "status": "success"}))
    assert run_cli(tmp_path, str(task), "--after", str(failed), *args) == 0
    assert env.read_text().splitlines()[:2] == [
        "RA_CLI_PROBE_STATUS=success",
        "RA_CLI_PROBE_COUNT=1",
    ]


def test_in_a_gitlab_job_ansible_output_folds_into_log_sections(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GITLAB_CI", "true")  # streaming is on by default inside a job
    task = write_task(tmp_path / "t.yml", identity="cli/logs")
    assert run_cli(tmp_path, str(task)) == 0
    err = capsys.readouterr().err
    lines = err.split("\n")  # not splitlines(): the markers hold a \r GitLab's log reads
    starts = [line for line in lines if "section_start:" in line]
    ends = [line for line in lines if "section_end:" in line]
    assert len(starts) == len(ends) == 2  # install, then update
    assert "[collapsed=true]" in starts[0] and starts[0].endswith("cli/logs: install")
    assert err.index("section_start") < err.index("PLAY RECAP") < err.index("section_end")
