"""The default jobs per child pipeline fits GitLab.com Free's limit of 500 jobs in a project's
alive pipelines, all together (plan limit ci_active_jobs; lib/gitlab/ci/pipeline/chain/limit/
active_jobs.rb): a dispatch's parent jobs and its child, twice over (a second dispatch beside
the first), stay under it. The shipped pipelines and the renderer agree on that default."""

from __future__ import annotations

import pytest
import yaml

from runner_agent.core.resources import templates_dir
from runner_agent.pipeline.render import RenderOptions

FREE_ACTIVE_JOBS = 500


def _spec(name: str) -> dict[str, object]:
    header = next(yaml.safe_load_all((templates_dir() / name).read_text()))
    return dict(header["spec"]["inputs"])


def _parent_jobs() -> int:
    documents = list(
        yaml.safe_load_all((templates_dir() / "agent-project.gitlab-ci.yml").read_text())
    )
    pipeline = documents[1]
    # runner-agent-job runs alone, in a small dispatch's pipeline: never beside a child
    jobs = [k for k, v in pipeline.items() if isinstance(v, dict) and "stage" in v]
    return len([k for k in jobs if k != "runner-agent-job"])


def test_two_dispatches_at_the_default_fit_under_gitlab_com_free() -> None:
    per_dispatch = _parent_jobs() + RenderOptions().max_jobs
    assert _parent_jobs() == 3 and 2 * per_dispatch <= FREE_ACTIVE_JOBS


@pytest.mark.parametrize("name", ["agent-project.gitlab-ci.yml", "component/templates/agent.yml"])
def test_the_shipped_default_is_the_renderers(name: str) -> None:
    max_jobs = _spec(name)["max_jobs"]
    assert isinstance(max_jobs, dict) and max_jobs["default"] == RenderOptions().max_jobs
