"""The dispatcher's choice of the one-job path (``one_job``) and what it sends for it; the
shipped pipelines' inputs accept exactly what it sends."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from fake_gitlab import FakeGitLab
from gitlab_helpers import JOB_ENV, RunCli, kv_task, make_tasks
from hypothesis import given, settings
from hypothesis import strategies as st

from runner_agent.core.resources import templates_dir
from runner_agent.gitlab.bundle import BUNDLE_FILE, DISPATCH_PACKAGE
from runner_agent.gitlab.dispatch import (
    VARIABLES_TIMEOUT,
    Dispatcher,
    TriggerMode,
    one_job,
)
from runner_agent.model.agents import AgentRegistry, default_registry
from runner_agent.pipeline.ci_schema import MAX_JOB_TIMEOUT
from runner_agent.pipeline.grouping import lock_shard

TEMPLATES = ["agent-project.gitlab-ci.yml", "component/templates/agent.yml"]


def _inputs(name: str) -> dict[str, Any]:
    header = next(yaml.safe_load_all((templates_dir() / name).read_text()))
    return dict(header["spec"]["inputs"])


def test_one_task_is_one_job_on_its_tags_and_its_identitys_shard(
    registry: AgentRegistry,
) -> None:
    tasks = make_tasks(registry, kv_task(runner={"tags": ["linux", "site/a"]}, timeout="10m"))
    job = one_job(tasks, TriggerMode.INPUTS)
    assert job is not None
    assert (job.tags, job.lock) == (("linux", "site/a"), lock_shard("acme/web", 16))
    assert job.timeout_text() == "15m"  # the task's 10m and the task jobs' 5m margin


def test_what_does_not_fit_in_one_job_takes_the_parent_child_path(
    registry: AgentRegistry,
) -> None:
    two_tag_sets = make_tasks(
        registry,
        kv_task("acme/a", runner={"tags": ["a"]}),
        kv_task("acme/b", runner={"tags": ["b"]}),
    )
    assert one_job(two_tag_sets, TriggerMode.INPUTS) is None
    # three identities of one lock shard: one job up to per_job tasks
    shard = lock_shard("acme/web", 16)
    names = [n for n in (f"acme/s{i}" for i in range(400)) if lock_shard(n, 16) == shard][:3]
    many = make_tasks(registry, *[kv_task(name) for name in names])
    assert one_job(many, TriggerMode.INPUTS, per_job=2) is None
    assert one_job(many, TriggerMode.INPUTS, per_job=3) is not None
    other = next(n for n in (f"acme/o{i}" for i in range(400)) if lock_shard(n, 16) != shard)
    two_shards = make_tasks(registry, kv_task("acme/web"), kv_task(other))
    assert one_job(two_shards, TriggerMode.INPUTS) is None


@pytest.mark.parametrize("tag", ["$CI_JOB_TOKEN", "${X}", "a b", "t\u00e4g", "a,b", " a"])
def test_a_tag_gitlab_would_expand_or_could_not_match_takes_the_parent_child_path(
    registry: AgentRegistry, tag: str
) -> None:
    tasks = make_tasks(registry, kv_task(runner={"tags": [tag]}))
    assert one_job(tasks, TriggerMode.INPUTS) is None


def test_variables_mode_takes_one_tag_and_the_yamls_own_timeout(registry: AgentRegistry) -> None:
    two_tags = make_tasks(registry, kv_task(runner={"tags": ["a", "b"]}))
    assert one_job(two_tags, TriggerMode.INPUTS) is not None
    assert one_job(two_tags, TriggerMode.VARIABLES) is None
    long = make_tasks(registry, kv_task(timeout="2h"))
    assert one_job(long, TriggerMode.INPUTS) is not None
    assert one_job(long, TriggerMode.VARIABLES) is None
    fits = make_tasks(registry, kv_task(runner={"tags": ["a"]}))  # default 1h + 5m margin
    job = one_job(fits, TriggerMode.VARIABLES)
    assert job is not None and job.timeout == VARIABLES_TIMEOUT


@pytest.mark.parametrize("name", TEMPLATES)
def test_the_yamls_default_timeout_is_the_variables_modes_bound(name: str) -> None:
    default = _inputs(name)["job_timeout"]["default"]
    hours, minutes = re.fullmatch(r"(\d+)h (\d+)m", default).groups()  # type: ignore[union-attr]
    assert int(hours) * 3600 + int(minutes) * 60 == VARIABLES_TIMEOUT


@settings(max_examples=60, deadline=None)
@given(
    tags=st.lists(st.text(min_size=1, max_size=20), min_size=0, max_size=3, unique=True),
    identity=st.from_regex(r"[a-z0-9]{1,8}(/[a-z0-9]{1,8}){0,2}", fullmatch=True),
)
def test_whatever_the_tags_what_is_sent_passes_the_inputs_checks(
    tags: list[str], identity: str
) -> None:
    registry = default_registry()
    try:
        tasks = make_tasks(registry, kv_task(identity, runner={"tags": tags}))
    except Exception:
        return
    job = one_job(tasks, TriggerMode.INPUTS)
    for name in TEMPLATES:
        inputs = _inputs(name)
        if job is None:
            continue
        assert re.fullmatch(inputs["job_lock"]["regex"], job.lock)
        assert re.fullmatch(inputs["job_timeout"]["regex"], job.timeout_text())
        assert all("$" not in tag and "," not in tag and tag.strip() == tag for tag in job.tags)


def test_submit_sends_the_one_jobs_inputs(
    fake: FakeGitLab, dispatcher: Dispatcher, registry: AgentRegistry
) -> None:
    dispatcher.submit(make_tasks(registry, kv_task(runner={"tags": ["linux"]})), ref="main")
    inputs = fake.routed("create_pipeline")[0].json()["inputs"]
    assert inputs["one_job"] == "true" and inputs["job_tags"] == ["linux"]
    assert inputs["job_lock"] == lock_shard("acme/web", 16) and inputs["job_timeout"] == "1h 5m"


def test_no_one_job_sends_only_the_ids(
    fake: FakeGitLab, dispatcher: Dispatcher, registry: AgentRegistry
) -> None:
    dispatcher.allow_one_job = False
    dispatcher.submit(make_tasks(registry), ref="main")
    assert set(fake.routed("create_pipeline")[0].json()["inputs"]) == {"dispatch_id", "checksum"}


def test_the_job_command_outside_a_dispatched_job_is_invalid_input(
    fake: FakeGitLab, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GITLAB_CI", raising=False)
    code, _, err = run_cli("job")
    assert code == 2 and "runs inside a dispatched GitLab job" in err and fake.calls == []


def test_the_job_command_refuses_an_altered_bundle_and_runs_nothing(
    fake: FakeGitLab,
    dispatcher: Dispatcher,
    registry: AgentRegistry,
    run_cli: RunCli,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    target = tmp_path / "never.json"
    item = kv_task()
    item["config"] = {"path": str(target), "values": {"a": 1}}
    handle = dispatcher.submit(make_tasks(registry, item), ref="main")
    checksum = fake.routed("create_pipeline")[0].json()["inputs"]["checksum"]
    data = fake.package(DISPATCH_PACKAGE, handle.dispatch_id, BUNDLE_FILE) or b""
    fake.put_package(
        DISPATCH_PACKAGE, handle.dispatch_id, BUNDLE_FILE, data.replace(b'"a"', b'"b"')
    )
    for key, value in {
        **JOB_ENV,
        "RA_DISPATCH_ID": handle.dispatch_id,
        "RA_CHECKSUM": checksum,
    }.items():
        monkeypatch.setenv(key, value)
    fake.calls.clear()
    code, _, err = run_cli("job", "--dir", str(tmp_path / "out"))
    assert code == 2 and "checksum mismatch" in err
    assert not target.exists() and not (tmp_path / "out").exists()
    assert [c.method for c in fake.calls] == ["GET"]  # the bundle, and nothing uploaded


def test_tasks_longer_than_gitlabs_longest_job_take_the_parent_child_path(
    registry: AgentRegistry,
) -> None:
    # GitLab refuses a job timeout over a month (Project::MAX_BUILD_TIMEOUT; ci_schema): four
    # week-long tasks of one identity fit in one job, five do not
    week = [kv_task(timeout="168h") for _ in range(5)]
    four = one_job(make_tasks(registry, *week[:4]), TriggerMode.INPUTS)
    assert four is not None and four.timeout <= MAX_JOB_TIMEOUT
    assert one_job(make_tasks(registry, *week), TriggerMode.INPUTS) is None
