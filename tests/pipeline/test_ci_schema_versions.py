"""The shipped and rendered YAML is checked for the oldest GitLab runner-agent supports, not
only against the newest vendored schema: a header key or input type an older version lacks
makes that version refuse the whole file (lib/gitlab/ci/config/header/spec.rb)."""

from __future__ import annotations

import pytest

from runner_agent.core.resources import templates_dir
from runner_agent.pipeline.ci_schema import OLDEST_GITLAB, problems

HEADER = """spec:
  description: "Agents as jobs."
  inputs:
    task_file:
      default: ""
---
job:
  script:
    - echo "$[[ inputs.task_file ]]"
"""


def test_spec_description_is_refused_for_the_oldest_supported_gitlab() -> None:
    found = problems(HEADER, "component.yml")
    assert [p.message for p in found] == [
        "spec:description needs GitLab 18.10; this file must load on 16.11"
    ]


def test_spec_description_passes_from_18_10() -> None:
    assert problems(HEADER, "component.yml", gitlab=(18, 10)) == []


def test_an_array_input_is_refused_before_16_11() -> None:
    text = (
        "spec:\n  inputs:\n    tags:\n      type: array\n      default: [a]\n"
        "---\njob:\n  script: [x]\n"
    )
    assert problems(text, "t.yml") == [] and OLDEST_GITLAB == (16, 11)
    (found,) = problems(text, "t.yml", gitlab=(16, 10))
    assert "type array needs GitLab 16.11" in found.message


@pytest.mark.parametrize("name", ["agent-project.gitlab-ci.yml", "component/templates/agent.yml"])
def test_the_shipped_pipelines_load_on_the_oldest_supported_gitlab(name: str) -> None:
    assert problems((templates_dir() / name).read_text(), name) == []
