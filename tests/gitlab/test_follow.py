"""After submit: phases, status, wait (polling budget, deadline, progress), reports (one
request, or the collect jobs' artifacts), cancel (idempotent), and the CLI's exit codes."""

from __future__ import annotations

import io
import itertools
import json
import math
from pathlib import Path

import pytest
from fake_gitlab import CANARY_TOKEN, FakeGitLab
from gitlab_helpers import CANARY_SECRET, Clock, RunCli, kv_task, make_tasks

from runner_agent.core.errors import GitLabError, TaskFailed, TimedOut
from runner_agent.gitlab.bundle import DISPATCH_PACKAGE, dump
from runner_agent.gitlab.dispatch import Dispatcher, Handle
from runner_agent.gitlab.follow import NotFinished, Phase, progress_printer, to_phase
from runner_agent.model.agents import AgentRegistry
from runner_agent.report.model import Report, Status, merge_reports

DOCUMENTED = {
    "created": Phase.QUEUED,
    "waiting_for_resource": Phase.QUEUED,
    "preparing": Phase.QUEUED,
    "pending": Phase.QUEUED,
    "running": Phase.RUNNING,
    "success": Phase.SUCCEEDED,
    "failed": Phase.FAILED,
    "canceled": Phase.CANCELED,
    "skipped": Phase.SKIPPED,
    "manual": Phase.WAITING,
    "scheduled": Phase.QUEUED,
}


def test_every_documented_status_has_a_phase_and_the_unknown_raises() -> None:
    for status, phase in DOCUMENTED.items():
        assert to_phase(status) is phase
    assert {p for p in Phase if p.terminal} == {
        Phase.SUCCEEDED,
        Phase.FAILED,
        Phase.CANCELED,
        Phase.SKIPPED,
    }
    with pytest.raises(GitLabError, match="unknown pipeline status 'exploded'"):
        to_phase("exploded")


def summary(*statuses: Status) -> dict[str, object]:
    reports = [
        Report(f"acme/t{i}", "kv_file", "1.0.0", s, error="" if s is Status.SUCCESS else "boom")
        for i, s in enumerate(statuses)
    ]
    return merge_reports(reports)


def put_summary(fake: FakeGitLab, handle: Handle, *statuses: Status) -> None:
    """The dispatch's summary in the registry, as its last job uploads it."""
    fake.put_package(DISPATCH_PACKAGE, handle.dispatch_id, "summary.json", dump(summary(*statuses)))


@pytest.fixture
def handle(fake: FakeGitLab, dispatcher: Dispatcher, registry: AgentRegistry) -> Handle:
    submitted = dispatcher.submit(make_tasks(registry), ref="main")
    fake.calls.clear()
    return submitted


def test_status_reports_the_pipeline_and_its_children(
    fake: FakeGitLab, dispatcher: Dispatcher, handle: Handle
) -> None:
    fake.set_status(handle.pipeline_id, "running")
    child = fake.add_child(handle.pipeline_id, status="running")
    status = dispatcher.status(handle)
    assert status.phase is Phase.RUNNING and status.children[0].pipeline_id == child
    assert [c.route for c in fake.calls] == ["pipeline", "bridges"]
    assert status.to_dict()["children"][0]["status"] == "running"


def test_wait_polls_once_per_interval_with_backoff(
    fake: FakeGitLab, dispatcher: Dispatcher, handle: Handle, clock: Clock
) -> None:
    polls: list[float] = []

    def progress(status: object, elapsed: float) -> None:
        polls.append(elapsed)
        if len(polls) == 5:  # the next poll sees it finished
            fake.set_status(handle.pipeline_id, "success")

    final = dispatcher.wait(handle, interval=10, max_interval=30, progress=progress)
    assert final.phase is Phase.SUCCEEDED
    assert clock.sleeps[0] == 10 and clock.sleeps == sorted(clock.sleeps)  # growing
    assert max(clock.sleeps) <= 30
    assert len(fake.calls) == 6 == len(polls)  # one request per pause, children not asked
    gaps = [b - a for a, b in itertools.pairwise(polls)]
    assert min(gaps) >= 10


