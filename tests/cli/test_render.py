"""`runner-agent render`, `plan` and `dotenv` from the command line."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from runner_agent.cli import main
from runner_agent.pipeline import ci_schema
from runner_agent.report.model import dotenv as outputs_dotenv

FIXTURES = Path(__file__).resolve().parents[1] / "pipeline" / "fixtures"


@pytest.fixture(autouse=True)
def _outside_a_job(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests may run inside a GitLab job: its variables must not leak into the options."""
    for name in (
        "CI_PROJECT_DIR",
        "CI_JOB_NAME",
        "RA_MAX_JOBS",
        "RA_DEFAULT_TAGS",
        "RA_TASKS_PER_JOB",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "tasks").mkdir()
    shutil.copy(FIXTURES / "mixed.yml", tmp_path / "tasks" / "mixed.yml")
    return tmp_path


def test_render_prints_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", str(FIXTURES / "mixed.yml")]) == 0
    out = capsys.readouterr().out
    assert ci_schema.problems(out) == []
    assert "acme/web:install:0+1" in yaml.safe_load(out)  # acme/web's two tasks, one job


def test_tasks_per_job_groups_tasks_of_the_same_runners(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    items = [
        {
            "identity": f"acme/n{i}",
            "agent": "kv_file",
            "runner": {"tags": ["dc1"]},
            "config": {"path": f"/tmp/n{i}.json", "values": {"k": "v"}},
        }
        for i in range(40)
    ]
    source = tmp_path / "tasks.yml"
    source.write_text(yaml.safe_dump(items))
    counts = {}
    for per_job in ("1", "5", "40"):
        args = ["render", str(source), "--tasks-per-job", per_job, "--lock-shards", "2"]
        assert main(args) == 0
        doc = yaml.safe_load(capsys.readouterr().out)
        jobs = {n: j for n, j in doc.items() if n.startswith("acme/")}
        counts[per_job] = len(jobs)
        assert {j["resource_group"] for j in jobs.values()} <= {
            "runner-agent/shard-000",
            "runner-agent/shard-001",
        }
        ran = [f for j in jobs.values() for f in re.findall(r"tasks/(\d+)\.json", j["script"][0])]
        assert sorted(ran) == [f"{i:04d}" for i in range(40)]  # every task exactly once
    # one shard holds more than 5 of 40 tasks: more jobs than 40 / 5; 2 shards, 2 jobs
    assert counts["1"] == 40 and 8 <= counts["5"] <= 9 and counts["40"] == 2


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--tasks-per-job", "0"], "--tasks-per-job"),
        (["--tasks-per-job", "x"], "--tasks-per-job"),
        (["--tasks-per-job", "-3"], "--tasks-per-job"),
        (["--lock-shards", "0"], "--lock-shards"),
        (["--lock-shards", "257"], "--lock-shards"),
    ],
)
def test_bad_grouping_values_exit_2_naming_the_flag(
    args: list[str], flag: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "out" / "p.yml"
    cmd = [
        "render",
        str(FIXTURES / "mixed.yml"),
        "-f",
        str(out_file),
        "--project-dir",
        str(tmp_path),
    ]
    assert main([*cmd, *args]) == 2
    assert flag in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_plan_reads_tasks_per_job_from_its_variable(
    project: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RA_TASKS_PER_JOB", "abc")  # a bad value names the variable's flag
    args = ["plan", "--project-dir", str(project), "--task-file", "tasks/mixed.yml"]
    assert main(args) == 2
    assert "--tasks-per-job" in capsys.readouterr().err
    monkeypatch.setenv("RA_TASKS_PER_JOB", "1")
    assert main(args) == 0
    doc = yaml.safe_load((project / ".runner-agent/pipeline.yml").read_text())
    assert sorted(n for n in doc if n.startswith("acme/")) == [
        "acme/cache:update:1",
        "acme/db:digest:3",
        "acme/web:install:0+1",
    ]


def test_render_writes_the_pipeline_and_its_task_files(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = project / ".runner-agent" / "pipeline.yml"
    args = ["render", str(project / "tasks/mixed.yml"), "-f", str(out_file)]
    assert main([*args, "--project-dir", str(project), "-o", "json"]) == 0
    written = json.loads(capsys.readouterr().out)
    assert written == {
        "entry": ".runner-agent/pipeline.yml",
        "pipelines": 1,
        "tasks": 4,
        "files": [".runner-agent/pipeline.yml"]
        + [f".runner-agent/tasks/000{i}.json" for i in range(4)],
    }
    assert ci_schema.problems(out_file.read_text()) == []
    task = json.loads((project / ".runner-agent/tasks/0002.json").read_text())
    assert (task["identity"], task["command"]) == ("acme/web", "update")


def test_render_splits_into_parts_and_an_index(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = project / "ci" / "agents.yml"
    args = ["render", str(project / "tasks/mixed.yml"), "-f", str(out_file), "--max-jobs", "3"]
    assert main([*args, "--project-dir", str(project)]) == 0
    assert "2 pipeline(s)" in capsys.readouterr().out  # acme/web's two tasks, then the rest
    index = yaml.safe_load(out_file.read_text())
    includes = [index[f"runner-agent-part-{n}"]["trigger"]["include"] for n in (1, 2)]
    assert includes == [[{"local": f"ci/agents-{n}.yml"}] for n in (1, 2)]
    for n in (1, 2):
        assert ci_schema.problems((project / f"ci/agents-{n}.yml").read_text()) == []


def test_invalid_tasks_exit_2_and_write_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("identity: Acme Web\nagent: kv_file\n")
    out_file = tmp_path / "out" / "p.yml"
    assert main(["render", str(bad), "-f", str(out_file), "--project-dir", str(tmp_path)]) == 2
    assert "identity" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_file_outside_the_project_dir_is_refused(
    project: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "p.yml"
    args = ["render", str(project / "tasks/mixed.yml"), "-f", str(elsewhere)]
    assert main([*args, "--project-dir", str(project)]) == 2
    assert main([*args[:3], str(project / "p.yml"), "--project-dir", str(project)]) == 2


def test_render_help_teaches_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", "--help"]) == 0
    text = capsys.readouterr().out
    assert "runner-agent render tasks/web.yml -f .runner-agent/pipeline.yml" in text
    assert "--output" in text and "--file" in text


def test_plan_from_a_task_file_fetches_from_the_plan_job(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RA_TASK_FILE", "tasks/mixed.yml")
    monkeypatch.setenv("CI_JOB_NAME", "runner-agent-plan")
    monkeypatch.setenv("CI_PROJECT_DIR", str(project))
    monkeypatch.setenv("RA_DEFAULT_TAGS", "runner-agent, dc1")
    assert main(["plan", "-f", str(project / ".runner-agent/pipeline.yml")]) == 0
    doc = yaml.safe_load((project / ".runner-agent/pipeline.yml").read_text())
    assert {"pipeline": "$PARENT_PIPELINE_ID", "job": "runner-agent-plan"} in doc[
        "acme/db:digest:3"
    ]["needs"]
    assert doc["acme/db:digest:3"]["tags"] == ["runner-agent", "dc1"]


def test_plan_an_identity_from_the_repository_with_another_command(project: Path) -> None:
    args = ["plan", "--project-dir", str(project), "--identity", "acme/web", "--command", "cycle"]
    assert main(args) == 0
    doc = yaml.safe_load((project / ".runner-agent/pipeline.yml").read_text())
    assert [n for n in doc if n.startswith("acme/")] == ["acme/web:cycle:0+1"]
    task = json.loads((project / ".runner-agent/tasks/0000.json").read_text())
    assert task["config"]["path"] == "/etc/acme/web.json"


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--task-file", "tasks/mixed.yml", "--identity", "acme/web"],
        ["--task-file", "../outside.yml"],
        ["--dispatch-id", "d-1", "--checksum", "sha256:" + "0" * 64],
        ["--identity", "acme/new", "--agent", "kv_file"],  # no task file: kv_file needs a path
        ["--identity", "acme/web", "--agent", "kv_etcd"],
        ["--identity", "acme/web", "--command", "nope"],
    ],
)
def test_plan_refuses_bad_inputs(project: Path, args: list[str]) -> None:
    assert main(["plan", "--project-dir", str(project), *args]) == 2
    assert not (project / ".runner-agent").exists()


def test_dotenv_command(tmp_path: Path) -> None:
    report = tmp_path / "0001.json"
    report.write_text(
        json.dumps({"identity": "acme/web", "status": "success", "outputs": {"url": "http://x"}})
    )
    assert main(["dotenv", str(report), "-f", str(tmp_path / "r" / "0001.env")]) == 0
    assert (tmp_path / "r/0001.env").read_text() == (
        "RA_ACME_WEB_STATUS=success\nRA_ACME_WEB_URL=http://x\n"
    )
    assert main(["dotenv", str(tmp_path / "missing.json"), "-f", str(tmp_path / "x.env")]) == 2


def test_dotenv_stays_within_gitlab_limits() -> None:
    outputs = {f"key-{i:02d}": "v" * 300 for i in range(30)}
    outputs |= {"status": "fake", "multi": "a\nb", "Key.01": "clash", "n": 3, "obj": {"a": [1]}}
    text = outputs_dotenv({"identity": "acme/web-1", "status": "failed", "outputs": outputs})
    lines = text.splitlines()
    assert lines[0] == "RA_ACME_WEB_1_STATUS=failed"
    assert len(lines) <= 20 and len(text.encode()) <= 5120
    keys = [line.split("=", 1)[0] for line in lines]
    assert len(keys) == len(set(keys))
    assert all(re.fullmatch(r"[A-Za-z0-9_]+", k) for k in keys)
    assert not any("\n" in line or line.endswith("=fake") for line in lines)
    small = outputs_dotenv(
        {"identity": "a", "status": "success", "outputs": {"n": 3, "o": {"a": 1}}}
    )
    assert small == 'RA_A_STATUS=success\nRA_A_N=3\nRA_A_O={"a": 1}\n'


@pytest.mark.parametrize(("value", "gated"), [("true", True), ("false", False), ("", False)])
def test_plan_first_from_the_input_variable(
    project: Path, monkeypatch: pytest.MonkeyPatch, value: str, gated: bool
) -> None:
    """The agent project passes its boolean input plan_first as RA_PLAN_FIRST ("true"/"false")."""
    monkeypatch.setenv("RA_TASK_FILE", "tasks/mixed.yml")
    monkeypatch.setenv("CI_PROJECT_DIR", str(project))
    monkeypatch.setenv("RA_PLAN_FIRST", value)
    assert main(["plan", "-f", str(project / ".runner-agent/pipeline.yml")]) == 0
    doc = yaml.safe_load((project / ".runner-agent/pipeline.yml").read_text())
    assert ("approve" in doc["stages"]) is gated
    assert any(str(name).startswith("runner-agent-approve:") for name in doc) is gated
