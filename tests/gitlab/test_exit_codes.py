"""A dispatch exits as a local run of its tasks would (issue 11, point 6): ``wait``,
``reports`` and ``dispatch --wait`` with the worst task outcome, 3 locked and 5 timed out."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_gitlab import FakeGitLab
from gitlab_helpers import RunCli, kv_task, make_tasks

from runner_agent.gitlab.bundle import DISPATCH_PACKAGE, dump
from runner_agent.gitlab.dispatch import Dispatcher, Handle
from runner_agent.model.agents import AgentRegistry
from runner_agent.report.model import Report, Status, merge_reports


def summary(*reports: Report) -> bytes:
    return dump(merge_reports(list(reports)))


def task(n: int, status: Status, *, timed_out: bool = False) -> Report:
    return Report(f"acme/t{n}", "kv_file", "1.0", status, error="boom", timed_out=timed_out)


LOCKED = summary(task(0, Status.SUCCESS), task(1, Status.LOCKED), task(2, Status.FAILED))
TIMED_OUT = summary(task(0, Status.LOCKED), task(1, Status.ERROR, timed_out=True))


@pytest.fixture
def handle(fake: FakeGitLab, dispatcher: Dispatcher, registry: AgentRegistry) -> Handle:
    submitted = dispatcher.submit(make_tasks(registry), ref="main")
    fake.set_status(submitted.pipeline_id, "failed")
    return submitted


@pytest.mark.parametrize(("stored", "code"), [(LOCKED, 3), (TIMED_OUT, 5)], ids=["3", "5"])
def test_wait_exits_with_the_worst_task_outcome(
    fake: FakeGitLab, run_cli: RunCli, handle: Handle, stored: bytes, code: int
) -> None:
    fake.put_package(DISPATCH_PACKAGE, handle.dispatch_id, "summary.json", stored)
    assert run_cli("wait", handle.encode())[0] == code


@pytest.mark.parametrize(("stored", "code"), [(LOCKED, 3), (TIMED_OUT, 5)], ids=["3", "5"])
def test_reports_exit_with_the_worst_task_outcome(
    fake: FakeGitLab, run_cli: RunCli, handle: Handle, stored: bytes, code: int
) -> None:
    fake.put_package(DISPATCH_PACKAGE, handle.dispatch_id, "summary.json", stored)
    assert run_cli("reports", handle.encode(), "-o", "json")[0] == code


def test_dispatch_wait_exits_3_when_a_task_was_locked(
    fake: FakeGitLab, run_cli: RunCli, tmp_path: Path
) -> None:
    original = fake._do_create_pipeline_post

    def create_and_finish(m: object, call: object) -> object:  # the pipeline ends at once
        answer = original(m, call)  # type: ignore[arg-type]
        body = json.loads(answer[2])
        fake.set_status(body["id"], "failed")
        sent = json.loads(call.body)  # type: ignore[attr-defined]
        dispatch_id = sent["inputs"]["dispatch_id"]  # the creation answer has no name
        fake.put_package(DISPATCH_PACKAGE, dispatch_id, "summary.json", LOCKED)
        return answer

    fake._do_create_pipeline_post = create_and_finish  # type: ignore[method-assign]
    path = tmp_path / "t.yml"
    path.write_text(json.dumps(kv_task()))
    code, out, _ = run_cli("dispatch", str(path), "-p", "42", "--ref", "main", "--wait")
    assert code == 3 and "locked" in out