@pytest.mark.parametrize("ends_at", [3.0, 17.0, 95.0, 1000.0])
def test_wait_sees_the_end_within_a_quarter_of_the_time_waited(
    fake: FakeGitLab, dispatcher: Dispatcher, handle: Handle, clock: Clock, ends_at: float
) -> None:
    polls: list[float] = []

    def progress(status: object, elapsed: float) -> None:
        polls.append(elapsed)
        if elapsed >= ends_at:  # what this poll saw was already finished in GitLab
            fake.set_status(handle.pipeline_id, "success")

    final = dispatcher.wait(handle, interval=1, max_interval=60, progress=progress)
    before = [p for p in polls if p < ends_at]
    last_running = before[-1] if before else 0.0
    seen_at = next(p for p in polls if p >= ends_at)
    assert final.phase is Phase.SUCCEEDED
    # (the fake clock also moves while a request is in flight: a small margin)
    assert seen_at - last_running <= max(1.0, min(60.0, last_running / 4)) * 1.01 + 0.1
    # not one a second: a pause grows by a quarter each poll, up to max_interval
    assert len(polls) <= 7 + math.log(max(ends_at / 4, 1.0), 1.25) + ends_at / 60


def test_wait_times_out_with_exit_5_and_a_valid_handle(
    fake: FakeGitLab, dispatcher: Dispatcher, handle: Handle, clock: Clock
) -> None:
    with pytest.raises(TimedOut, match="still created after 60s") as caught:
        dispatcher.wait(handle, timeout=60, interval=10)
    assert caught.value.exit_code == 5 and sum(clock.sleeps) == 60
    assert len(fake.calls) <= 60 / 10 + 1


def test_wait_rides_out_transient_errors(
    fake: FakeGitLab, dispatcher: Dispatcher, handle: Handle
) -> None:
    fake.set_status(handle.pipeline_id, "failed")
    fake.inject("GET", "pipeline", "502", "reset", "429")
    assert dispatcher.wait(handle).phase is Phase.FAILED


def test_progress_rewrites_a_terminal_line_and_logs_only_changes_elsewhere(
    handle: Handle,
) -> None:
    from runner_agent.gitlab.follow import DispatchStatus

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    polls = [("pending", 5), ("running", 75), ("running", 78), ("success", 80)]
    phases = {"pending": Phase.QUEUED, "running": Phase.RUNNING, "success": Phase.SUCCEEDED}
    tty, log = Tty(), io.StringIO()
    for stream in (tty, log):
        show = progress_printer(stream)
        for state, elapsed in polls:
            show(DispatchStatus(handle, phases[state], state, ""), elapsed)
    assert "\r\x1b[2K" in tty.getvalue() and tty.getvalue().endswith("success (1m20s)\n")
    assert tty.getvalue().count("running") == 2  # every poll shows on a terminal
    pid = handle.pipeline_id
    assert log.getvalue().splitlines() == [  # a log gets the changes only, no escapes
        f"pipeline {pid}: pending (0m05s)",
        f"pipeline {pid}: running (1m15s)",
        f"pipeline {pid}: success (1m20s)",
    ]


def test_reports_take_one_request_when_the_summary_is_in_the_registry(
    fake: FakeGitLab, dispatcher: Dispatcher, handle: Handle
) -> None:
    put_summary(fake, handle, Status.SUCCESS, Status.SKIPPED)
    found = dispatcher.reports(handle)
    assert len(fake.calls) == 1 and fake.calls[0].route == "package"
    assert found.ok and found.exit_code == 0 and found.source == "registry"
    assert [r.identity for r in found.reports] == ["acme/t0", "acme/t1"]


