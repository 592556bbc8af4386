"""No traceback reaches a user: every command, pointed at missing, linked, damaged and
unwritable paths, ends with a clean message and a documented exit code."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from runner_agent.cli import main

FIXTURE_AGENTS = Path(__file__).resolve().parents[1] / "fixtures" / "agents"
DOCUMENTED = {0, 1, 2, 3, 4, 5}
AGENTS = ["--agents-path", str(FIXTURE_AGENTS)]

Case = Callable[[Path], list[str]]


def _setup(tmp: Path) -> None:
    """The places the cases point at."""
    task = {
        "identity": "nt/probe",
        "agent": "probe",
        "command": "hello",
        "config": {"message": "m"},
    }
    (tmp / "task.yml").write_text(yaml.safe_dump(task))
    (tmp / "report.json").write_text(
        json.dumps({"identity": "nt/probe", "agent": "probe", "status": "success"})
    )
    (tmp / "adir").mkdir()
    (tmp / "blocker").write_text("")
    (tmp / "dangling").symlink_to(tmp / "nowhere")
    (tmp / "victim").write_text("precious")
    (tmp / "link").symlink_to(tmp / "victim")
    (tmp / "binary").write_bytes(b"\xff\xfe\x00\x9c garbage")
    (tmp / "list.json").write_text("[]")
    (tmp / "null.json").write_text("null")
    (tmp / "deep.json").write_text("[" * 100_000)
    (tmp / "project").mkdir()
    (tmp / "project" / "task.yml").write_text(yaml.safe_dump(task))


# inputs a command reads: each is tried as every kind of bad path
BAD_INPUTS = ["missing", "adir", "dangling", "binary", "list.json", "null.json", "deep.json"]
READERS: dict[str, Callable[[Path, str], list[str]]] = {
    "validate": lambda t, p: ["validate", p, *AGENTS],
    "run": lambda t, p: ["run", p, "--local", "--state-dir", str(t / "state"), *AGENTS],
    "run --after": lambda t, p: [
        "run", str(t / "task.yml"), "--local", "--state-dir", str(t / "state"), "--after", p,
        *AGENTS,
    ],
    "collect": lambda t, p: ["collect", p],
    "render": lambda t, p: ["render", p, *AGENTS],
    "dotenv": lambda t, p: ["dotenv", p, "-f", str(t / "out.env")],
    "dispatch": lambda t, p: ["dispatch", p, *AGENTS],
    "dispatch --from-stackl": lambda t, p: ["dispatch", "--from-stackl", p, *AGENTS],
    "status": lambda t, p: ["status", p],
    "wait": lambda t, p: ["wait", p],
    "reports": lambda t, p: ["reports", p],
    "cancel": lambda t, p: ["cancel", p],
    "summarize": lambda t, p: ["summarize", "--parts", p],
    "plan": lambda t, p: [
        "plan", "--task-file", p, "--project-dir", str(t), "-f", str(t / "p" / "x.yml"), *AGENTS,
    ],
}  # fmt: skip

# outputs a command writes: each is tried as every kind of unusable place
BAD_OUTPUTS = ["blocker/out", "adir", "link", "dangling", "/proc/self/ra-out"]
WRITERS: dict[str, Callable[[Path, str], list[str]]] = {
    "run --report": lambda t, o: [
        "run", str(t / "task.yml"), "--local", "--state-dir", str(t / "state"), "--report", o,
        *AGENTS,
    ],
    "run --dotenv": lambda t, o: [
        "run", str(t / "task.yml"), "--local", "--state-dir", str(t / "state"), "--dotenv", o,
        *AGENTS,
    ],
    "run --html": lambda t, o: [
        "run", str(t / "task.yml"), "--local", "--state-dir", str(t / "state"), "--html", o,
        *AGENTS,
    ],
    "run --state-dir": lambda t, o: [
        "run", str(t / "task.yml"), "--local", "--state-dir", o, *AGENTS,
    ],
    "collect --summary": lambda t, o: ["collect", str(t / "report.json"), "--summary", o],
    "collect --html": lambda t, o: ["collect", str(t / "report.json"), "--html", o],
    "render -f": lambda t, o: ["render", str(t / "task.yml"), "-f", o, *AGENTS],
    "render --graph": lambda t, o: ["render", str(t / "task.yml"), "--graph", o, *AGENTS],
    "dotenv -f": lambda t, o: ["dotenv", str(t / "report.json"), "-f", o],
    "state --state-dir": lambda t, o: ["state", "nt/probe", "--state-dir", o],
}  # fmt: skip


def _place(tmp: Path, name: str) -> str:
    return name if name.startswith("/") else str(tmp / name)


def _check(argv: list[str], tmp: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)  # an exception escaping here is the traceback a user would see
    err = capsys.readouterr().err
    assert code in DOCUMENTED, (argv, code, err)
    assert "Traceback" not in err
    assert err.strip(), "a failure says why"
    assert (tmp / "victim").read_text() == "precious"  # no write went through a link
    return code, err


@pytest.fixture
def tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in ("GITLAB_CI", "CI_JOB_TOKEN", "GITLAB_URL", "GITLAB_TOKEN", "CI_SERVER_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no python-gitlab config of this machine
    monkeypatch.delenv("PYTHON_GITLAB_CFG", raising=False)
    _setup(tmp_path)
    return tmp_path


# documented successes: an empty folder of reports; a report to follow that is not there
# (the tasks are reported as skipped)
FINE = {("collect", "adir")} | {("run --after", bad) for bad in BAD_INPUTS if bad != "adir"}


def _bad_reads() -> list[tuple[str, str]]:
    return [(c, b) for c in sorted(READERS) for b in BAD_INPUTS if (c, b) not in FINE]


@pytest.mark.parametrize(("command", "bad"), _bad_reads())
def test_every_command_reading_a_bad_path_fails_cleanly(
    tmp: Path, capsys: pytest.CaptureFixture[str], command: str, bad: str
) -> None:
    code, _ = _check(READERS[command](tmp, _place(tmp, bad)), tmp, capsys)
    assert code != 0


# an (empty) folder is a fine state folder; a dangling link is one to read from, not to run in
UNUSABLE = [
    (command, bad)
    for command in sorted(WRITERS)
    for bad in BAD_OUTPUTS
    if not (command.endswith("--state-dir") and bad == "adir")
    and not (command == "state --state-dir" and bad == "dangling")
]


@pytest.mark.parametrize(("command", "bad"), UNUSABLE)
def test_every_command_writing_to_an_unusable_place_fails_cleanly(
    tmp: Path, capsys: pytest.CaptureFixture[str], command: str, bad: str
) -> None:
    argv = WRITERS[command](tmp, _place(tmp, bad))
    code, err = _check(argv, tmp, capsys)
    assert code == 2, err


@pytest.mark.parametrize("bad", sorted(b for c, b in FINE if c == "run --after"))
def test_a_bad_report_to_follow_is_a_clean_skip(
    tmp: Path, capsys: pytest.CaptureFixture[str], bad: str
) -> None:
    code = main(READERS["run --after"](tmp, _place(tmp, bad)))
    out, err = capsys.readouterr()
    assert code == 0 and "Traceback" not in err
    assert "skipped" in out


def test_run_with_an_unusable_report_path_runs_nothing(
    tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _check(WRITERS["run --report"](tmp, str(tmp / "link")), tmp, capsys)
    assert code == 2 and "symbolic link" in err
    assert not (tmp / "state" / "nt" / "probe.json").exists()


def test_run_with_a_link_at_the_report_s_junit_file_runs_nothing(
    tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp / "out").mkdir()
    (tmp / "out" / "r.junit.xml").symlink_to(tmp / "victim")
    code, err = _check(WRITERS["run --report"](tmp, str(tmp / "out" / "r.json")), tmp, capsys)
    assert code == 2 and "r.junit.xml" in err and "symbolic link" in err
    assert not (tmp / "state" / "nt" / "probe.json").exists()
    assert not (tmp / "out" / "r.json").exists()


def test_run_with_two_outputs_at_one_path_runs_nothing(
    tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    same = str(tmp / "out" / "x")
    argv = [*WRITERS["run --report"](tmp, same), "--dotenv", same]
    code, err = _check(argv, tmp, capsys)
    assert code == 2 and "--dotenv" in err and "--report" in err
    assert not (tmp / "state" / "nt" / "probe.json").exists()


def test_run_with_an_output_inside_the_state_folder_runs_nothing(
    tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = tmp / "state" / "nt" / "probe.json"
    state.parent.mkdir(parents=True)
    state.write_text('{"identity": "nt/probe"}')
    argv = [*WRITERS["run --report"](tmp, str(tmp / "out.json")), "--html", str(state)]
    code, err = _check(argv, tmp, capsys)
    assert code == 2 and "--html" in err and "inside the state folder" in err
    assert state.read_text() == '{"identity": "nt/probe"}'
