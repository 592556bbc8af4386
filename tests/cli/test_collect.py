"""``runner-agent collect``: merging a folder of reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runner_agent.cli import main


def test_collect_does_not_count_a_summary_in_the_folder_twice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reports = tmp_path / "reports"
    reports.mkdir()
    report = {"identity": "a/b", "agent": "probe", "status": "success", "commands": []}
    (reports / "0000.json").write_text(json.dumps(report))
    assert main(["collect", str(reports), "--summary", str(reports / "summary.json")]) == 0
    assert main(["collect", str(reports), "--output", "json"]) == 0
    assert json.loads(capsys.readouterr().out.split("\n", 2)[-1])["tasks"] == 1


def test_collect_counts_missing_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "0000.json").write_text(
        json.dumps({"identity": "a/b", "agent": "probe", "status": "success", "commands": []})
    )
    summary = tmp_path / "summary.json"
    assert main(["collect", str(reports), "--summary", str(summary), "--expect", "1"]) == 0
    assert main(["collect", str(reports), "--summary", str(summary), "--expect", "3"]) == 1
    data = json.loads(summary.read_text())
    assert data["missing"] == 2 and data["tasks"] == 3 and data["status"] == "error"
    assert "2 task report(s) missing" in capsys.readouterr().err


@pytest.mark.parametrize("number", ["NaN", "Infinity", "1e999"])
@pytest.mark.parametrize("command", ["collect", "dotenv"])
def test_a_report_with_a_number_json_has_not_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], number: str, command: str
) -> None:
    report = tmp_path / "r.json"
    head = '{"identity": "a/b", "agent": "x", "status": "success", "outputs": {"n": '
    report.write_text(head + number + "}}")
    out = tmp_path / "out"
    argv = {"collect": ["collect", str(report), "--summary", str(out)]}.get(
        command, ["dotenv", str(report), "-f", str(out)]
    )
    assert main(argv) == 2
    assert "not a report" in capsys.readouterr().err and not out.exists()