def test_reports_survive_faults_and_follow_the_tasks(
    fake: FakeGitLab, dispatcher: Dispatcher, handle: Handle
) -> None:
    put_summary(fake, handle, Status.SUCCESS, Status.FAILED)
    fake.inject("GET", "package", "429", "500", "502", "503", "reset", "timeout!")
    found = dispatcher.reports(handle)
    assert not found.ok and found.exit_code == 1 and len(found.reports) == 2


def test_reports_fall_back_to_the_collect_jobs_artifacts(
    fake: FakeGitLab, dispatcher: Dispatcher, registry: AgentRegistry
) -> None:
    tasks = make_tasks(registry, kv_task("acme/a"), kv_task("acme/b"), kv_task("acme/c"))
    handle = dispatcher.submit(tasks, ref="main")
    fake.set_status(handle.pipeline_id, "failed")  # and its summary job never ran
    a = Report("acme/a", "kv_file", "1.0.0", Status.SUCCESS)
    b = Report("acme/b", "kv_file", "1.0.0", Status.FAILED, error="boom")
    stray = Report("acme/zzz", "kv_file", "1.0.0", Status.SUCCESS)  # not in the bundle
    fake.add_child(handle.pipeline_id, status="success", collect=merge_reports([a]))
    fake.add_child(handle.pipeline_id, status="failed", collect=merge_reports([b, stray]))
    found = dispatcher.reports(handle)
    assert found.source.startswith("artifacts") and found.exit_code == 1
    # every task of the bundle, once: acme/c reported nowhere is named, the stray is not counted
    assert [(r.identity, r.status) for r in found.reports] == [
        ("acme/a", Status.SUCCESS),
        ("acme/b", Status.FAILED),
        ("acme/c", Status.ERROR),
    ]
    assert found.summary["tasks"] == 3


def test_reports_after_a_cancel_read_what_the_task_jobs_uploaded(
    fake: FakeGitLab, dispatcher: Dispatcher, registry: AgentRegistry
) -> None:
    tasks = make_tasks(registry, kv_task("acme/a"), kv_task("acme/b"), kv_task("acme/c"))
    handle = dispatcher.submit(tasks, ref="main")
    fake.set_status(handle.pipeline_id, "canceled")  # no summary, no collect job ran
    first = ".runner-agent/tasks/0000.json[0]"
    lost = Report("acme/a", "kv_file", "1.0.0", Status.ERROR, source=first, finished="T1")
    done = Report("acme/a", "kv_file", "1.0.0", Status.SUCCESS, source=first, finished="T2")
    stopped = Report("acme/b", "kv_file", "1.0.0", Status.ERROR, error="interrupted")
    junk = {"identity": "acme/c"}  # any job token can upload; a report without status is none
    fake.put_package(DISPATCH_PACKAGE, handle.dispatch_id, "report-3.json", dump(junk))
    # job 5 was retried as job 7 (a runner failure): the retry's report is the task's
    for job, report in (("5", lost), ("7", done), ("9", stopped)):
        fake.put_package(
            DISPATCH_PACKAGE, handle.dispatch_id, f"report-{job}.json", dump(report.to_dict())
        )
    fake.calls.clear()

    found = dispatcher.reports(handle)

    assert found.source == "registry reports" and found.exit_code == 1
    assert [(r.identity, r.status, r.error) for r in found.reports] == [
        ("acme/a", Status.SUCCESS, ""),
        ("acme/b", Status.ERROR, "interrupted"),
        (
            "acme/c",
            Status.ERROR,
            "no report: the pipeline ended canceled before this task's job reported",
        ),
    ]
    routes = [c.route for c in fake.calls]
    assert routes.count("packages") == 1 and routes.count("package_files") == 1
    # 11: a pipeline without trigger jobs may be a small dispatch's: its jobs are listed once
    assert len(fake.calls) <= 11


