"""One ``runner-agent run`` for a job of several tasks, as a rendered grouped job calls it:
a report and a JUnit file per task (--report-dir), one dotenv for the job within GitLab's
limits, and ``--after`` skipping only the tasks that follow a report that did not succeed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from cli.test_run import run_cli, write_task


def _files(tmp_path: Path, *specs: dict[str, object]) -> list[str]:
    folder = tmp_path / "tasks"
    folder.mkdir(exist_ok=True)
    paths = []
    for n, spec in enumerate(specs):
        path = folder / f"{n:04d}.json"
        path.write_text(json.dumps({"identity": "cli/probe", "agent": "probe", **spec}))
        paths.append(str(path))
    return paths


def test_a_job_of_several_tasks_reports_every_task(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = _files(
        tmp_path,
        {"identity": "job/a", "config": {"message": "one"}},
        {"identity": "job/b", "config": {"fail": True}},
        {"identity": "job/a", "command": "update", "config": {"message": "two"}},
    )
    reports, env = tmp_path / "reports", tmp_path / "reports" / "0000.env"
    code = run_cli(tmp_path, *files, "--report-dir", str(reports), "--dotenv", str(env))
    assert code == 1  # job/b failed
    found = {p.name: json.loads(p.read_text()) for p in reports.glob("*.json")}
    assert sorted(found) == ["0000.json", "0001.json", "0002.json"]
    assert [found[f"000{n}.json"]["status"] for n in range(3)] == ["success", "failed", "success"]
    assert found["0002.json"]["outputs"]["message"] == "two"
    for n in range(3):  # JUnit per task, each naming its own identity
        junit = (reports / f"000{n}.junit.xml").read_text()
        assert f'name="{found[f"000{n}.json"]["identity"]}' in junit
    lines = env.read_text().splitlines()
    # statuses first (job/a's last task), then outputs, within GitLab's 20 variables
    assert lines[:2] == ["RA_JOB_B_STATUS=failed", "RA_JOB_A_STATUS=success"]
    assert len(lines) <= 20 and len(env.read_bytes()) < 5120
    shown = dict(line.split("=", 1) for line in lines)
    report = found["0002.json"]
    for key in report["outputs"]:  # in the dotenv, or named in the report's notes
        name = f"RA_JOB_A_{key}".upper()
        assert name in shown or any(name in note for note in report["notes"]), name
    if "RA_JOB_A_MESSAGE" in shown:
        assert shown["RA_JOB_A_MESSAGE"] == "two"  # the later task's value
    capsys.readouterr()


def test_after_a_failed_report_only_its_followers_are_skipped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    files = _files(
        tmp_path,
        {"identity": "job/a", "config": {"message": "a"}},
        {"identity": "job/b", "config": {"message": "b"}},
        {"identity": "job/c", "outputs_from": ["job/a"], "config": {"message": "c"}},
    )
    before = tmp_path / "before.json"
    before.write_text(json.dumps({"identity": "job/a", "status": "failed"}))
    reports = tmp_path / "reports"
    assert run_cli(tmp_path, *files, "--report-dir", str(reports), "--after", str(before)) == 0
    status = {p.stem: json.loads(p.read_text()) for p in reports.glob("*.json")}
    assert status["0000"]["status"] == "skipped" and "ended failed" in status["0000"]["error"]
    assert status["0001"]["status"] == "success"  # job/b follows nothing that failed
    assert status["0002"]["status"] == "skipped"  # it reads job/a's outputs
    assert not (tmp_path / "state" / "job" / "a.json").exists()
    # a missing report (a job that died) skips every task: what it held is unknown
    assert run_cli(tmp_path, *files, "--report-dir", str(reports), "--after", "gone.json") == 0
    for path in reports.glob("*.json"):
        data = json.loads(path.read_text())
        assert data["status"] == "skipped" and "left no report" in data["error"], path
    capsys.readouterr()


def test_report_dir_refuses_two_tasks_of_one_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "x").mkdir()
    one = write_task(tmp_path / "t.yml", identity="job/a")
    two = write_task(tmp_path / "x" / "t.yml", identity="job/b")
    reports = tmp_path / "reports"
    assert run_cli(tmp_path, str(one), str(two), "--report-dir", str(reports)) == 2
    assert "--report-dir" in capsys.readouterr().err
    assert not reports.exists() and not (tmp_path / "state").exists()


def test_a_file_of_several_tasks_reports_each_by_position(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    many = tmp_path / "web.yml"
    many.write_text(
        yaml.safe_dump(
            [{"identity": f"job/{c}", "agent": "probe", "config": {"message": c}} for c in "ab"]
        )
    )
    reports = tmp_path / "reports"
    args = [str(many), "--report-dir", str(reports)]
    assert run_cli(tmp_path, *args) == 0
    assert sorted(p.name for p in reports.iterdir()) == [
        "web-0.json", "web-0.junit.xml", "web-1.json", "web-1.junit.xml",
    ]  # fmt: skip
    capsys.readouterr()


# GitLab's reading of a section marker (lib/gitlab/regex.rb: logs_section_prefix_regex,
# logs_section_options_regex, then always logs_section_suffix_regex "\r\033[0K")
GITLAB_SECTION = re.compile(
    r"section_((?:start)|(?:end)):(\d+):([a-zA-Z0-9_.-]+)(\[(?:\w+=\w+)(?:, ?(?:\w+=\w+))*\])?"
    r"\r\033\[0K(.*)"
)


def test_a_job_of_several_tasks_folds_each_tasks_output_into_its_own_sections(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """GitLab's collapsible sections (doc/ci/jobs/job_logs.md, "Custom collapsible sections"):
    one per command of each task, each closed before the next opens, named apart, as GitLab
    reads them from a job's log (not a terminal: the escape codes must survive)."""
    monkeypatch.setenv("GITLAB_CI", "true")  # streaming and sections, as inside a job
    files = _files(tmp_path, {"identity": "job/a"}, {"identity": "job/b"})
    assert run_cli(tmp_path, *files, "--report-dir", str(tmp_path / "reports")) == 0
    err = capsys.readouterr().err
    marks = [m for line in err.split("\n") if (m := GITLAB_SECTION.search(line))]
    assert [m[1] for m in marks] == ["start", "end"] * 4  # install, update of each task
    names = [m[3] for m in marks]
    assert all(names[n] == names[n + 1] for n in range(0, 8, 2))  # each end closes its start
    assert len(set(names)) == 4
    headers = sorted(m[5] for m in marks if m[1] == "start")
    assert headers == ["job/a: install", "job/a: update", "job/b: install", "job/b: update"]
    assert all(m[4] == "[collapsed=true]" for m in marks if m[1] == "start")
