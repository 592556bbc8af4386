"""Downloads redirected to object storage on another host (127.0.0.2) carry no GitLab token:
``requests`` drops only ``Authorization`` on a cross-host redirect, while python-gitlab
authenticates with ``PRIVATE-TOKEN`` or ``JOB-TOKEN``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fake_gitlab import CANARY_TOKEN, FakeGitLab, Storage, served, storage_served

from runner_agent.gitlab.api import GitLabAPI, connect

JOB = "glcbt-CANARY-job-redirect"


@pytest.fixture
def storage() -> Iterator[Storage]:
    store = Storage()
    with storage_served(store):
        yield store


@pytest.fixture
def remote(storage: Storage) -> Iterator[FakeGitLab]:
    fake = FakeGitLab(storage=storage, job_token=JOB)
    fake.put_package("runner-agent-dispatch", "d1", "bundle.json", b"{}")
    fake.artifacts[7] = b"PK-zip"
    with served(fake):
        yield fake


def _client(fake: FakeGitLab, kind: str) -> GitLabAPI:
    if kind == "private":
        env = {"GITLAB_URL": fake.base, "GITLAB_TOKEN": CANARY_TOKEN}
    else:
        env = {"CI_SERVER_URL": fake.base, "CI_JOB_TOKEN": JOB}
    return connect(env, project="42")


def _leaked(storage: Storage) -> list[str]:
    secret = {"private-token", "job-token", "authorization"}
    return [k for headers in storage.seen for k in headers if k.lower() in secret]


@pytest.mark.parametrize("kind", ["private", "job"])
def test_a_package_download_redirected_to_storage_sends_no_token_there(
    remote: FakeGitLab, storage: Storage, kind: str
) -> None:
    data = _client(remote, kind).get_package_file("runner-agent-dispatch", "d1", "bundle.json")
    assert data == b"{}" and len(storage.seen) == 1
    assert _leaked(storage) == []


@pytest.mark.parametrize("kind", ["private", "job"])
def test_an_artifacts_download_redirected_to_storage_sends_no_token_there(
    remote: FakeGitLab, storage: Storage, kind: str
) -> None:
    assert _client(remote, kind).download_job_artifacts(7) == b"PK-zip"
    assert len(storage.seen) == 1 and _leaked(storage) == []