def test_an_uploaded_report_holding_nan_is_not_a_report(
    fake: FakeGitLab, dispatcher: Dispatcher, registry: AgentRegistry
) -> None:
    handle = dispatcher.submit(make_tasks(registry, kv_task("acme/a")), ref="main")
    fake.set_status(handle.pipeline_id, "canceled")  # no summary: the uploads are read
    bad = Report("acme/a", "kv_file", "1.0.0", Status.SUCCESS, outputs={"n": 1.5}).to_dict()
    text = json.dumps(bad).replace("1.5", "NaN")  # any job token can upload this
    fake.put_package(DISPATCH_PACKAGE, handle.dispatch_id, "report-5.json", text.encode())

    with pytest.raises(TaskFailed, match="no task reported"):  # it is not taken as one
        dispatcher.reports(handle)


def test_reports_before_the_end_and_after_a_reportless_failure(
    fake: FakeGitLab, dispatcher: Dispatcher, handle: Handle
) -> None:
    fake.set_status(handle.pipeline_id, "running")
    with pytest.raises(NotFinished, match="no summary yet"):
        dispatcher.reports(handle)
    fake.set_status(handle.pipeline_id, "failed")
    with pytest.raises(TaskFailed, match="no task reported"):
        dispatcher.reports(handle)


def test_cancel_cancels_children_and_is_harmless_to_repeat(
    fake: FakeGitLab, dispatcher: Dispatcher, handle: Handle
) -> None:
    fake.set_status(handle.pipeline_id, "running")
    child = fake.add_child(handle.pipeline_id, status="running")
    assert dispatcher.cancel(handle).phase is Phase.CANCELED
    assert dispatcher.cancel(handle).phase is Phase.CANCELED
    assert fake.pipelines[child]["status"] == "canceled"
    assert len(fake.routed("cancel")) == 2


def test_a_handle_from_another_gitlab_is_refused(dispatcher: Dispatcher, handle: Handle) -> None:
    from runner_agent.core.errors import InvalidInput

    other = Handle("https://elsewhere", "42", 1, handle.dispatch_id, "main")
    with pytest.raises(InvalidInput, match="belongs to https://elsewhere"):
        dispatcher.status(other)


# --- the CLI, from another process's point of view ---------------------------------------


