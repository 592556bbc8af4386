"""dispatch --plan against the GitLab stand-in: what is sent, the phase while a child pipeline
waits at its approval gates (parent and trigger job running, child manual), wait's timeouts,
who may start a gate, and the CLI's bad combinations (exit 2, nothing sent)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_gitlab import CANARY_TOKEN, FakeGitLab
from gitlab_helpers import Clock, RunCli, kv_task, make_tasks, write_tasks

from runner_agent.core.errors import InvalidInput, TimedOut
from runner_agent.gitlab.bundle import DISPATCH_PACKAGE, read_bundle
from runner_agent.gitlab.dispatch import Dispatcher, Handle, TriggerMode
from runner_agent.gitlab.follow import Phase, progress_printer
from runner_agent.model.agents import AgentRegistry
from runner_agent.pipeline.render import environment_name, gate_name


@pytest.fixture
def planned(fake: FakeGitLab, dispatcher: Dispatcher, registry: AgentRegistry) -> Handle:
    handle = dispatcher.submit(make_tasks(registry), ref="main", plan_first=True)
    fake.calls.clear()
    return handle


def gated(fake: FakeGitLab, handle: Handle, *identities: str) -> int:
    gates = {gate_name(i): environment_name(i) for i in identities or ("acme/web",)}
    return fake.add_gated_child(handle.pipeline_id, gates)


def play(fake: FakeGitLab, job_id: int) -> tuple[int, dict[str, object]]:
    """A person starts a manual job (POST /projects/:id/jobs/:job_id/play, doc/api/jobs.md)."""
    status, _, body = fake.handle(
        "POST",
        f"{fake.base}/api/v4/projects/42/jobs/{job_id}/play",
        {"PRIVATE-TOKEN": CANARY_TOKEN},
        b"",
    )
    return status, json.loads(body)


def test_a_planned_dispatch_says_so_in_its_bundle_and_input(
    fake: FakeGitLab, dispatcher: Dispatcher, registry: AgentRegistry
) -> None:
    handle = dispatcher.submit(make_tasks(registry), ref="main", plan_first=True)
    body = fake.routed("create_pipeline")[0].json()
    assert body["inputs"]["plan_first"] is True
    assert "one_job" not in body["inputs"]  # one task fits one job; the plan needs its own
    data = fake.package(DISPATCH_PACKAGE, handle.dispatch_id, "bundle.json")
    assert data is not None
    assert read_bundle(data, handle.dispatch_id, body["inputs"]["checksum"], registry).plan_first
    assert handle.plan and Handle.decode(handle.encode()).plan


def test_variables_mode_carries_it_as_ra_plan_first(
    fake: FakeGitLab, api: object, clock: Clock, registry: AgentRegistry
) -> None:
    dispatcher = Dispatcher(api=api, mode=TriggerMode.VARIABLES, clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]
    dispatcher.submit(make_tasks(registry), ref="main", plan_first=True)
    variables = {
        v["key"]: v["value"] for v in fake.routed("create_pipeline")[0].json()["variables"]
    }
    assert variables["RA_PLAN_FIRST"] == "true"


def test_an_unplanned_dispatch_sends_no_plan_input_and_its_handle_reads_as_before(
    fake: FakeGitLab, dispatcher: Dispatcher, registry: AgentRegistry
) -> None:
    handle = dispatcher.submit(make_tasks(registry), ref="main")
    assert "plan_first" not in fake.routed("create_pipeline")[0].json()["inputs"]
    assert "plan" not in json.loads(handle.encode()) and not handle.plan


def test_a_planned_run_never_joins_an_unplanned_one_in_flight(
    fake: FakeGitLab, run_cli: RunCli, tmp_path: Path
) -> None:
    tasks = write_tasks(tmp_path / "t.yml", kv_task())
    assert run_cli("dispatch", str(tasks), "-p", "42", "--ref", "main")[0] == 0
    code, _, err = run_cli("dispatch", str(tasks), "-p", "42", "--ref", "main", "--plan")
    assert code == 3, err  # a different run on the identity: it would apply ungated
    assert len(fake.created_pipelines()) == 1


def test_a_gated_child_is_waiting_for_approval_while_gitlab_says_running(
    fake: FakeGitLab, dispatcher: Dispatcher, planned: Handle
) -> None:
    child = gated(fake, planned)
    assert fake.pipelines[planned.pipeline_id]["status"] == "running"
    assert fake.bridges[planned.pipeline_id][0]["status"] == "running"
    status = dispatcher.status(planned)
    assert status.phase is Phase.APPROVAL and status.status == "running"
    assert status.phase.label == "waiting for approval"
    assert status.children[0].pipeline_id == child and status.children[0].status == "manual"


def test_a_running_child_is_running(
    fake: FakeGitLab, dispatcher: Dispatcher, planned: Handle
) -> None:
    fake.set_status(planned.pipeline_id, "running")
    fake.add_child(planned.pipeline_id, status="running")
    assert dispatcher.status(planned).phase is Phase.RUNNING


def test_the_gates_of_a_split_dispatch_are_found_a_level_down(
    fake: FakeGitLab, dispatcher: Dispatcher, planned: Handle
) -> None:
    fake.set_status(planned.pipeline_id, "running")
    index = fake.add_child(planned.pipeline_id, status="running")
    fake.add_gated_child(index, {gate_name("acme/web"): environment_name("acme/web")})
    assert dispatcher.status(planned, children=False).phase is Phase.APPROVAL


def test_wait_does_not_count_the_approval_against_its_timeout(
    fake: FakeGitLab, dispatcher: Dispatcher, planned: Handle, clock: Clock
) -> None:
    child = gated(fake, planned)
    seen: list[Phase] = []

    def progress(status: object, elapsed: float) -> None:
        seen.append(status.phase)  # type: ignore[attr-defined]
        if clock.now - start > 3 * 3600:  # approved after three hours, then it finishes
            (gate,) = fake.jobs[child]
            if gate["status"] == "manual":
                assert play(fake, int(gate["id"]))[0] == 200
                fake.set_status(planned.pipeline_id, "success")

    start = clock.now
    final = dispatcher.wait(planned, timeout=60, interval=10, progress=progress)
    assert final.phase is Phase.SUCCEEDED
    assert seen.count(Phase.APPROVAL) > 10 and seen[-1] is Phase.SUCCEEDED


def test_wait_still_times_out_on_a_run_that_runs_too_long(
    fake: FakeGitLab, dispatcher: Dispatcher, planned: Handle
) -> None:
    fake.set_status(planned.pipeline_id, "running")
    with pytest.raises(TimedOut, match="still running after 60s"):
        dispatcher.wait(planned, timeout=60, interval=10)


def test_approval_timeout_gives_up_on_the_approval_only(
    fake: FakeGitLab, dispatcher: Dispatcher, planned: Handle, clock: Clock
) -> None:
    gated(fake, planned)
    start = clock.now
    with pytest.raises(TimedOut, match="waited for approval longer than 1800s") as caught:
        dispatcher.wait(planned, timeout=60, approval_timeout=1800, interval=10)
    assert caught.value.exit_code == 5
    assert 1800 <= clock.now - start <= 1800 + 60  # no poll sleeps past the limit


def test_protected_environments_decide_who_may_start_a_gate(
    fake: FakeGitLab, planned: Handle
) -> None:
    child = gated(fake, planned, "acme/web", "acme/db")
    web, db = fake.jobs[child]
    fake.protected_environments = {environment_name("acme/web"): False}
    assert play(fake, int(web["id"])) == (403, {"message": "403 Forbidden"})
    assert play(fake, int(db["id"]))[0] == 200
    assert fake.pipelines[child]["status"] == "manual"  # acme/web still waits
    assert play(fake, int(db["id"]))[0] == 400  # played already: "Unplayable Job"
    fake.protected_environments = {environment_name("acme/web"): True}
    assert play(fake, int(web["id"]))[0] == 200
    assert fake.pipelines[child]["status"] == "running"


def test_status_and_wait_show_waiting_for_approval(
    fake: FakeGitLab, run_cli: RunCli, planned: Handle, tmp_path: Path
) -> None:
    gated(fake, planned)
    handle_file = tmp_path / "handle.json"
    handle_file.write_text(planned.encode())
    code, out, _ = run_cli("status", str(handle_file))
    assert code == 0 and "waiting for approval (running)" in out
    code, out, _ = run_cli("status", str(handle_file), "-o", "json")
    assert json.loads(out)["phase"] == "waiting_for_approval"
    code, _, err = run_cli("wait", str(handle_file), "--approval-timeout", "30s", "--interval", "1")
    assert code == 5 and "waited for approval" in err
    assert "waiting for approval" in err  # the progress line


def test_progress_names_the_approval_once_in_a_log(
    fake: FakeGitLab, dispatcher: Dispatcher, planned: Handle
) -> None:
    import io

    gated(fake, planned)
    stream = io.StringIO()
    show = progress_printer(stream)
    status = dispatcher.status(planned, children=False)
    show(status, 5)
    show(status, 15)
    assert stream.getvalue().count("waiting for approval") == 1


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--plan", "--check"], "--plan"),
        (["--approval-timeout", "1h"], "--approval-timeout"),
        (["--plan", "--approval-timeout", "1h"], "--approval-timeout"),
        (["--plan", "--wait", "--approval-timeout", "soon"], "--approval-timeout"),
    ],
)
def test_bad_combinations_exit_2_and_send_nothing(
    fake: FakeGitLab, run_cli: RunCli, tmp_path: Path, flags: list[str], named: str
) -> None:
    tasks = write_tasks(tmp_path / "t.yml", kv_task())
    code, _, err = run_cli("dispatch", str(tasks), "-p", "42", "--ref", "main", *flags)
    assert code == 2 and named in err, err
    assert not fake.calls


def test_plan_with_from_stackl_exits_2(fake: FakeGitLab, run_cli: RunCli, tmp_path: Path) -> None:
    invocation = tmp_path / "invocation.json"
    invocation.write_text("{}")
    code, _, err = run_cli("dispatch", "--from-stackl", str(invocation), "-p", "42", "--plan")
    assert code == 2 and "STACKL waits for a result, not a person" in err
    assert not fake.calls


def test_cli_dispatch_plan_prints_a_planned_handle(
    fake: FakeGitLab, run_cli: RunCli, tmp_path: Path
) -> None:
    tasks = write_tasks(tmp_path / "t.yml", kv_task())
    code, out, err = run_cli(
        "dispatch", str(tasks), "-p", "42", "--ref", "main", "--plan", "-o", "json"
    )
    assert code == 0, err
    assert json.loads(out)["plan"] is True
    assert fake.routed("create_pipeline")[0].json()["inputs"]["plan_first"] is True


@pytest.mark.parametrize("input_value", ["false", ""])
def test_the_plan_job_gates_when_the_bundle_asks_whatever_the_input(
    fake: FakeGitLab,
    run_cli: RunCli,
    registry: AgentRegistry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    input_value: str,
) -> None:
    from gitlab_helpers import JOB_ENV

    from runner_agent.gitlab.bundle import build_bundle

    bundle = build_bundle(make_tasks(registry), ref="main", plan_first=True)
    fake.put_package(DISPATCH_PACKAGE, bundle.dispatch_id, "bundle.json", bundle.data)
    for key, value in {**JOB_ENV, "RA_DISPATCH_ID": bundle.dispatch_id}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("RA_PLAN_FIRST", input_value)  # the input left at its default
    monkeypatch.delenv("GITLAB_TOKEN")
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(
        "plan", "--dispatch-id", bundle.dispatch_id, "--checksum", bundle.checksum
    )
    assert code == 0, err
    text = (tmp_path / ".runner-agent" / "pipeline.yml").read_text()
    assert gate_name("acme/web") in text and "when: manual" in text


def test_a_bundle_whose_plan_first_is_not_a_boolean_is_refused(registry: AgentRegistry) -> None:
    from runner_agent.gitlab.bundle import build_bundle, checksum, dump

    bundle = build_bundle(make_tasks(registry), ref="main")
    document = json.loads(bundle.data) | {"plan_first": "yes"}
    data = dump(document)
    with pytest.raises(InvalidInput, match="plan_first: must be true or false"):
        read_bundle(data, bundle.dispatch_id, checksum(data), registry)
    unplanned = build_bundle(make_tasks(registry), ref="main")
    planned = build_bundle(make_tasks(registry), ref="main", plan_first=True)
    assert unplanned.signature != planned.signature  # never the same run
