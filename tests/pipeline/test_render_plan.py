"""plan_first (dispatch --plan): dry-run jobs, the plan job, a manual gate per identity with its
environment, apply jobs that need their gate; environment names valid for GitLab whatever the
identity; GitLab's environment rule in the CI checker."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from runner_agent.core.errors import InvalidInput
from runner_agent.model.agents import default_registry
from runner_agent.model.identity import IDENTITY_PATTERN, MAX_IDENTITY
from runner_agent.model.tasks import Task, tasks_from_data
from runner_agent.pipeline.ci_schema import validate_text
from runner_agent.pipeline.render import (
    PLAN_JOB,
    RenderOptions,
    environment_name,
    gate_name,
    render_child,
)

# lib/gitlab/regex.rb environment_name_regex; app/models/environment.rb: at most 255
GITLAB_ENVIRONMENT = re.compile(
    r"[a-zA-Z0-9_${}. -](?:[a-zA-Z0-9_/${}. -]*[a-zA-Z0-9_${}. -])?", re.ASCII
)


def tasks(*items: tuple[str, str | None]) -> list[Task]:
    data = []
    for identity, command in items:
        task: dict[str, Any] = {
            "identity": identity,
            "agent": "kv_file",
            "config": {"path": f"/tmp/{identity}.json", "values": {"a": "1"}},
        }
        if command:
            task["command"] = command
        data.append(task)
    return tasks_from_data(data, "<test>", default_registry())


def jobs_of(text: str) -> dict[str, Any]:
    doc = yaml.safe_load(text)
    return {k: v for k, v in doc.items() if isinstance(v, dict) and "stage" in v}


def test_plan_first_runs_dry_runs_then_waits_at_one_gate_per_identity() -> None:
    found = tasks(("acme/web", None), ("acme/web", "update"), ("acme/db", "update"))
    (pipeline,) = render_child(found, RenderOptions(plan_first=True, default_tags=("ra",)))
    doc = yaml.safe_load(pipeline.text)
    assert doc["stages"] == ["check", "plan", "approve", "agents", "collect"]
    jobs = jobs_of(pipeline.text)
    checks = {n: j for n, j in jobs.items() if j["stage"] == "check"}
    assert len(checks) == 2  # a job per identity: acme/web's two tasks share theirs
    web_check = checks["check:acme/web:digest:0+1"]["script"][0]
    assert "tasks/0000.json' '.runner-agent/tasks/0001.json' --check" in web_check
    for job in checks.values():
        assert "--check" in job["script"][0] and "resource_group" not in job
        assert job["variables"] == {"RA_DISPATCH_ID": ""}  # no report upload to the dispatch
        assert "environment" not in job
    plan = jobs[PLAN_JOB]
    assert plan["stage"] == "plan" and plan["when"] == "always"
    assert "--markdown '.runner-agent/plan.md'" in plan["script"][0]
    assert plan["script"][0].endswith("--expect 3")  # a dry-run report per task
    assert plan["artifacts"]["expose_as"] == "runner-agent plan"
    assert ".runner-agent/plan.md" in plan["artifacts"]["paths"]
    for identity in ("acme/web", "acme/db"):
        gate = jobs[gate_name(identity)]
        assert gate["when"] == "manual" and gate["allow_failure"] is False
        assert gate["environment"] == {"name": f"runner-agent/{identity}", "action": "prepare"}
        assert gate["needs"] == [{"job": PLAN_JOB, "artifacts": False}]
    applies = {n: j for n, j in jobs.items() if j["stage"] == "agents"}
    assert len(applies) == 2  # with plan_first a job holds one identity, its environment's
    for job in applies.values():
        identity = job["environment"]["name"].removeprefix("runner-agent/")
        assert {"job": gate_name(identity), "artifacts": False} in job["needs"]
        assert job["environment"] == {"name": f"runner-agent/{identity}", "action": "start"}
        assert job["resource_group"].startswith("runner-agent/shard-")  # the lock shard


def test_plan_first_keeps_one_identity_per_job_whatever_tasks_per_job() -> None:
    found = tasks(*((f"acme/s{i}", "update") for i in range(8)))
    opts = RenderOptions(plan_first=True, tasks_per_job=20, lock_shards=1)
    (pipeline,) = render_child(found, opts)
    assert [len(t) for t in pipeline.job_tasks.values()] == [1] * 8
    (grouped,) = render_child(found, RenderOptions(tasks_per_job=20, lock_shards=1))
    assert len(grouped.job_tasks) == 1


def test_without_plan_first_nothing_changes() -> None:
    found = tasks(("acme/web", None), ("acme/db", "update"))
    (pipeline,) = render_child(found, RenderOptions(default_tags=("ra",)))
    text = pipeline.text
    assert "environment" not in text and "manual" not in text and "--check" not in text
    assert yaml.safe_load(text)["stages"] == ["agents", "collect"]


def test_a_split_plan_keeps_each_identity_with_its_gate_and_plan() -> None:
    found = tasks(*((f"acme/s{i}", "update") for i in range(6)))
    pipelines = render_child(found, RenderOptions(plan_first=True, max_jobs=8))
    assert len(pipelines) > 1
    for number, pipeline in enumerate(pipelines, start=1):
        jobs = jobs_of(pipeline.text)
        assert len(jobs) <= 8
        assert f"{PLAN_JOB}-{number}" in jobs
        applies = [j for j in jobs.values() if j["stage"] == "agents"]
        for job in applies:
            gate = next(
                n["job"] for n in job["needs"] if n["job"].startswith("runner-agent-approve")
            )
            assert gate in jobs
            assert jobs[gate]["needs"][0]["job"] == f"{PLAN_JOB}-{number}"


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300))
def test_any_identity_gives_a_valid_environment_and_gate_name(identity: str) -> None:
    name = environment_name(identity)
    assert len(name) <= 255 and GITLAB_ENVIRONMENT.fullmatch(name), name
    assert "$" not in name and "{" not in name  # GitLab would expand a variable there
    assert len(gate_name(identity)) <= 255


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80), st.text(max_size=80))
def test_distinct_identities_never_share_an_environment(a: str, b: str) -> None:
    if a != b:
        assert environment_name(a) != environment_name(b)
        assert gate_name(a) != gate_name(b)


@settings(max_examples=100, deadline=None)
@given(st.from_regex(IDENTITY_PATTERN, fullmatch=True).filter(lambda s: len(s) <= MAX_IDENTITY))
def test_a_valid_identity_is_its_environment_as_people_read_it(identity: str) -> None:
    name = environment_name(identity)
    if len(identity) <= 255 - len("runner-agent/"):
        assert name == f"runner-agent/{identity}"


def test_hostile_identities_render_a_valid_pipeline() -> None:
    # identities the task schema refuses cannot reach render; the mapping holds anyway, and the
    # longest valid identity still fits GitLab's limit
    long = "a" * MAX_IDENTITY
    (pipeline,) = render_child(tasks((long, None), ("x/y", None)), RenderOptions(plan_first=True))
    for job in jobs_of(pipeline.text).values():
        if "environment" in job:
            assert GITLAB_ENVIRONMENT.fullmatch(job["environment"]["name"])
            assert len(job["environment"]["name"]) <= 255


@pytest.mark.parametrize(
    "environment",
    ["/prod", "prod/", "a|b", "x" * 256, "caf\u00e9", {"action": "start"}, {"name": "a\nb"}],
)
def test_the_checker_refuses_what_gitlab_refuses(environment: Any) -> None:
    text = yaml.safe_dump(
        {"job": {"stage": "test", "script": ["true"], "environment": environment}}
    )
    with pytest.raises(InvalidInput, match="environment"):
        validate_text(text, "<test>")


@pytest.mark.parametrize(
    "environment", ["runner-agent/acme/web", "review/$CI_COMMIT_REF_SLUG", {"name": "a b.c"}]
)
def test_the_checker_accepts_what_gitlab_accepts(environment: Any) -> None:
    text = yaml.safe_dump(
        {"job": {"stage": "test", "script": ["true"], "environment": environment}}
    )
    validate_text(text, "<test>")