def test_cli_round_trip_with_a_handle_file_and_exit_codes(
    fake: FakeGitLab,
    run_cli: RunCli,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setenv("RA_SECRET_DB_PASSWORD", CANARY_SECRET)
    task = tmp_path / "t.yml"
    task.write_text(json.dumps(kv_task()))
    code, out, err = run_cli("dispatch", str(task), "-p", "42", "--ref", "main", "-o", "json")
    assert code == 0
    handle = Handle.decode(out)
    handle_file = tmp_path / "handle.json"
    handle_file.write_text(out)
    printed = [out, err]

    fake.set_status(handle.pipeline_id, "running")
    code, out, err = run_cli("status", str(handle_file), "-o", "json")
    assert code == 0 and json.loads(out)["phase"] == "running"
    code, out, err = run_cli("reports", out and handle.encode())
    assert code == 1 and "no summary yet" in err
    code, out, err = run_cli("wait", str(handle_file), "--timeout", "2s", "--interval", "1")
    assert code == 5 and "still running" in err
    printed += [out, err]

    fake.set_status(handle.pipeline_id, "failed")
    put_summary(fake, handle, Status.SUCCESS, Status.FAILED)
    code, out, err = run_cli("wait", handle.encode())
    assert code == 1 and "acme/t1" in out and "boom" in out
    printed += [out, err]
    code, out, err = run_cli("reports", str(handle_file), "-o", "json")
    assert code == 1 and json.loads(out)["status"] == "failed"
    code, out, err = run_cli("cancel", str(handle_file))
    assert code == 0 and "failed" in out  # finished: cancel changes nothing
    printed += [out, err, caplog.text]
    stored = [data.decode() for files in fake.packages.values() for data in files]
    stored += [p.read_text() for p in (tmp_path / "cache").rglob("*.json")]  # the ledger
    assert stored
    for text in printed + stored:
        assert CANARY_TOKEN not in text and CANARY_SECRET not in text


def test_cli_reports_html_writes_the_page_beside_the_table(
    fake: FakeGitLab, run_cli: RunCli, handle: Handle, tmp_path: Path
) -> None:
    put_summary(fake, handle, Status.SUCCESS, Status.FAILED)
    page = tmp_path / "out" / "report.html"
    code, out, _ = run_cli("reports", handle.encode(), "--html", str(page))
    assert code == 1 and "acme/t1" in out  # exit code and table as without --html
    text = page.read_text(encoding="utf-8")
    assert f"<title>runner-agent dispatch {handle.dispatch_id}</title>" in text
    assert '<details class="task s-failed" id="task-2" open>' in text and "boom" in text
    assert CANARY_TOKEN not in text


def test_cli_handle_problems_are_exit_2_and_gitlab_problems_exit_4(
    fake: FakeGitLab, run_cli: RunCli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = run_cli("status", str(tmp_path / "missing.json"))
    assert code == 2 and "HANDLE" in err
    code, _, err = run_cli("status", '{"gitlab_url": "http://localhost"}')
    assert code == 2
    handle = Handle("http://localhost", "42", 99999, "20250101t000000-abc-def", "main")
    code, _, err = run_cli("status", handle.encode())
    assert code == 4 and "404" in err
    monkeypatch.setenv("GITLAB_TOKEN", "wrong-" + CANARY_TOKEN)
    code, _, err = run_cli("status", handle.encode())
    assert code == 4 and "refused the token" in err and CANARY_TOKEN not in err


def test_a_handle_never_chooses_where_the_token_goes(
    fake: FakeGitLab, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = Handle("http://collector.invalid", "42", 7, "20250101t000000-abc-def", "main")
    monkeypatch.delenv("GITLAB_URL")  # a token, and no GitLab named with it
    calls = len(fake.calls)
    code, _, err = run_cli("status", elsewhere.encode())
    assert code == 2 and "GITLAB_URL" in err and len(fake.calls) == calls
    monkeypatch.setenv("GITLAB_URL", "http://localhost/")  # the configured GitLab wins
    code, _, err = run_cli("status", elsewhere.encode())
    assert code == 2 and "belongs to http://collector.invalid" in err
    assert len(fake.calls) == calls and CANARY_TOKEN not in err
    same = Handle("http://LOCALHOST/api/v4/", "42", 7, "20250101t000000-abc-def", "main")
    code, _, err = run_cli("status", same.encode())
    assert code == 4 and "404" in err  # the same GitLab, spelled differently: asked


def test_cli_dispatch_wait_prints_the_reports(
    fake: FakeGitLab, run_cli: RunCli, tmp_path: Path, registry: AgentRegistry
) -> None:
    # the fake's pipelines finish when created, and a summary is waiting for them
    original = fake._do_create_pipeline_post

    def create_and_finish(m: object, call: object) -> object:
        answer = original(m, call)  # type: ignore[arg-type]
        body = json.loads(answer[2])
        fake.set_status(body["id"], "success")
        dispatch_id = fake.pipelines[body["id"]]["name"].split(" ", 1)[1]  # not in the answer
        fake.put_package(
            DISPATCH_PACKAGE, dispatch_id, "summary.json", dump(summary(Status.SUCCESS))
        )
        return answer

    fake._do_create_pipeline_post = create_and_finish  # type: ignore[method-assign]
    task = tmp_path / "t.yml"
    task.write_text(json.dumps(kv_task()))
    code, out, _ = run_cli(
        "dispatch", str(task), "-p", "42", "--ref", "main", "--wait", "-o", "json"
    )
    assert code == 0 and json.loads(out)["status"] == "success"
