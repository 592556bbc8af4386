"""The fake GitLab is never looser than GitLab: each rule the toolkit relies on, refused by the
fake as GitLab refuses it (sources in docs/gitlab-compat.md)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from fake_gitlab import CREATED_FIELDS, JOB_TOKEN_ROUTES, FakeGitLab
from gitlab_helpers import JOB_ENV, RunCli, kv_task, write_tasks

from runner_agent.gitlab.api import ApiError, GitLabAPI, NotFound, connect


@pytest.fixture
def job_api(fake: FakeGitLab) -> GitLabAPI:
    return connect(JOB_ENV, project="42")


@pytest.mark.parametrize(
    "call",
    [
        lambda api: api.get_pipeline(1),
        lambda api: api.list_pipelines(),
        lambda api: api.list_bridges(1),
        lambda api: api.list_pipeline_jobs(1),
        lambda api: api.cancel_pipeline(1),
        lambda api: api.create_pipeline("main"),
        lambda api: api.get_project(),
        lambda api: api.list_schedules(),
    ],
    ids=["pipeline", "pipelines", "bridges", "jobs", "cancel", "create", "project", "schedules"],
)
def test_a_job_token_is_refused_where_gitlab_does_not_read_it(
    job_api: GitLabAPI, call: Callable[[GitLabAPI], object]
) -> None:
    with pytest.raises(NotFound):
        call(job_api)


def test_a_job_token_is_refused_on_version(job_api: GitLabAPI) -> None:
    with pytest.raises(ApiError) as caught:
        job_api.get_version()
    assert caught.value.status == 401


def test_a_job_token_reaches_the_package_registry(job_api: GitLabAPI) -> None:
    job_api.put_package_file("runner-agent-state", "acme+web", "state.json", b"{}")
    assert job_api.get_package_file("runner-agent-state", "acme+web", "state.json") == b"{}"
    assert ("PUT", "package") in JOB_TOKEN_ROUTES


@pytest.mark.parametrize(
    ("package", "version", "file"),
    [
        ("runner-agent-state", "acme+..+web", "state.json"),  # ".." in a version
        ("runner-agent-state", "acme/web", "state.json"),  # "/" in a version
        ("runner agent", "v1", "state.json"),  # a space in a name
        ("runner-agent-state", "v1", "~state.json"),  # a file name starting with "~"
    ],
)
def test_generic_package_names_versions_and_files_follow_gitlabs_rules(
    fake: FakeGitLab, api: GitLabAPI, package: str, version: str, file: str
) -> None:
    with pytest.raises(ApiError) as caught:
        api.put_package_file(package, version, file, b"{}")
    assert caught.value.status == 400 and fake.packages == {}


def test_a_refused_duplicate_package_is_a_400_said_plainly(
    fake: FakeGitLab, api: GitLabAPI
) -> None:
    fake.duplicates_allowed = False
    api.put_package_file("runner-agent-state", "acme+web", "state.json", b"{}")
    with pytest.raises(ApiError) as caught:
        api.put_package_file("runner-agent-state", "acme+web", "state.json", b"{}")
    assert caught.value.status == 400 and "duplicates" in str(caught.value)


def test_the_creation_answer_has_only_entities_ci_pipeline_fields(api: GitLabAPI) -> None:
    created = api.create_pipeline("main", inputs={"dispatch_id": "d1"})
    assert set(created) <= set(CREATED_FIELDS)
    assert "name" not in created and "iid" not in created
    assert api.get_pipeline(int(created["id"]))["name"] == "runner-agent d1"


def test_the_name_filter_on_pipeline_lists_is_ignored_before_16_9(
    fake: FakeGitLab, api: GitLabAPI
) -> None:
    api.create_pipeline("main", inputs={"dispatch_id": "d1"})
    api.create_pipeline("main", inputs={"dispatch_id": "d2"})
    assert len(api.list_pipelines(name="runner-agent d1")) == 1
    fake.version = "16.8.0"
    assert len(api.list_pipelines(name="runner-agent d1")) == 2


def test_inputs_are_dropped_by_a_gitlab_that_does_not_take_them(
    fake: FakeGitLab, api: GitLabAPI
) -> None:
    fake.version = "17.9.0"
    created = api.create_pipeline("main", inputs={"dispatch_id": "d1"})
    assert fake.pipelines[int(created["id"])]["name"] is None  # ran with the defaults


def test_an_identity_gitlab_would_refuse_as_a_version_is_invalid_before_any_request(
    fake: FakeGitLab, run_cli: RunCli, tmp_path: Path
) -> None:
    tasks = write_tasks(tmp_path / "t.yml", kv_task("acme/web..v2"))
    code, _, err = run_cli("dispatch", str(tasks), "-p", "42")
    assert code == 2 and fake.calls == [] and "'..' is not allowed" in err
