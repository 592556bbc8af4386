"""Inside a GitLab job: fetch and verify the bundle with the job token, keep state in the
registry, upload reports and summaries (a failed upload is said, never fatal), summarize."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_gitlab import CANARY_TOKEN, FakeGitLab
from gitlab_helpers import JOB_ENV, Clock, RunCli, kv_task, make_tasks

from runner_agent.core.errors import InvalidInput
from runner_agent.gitlab.api import connect
from runner_agent.gitlab.bundle import (
    DISPATCH_PACKAGE,
    build_bundle,
    dump,
    fetch_bundle_tasks,
    job_context,
    parse_bundle,
    publish_reports,
    publish_summary,
    summarize,
)
from runner_agent.gitlab.retry import RetryPolicy
from runner_agent.gitlab.state_store import STATE_PACKAGE, GitLabStateStore, state_version
from runner_agent.model.agents import AgentRegistry
from runner_agent.model.state import LocalStateStore, State, UnreadableState
from runner_agent.report.model import Report, Status, merge_reports


@pytest.fixture
def job_env(clock: Clock) -> dict[str, str]:
    return dict(JOB_ENV)


def job_api(clock: Clock, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return connect(env or JOB_ENV, retry_policy=RetryPolicy(sleep=clock.sleep))


def test_bundle_round_trip_and_every_refusal(registry: AgentRegistry) -> None:
    bundle = build_bundle(make_tasks(registry, kv_task(), kv_task("acme/db")), ref="main")
    tasks = parse_bundle(bundle.data, bundle.dispatch_id, bundle.checksum, registry)
    assert [t.identity for t in tasks] == ["acme/web", "acme/db"]
    assert bundle.identities == ("acme/db", "acme/web") and bundle.tasks == 2
    with pytest.raises(InvalidInput, match="checksum mismatch"):
        parse_bundle(bundle.data + b" ", bundle.dispatch_id, bundle.checksum, registry)
    other = build_bundle(make_tasks(registry), ref="main")
    with pytest.raises(InvalidInput, match="another dispatch"):
        parse_bundle(other.data, bundle.dispatch_id, other.checksum, registry)
    with pytest.raises(InvalidInput, match="not a dispatch id"):
        parse_bundle(bundle.data, "../etc", bundle.checksum, registry)
    with pytest.raises(InvalidInput, match="sha256"):
        parse_bundle(bundle.data, bundle.dispatch_id, "md5:abc", registry)
    forged = dump({"apiVersion": "v0", "dispatch_id": bundle.dispatch_id, "tasks": []})
    from runner_agent.gitlab.bundle import checksum

    with pytest.raises(InvalidInput, match="runner-agent/v1"):
        parse_bundle(forged, bundle.dispatch_id, checksum(forged), registry)


def test_the_plan_job_fetches_the_bundle_with_its_job_token(
    fake: FakeGitLab, clock: Clock, registry: AgentRegistry
) -> None:
    bundle = build_bundle(make_tasks(registry), ref="main")
    fake.put_package(DISPATCH_PACKAGE, bundle.dispatch_id, "bundle.json", bundle.data)
    fake.inject("GET", "package", "503", "reset")
    tasks = fetch_bundle_tasks(
        bundle.dispatch_id, bundle.checksum, environ=JOB_ENV, registry=registry, api=job_api(clock)
    )
    assert tasks[0].identity == "acme/web"
    assert fake.calls[-1].headers["JOB-TOKEN"] == CANARY_TOKEN
    with pytest.raises(InvalidInput, match="not in the package registry"):
        fetch_bundle_tasks(
            "20250101t000000-00-00", bundle.checksum, environ=JOB_ENV, api=job_api(clock)
        )


def test_job_context_only_inside_a_job(fake: FakeGitLab) -> None:
    assert job_context({}) is None
    assert job_context({**JOB_ENV, "GITLAB_CI": "false"}) is None
    ctx = job_context({**JOB_ENV, "RA_DISPATCH_ID": "d-1"})
    assert ctx is not None and ctx.dispatch_id == "d-1" and ctx.job_id == "777"
    assert job_context(JOB_ENV).dispatch_id is None  # type: ignore[union-attr]
    with pytest.raises(InvalidInput):
        job_context({**JOB_ENV, "RA_DISPATCH_ID": "$(reboot)"})


def test_reports_and_summaries_are_uploaded_and_failures_only_warned(
    fake: FakeGitLab, clock: Clock
) -> None:
    ctx = job_context({**JOB_ENV, "RA_DISPATCH_ID": "d-1"}, api=job_api(clock))
    assert ctx is not None
    said: list[str] = []
    report = Report("acme/web", "kv_file", "1.0.0", Status.SUCCESS).to_dict()
    assert publish_reports([report], ctx, said.append)
    assert (
        json.loads(fake.package(DISPATCH_PACKAGE, "d-1", "report-777.json") or b"")["identity"]
        == "acme/web"
    )
    assert publish_summary(".runner-agent/summary-2.json", {"reports": []}, ctx, said.append)
    assert fake.package(DISPATCH_PACKAGE, "d-1", "summary-2.json") is not None
    assert not publish_summary("../../evil.json", {}, ctx, said.append)
    fake.inject("PUT", "package", *["503"] * 7)
    assert not publish_reports([report], ctx, said.append)
    assert said[-1].startswith("warning: could not upload the report") and "artifacts" in said[-1]
    assert CANARY_TOKEN not in "".join(said)
    manual = job_context(JOB_ENV, api=job_api(clock))
    assert manual is not None and not publish_reports([report], manual, said.append)
    assert publish_reports([report, report], ctx, said.append)
    assert fake.package(DISPATCH_PACKAGE, "d-1", "report-777-1.json") is not None


def _summary(*identities: str) -> bytes:
    return dump(merge_reports([Report(i, "kv_file", None, Status.SUCCESS) for i in identities]))


def test_summarize_merges_the_parts_and_names_the_missing(
    fake: FakeGitLab, clock: Clock, registry: AgentRegistry
) -> None:
    bundle = build_bundle(
        make_tasks(registry, kv_task("a/1"), kv_task("a/2"), kv_task("a/3")), ref="main"
    )
    fake.put_package(DISPATCH_PACKAGE, bundle.dispatch_id, "bundle.json", bundle.data)
    fake.put_package(DISPATCH_PACKAGE, bundle.dispatch_id, "summary-1.json", _summary("a/1"))
    fake.put_package(DISPATCH_PACKAGE, bundle.dispatch_id, "summary-2.json", _summary("a/3"))
    ctx = job_context({**JOB_ENV, "RA_DISPATCH_ID": bundle.dispatch_id}, api=job_api(clock))
    assert ctx is not None
    merged = summarize(ctx)
    assert merged["tasks"] == 3 and merged["status"] == "error"
    assert merged["failed"] == [
        {
            "identity": "a/2",
            "commands": [],
            "status": "error",
            "error": "no report arrived from its job",
        }
    ]
    stored = json.loads(fake.package(DISPATCH_PACKAGE, bundle.dispatch_id, "summary.json") or b"")
    assert stored == merged


def test_summarize_cli_in_a_job(
    fake: FakeGitLab,
    run_cli: RunCli,
    registry: AgentRegistry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bundle = build_bundle(make_tasks(registry), ref="main")
    fake.put_package(DISPATCH_PACKAGE, bundle.dispatch_id, "bundle.json", bundle.data)
    fake.put_package(DISPATCH_PACKAGE, bundle.dispatch_id, "summary.json", _summary("acme/web"))
    for key, value in {**JOB_ENV, "RA_DISPATCH_ID": bundle.dispatch_id}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("GITLAB_TOKEN")
    out_file = tmp_path / "s.json"
    code, out, _ = run_cli("summarize", "--file", str(out_file))
    assert code == 0 and "acme/web" in out and json.loads(out_file.read_text())["tasks"] == 1
    monkeypatch.delenv("GITLAB_CI")
    code, _, err = run_cli("summarize")
    assert code == 2 and "inside a GitLab job" in err


def test_summarize_cli_html_writes_the_page(
    fake: FakeGitLab,
    run_cli: RunCli,
    registry: AgentRegistry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bundle = build_bundle(make_tasks(registry, kv_task(), kv_task("acme/db")), ref="main")
    fake.put_package(DISPATCH_PACKAGE, bundle.dispatch_id, "bundle.json", bundle.data)
    fake.put_package(DISPATCH_PACKAGE, bundle.dispatch_id, "summary.json", _summary("acme/web"))
    for key, value in {**JOB_ENV, "RA_DISPATCH_ID": bundle.dispatch_id}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("GITLAB_TOKEN")  # the job token is enough
    page = tmp_path / "report.html"
    code, _, _ = run_cli("summarize", "--file", str(tmp_path / "s.json"), "--html", str(page))
    assert code == 1  # acme/db never reported
    text = page.read_text(encoding="utf-8")
    assert f"runner-agent dispatch {bundle.dispatch_id}" in text
    assert '<details class="task s-error" id="task-2" open>' in text
    assert "no report arrived from its job" in text and "acme/web" in text


# --- state ---------------------------------------------------------------------------------


def test_state_versions_are_valid_and_one_to_one() -> None:
    assert state_version("acme/web") == "acme+web"
    assert state_version("acme.web") != state_version("acme/web")
    long = "a" * 150 + "/" + "b" * 150
    assert len(state_version(long)) <= 200 and state_version(long) != state_version(long + "c")


def test_gitlab_state_store_round_trip_with_the_job_token(fake: FakeGitLab, clock: Clock) -> None:
    store = GitLabStateStore(job_api(clock))
    assert store.read("acme/web") is None
    state = State(
        "acme/web",
        agent="kv_file",
        installed=True,
        installed_version="1.0.0",
        outputs={"url": "http://web"},
    )
    store.write(state)
    state.last_status = "success"
    store.write(state)
    assert store.read("acme/web") == state  # the latest of the two files
    assert (
        fake.calls[-1].path == f"/projects/42/packages/generic/{STATE_PACKAGE}/acme+web/state.json"
    )
    fake.put_package(STATE_PACKAGE, "acme+db", "state.json", b'{"identity": "someone/else"}')
    with pytest.raises(UnreadableState, match="holds identity 'someone/else', not 'acme/db'"):
        store.read("acme/db")
    fake.put_package(STATE_PACKAGE, "acme+x", "state.json", b"<html>")
    with pytest.raises(UnreadableState, match=r"acme\+x/state\.json: not JSON"):
        store.read("acme/x")


def test_state_cli_reads_gitlab_or_a_local_folder(
    fake: FakeGitLab, run_cli: RunCli, tmp_path: Path
) -> None:
    fake.put_package(
        STATE_PACKAGE,
        "acme+web",
        "state.json",
        dump(State("acme/web", agent="kv_file", outputs={"port": 8080}).to_dict()),
    )
    code, out, _ = run_cli("state", "acme/web", "-p", "42")
    assert code == 0 and "port = 8080" in out
    code, out, _ = run_cli("state", "acme/web", "-p", "42", "-o", "json")
    assert json.loads(out)["agent"] == "kv_file"
    code, _, err = run_cli("state", "acme/none", "--state-dir", str(tmp_path))
    assert code == 2 and "no state yet" in err
    LocalStateStore(tmp_path / "local").write(State("acme/web", agent="kv_file", outputs={"n": 1}))
    calls = len(fake.calls)
    with pytest.MonkeyPatch.context() as env:  # as `run --local` is told where its state is
        env.setenv("RUNNER_AGENT_STATE_DIR", str(tmp_path / "local"))
        code, out, _ = run_cli("state", "acme/web", "-p", "42")
        assert code == 0 and "port = 8080" in out  # the folder alone switches nothing
        calls = len(fake.calls)
        env.setenv("RUNNER_AGENT_LOCAL", "1")
        code, out, _ = run_cli("state", "acme/web")
    assert code == 0 and "n = 1" in out and len(fake.calls) == calls  # GitLab not asked
