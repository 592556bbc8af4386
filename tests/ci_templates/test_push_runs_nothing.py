"""A push to the agent project, or to a project including the component, brings no inputs:
GitLab must create no job rather than a plan job that fails on empty inputs (with "Pipelines
must succeed", a failed pipeline blocks every merge request). GitLab creates no pipeline for a
push whose jobs are all excluded by rules (doc/ci/jobs/job_rules.md)."""

from __future__ import annotations

import json

import pytest
from ci_templates.ci_local import Ci

from runner_agent.core.resources import templates_dir

_TEMPLATES = {
    "agent-project": "agent-project.gitlab-ci.yml",
    "component": "component/templates/agent.yml",
}


def _jobs(ci: Ci, name: str, source: str) -> dict[str, str]:
    ci.write({".gitlab-ci.yml": (templates_dir() / _TEMPLATES[name]).read_text()})
    ci.commit()
    listed = ci.run(
        f"--variable=CI_PIPELINE_SOURCE={source}",
        "--ignore-predefined-vars=CI_PIPELINE_SOURCE",
        "--list-json",
    )
    assert listed.returncode == 0, listed.stdout + listed.stderr
    return {job["name"]: job["when"] for job in json.loads(listed.stdout)}


@pytest.mark.parametrize("name", sorted(_TEMPLATES))
@pytest.mark.parametrize("source", ["push", "merge_request_event"])
def test_a_push_or_merge_request_creates_no_job(ci: Ci, name: str, source: str) -> None:
    jobs = _jobs(ci, name, source)
    assert jobs and set(jobs.values()) == {"never"}, jobs


@pytest.mark.parametrize("name", sorted(_TEMPLATES))
@pytest.mark.parametrize("source", ["api", "trigger", "web", "schedule"])
def test_a_started_pipeline_plans_and_runs(ci: Ci, name: str, source: str) -> None:
    jobs = _jobs(ci, name, source)
    assert jobs["runner-agent-plan"] == "on_success"
    assert jobs["runner-agent-run"] == "on_success"
