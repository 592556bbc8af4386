"""gitlab_api: configuration, the requests it sends (paths, bodies), retries, errors, secrecy."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fake_gitlab import CANARY_TOKEN, FakeGitLab
from gitlab_helpers import ENV, Clock

from runner_agent.core.errors import EXIT_GITLAB, GitLabError, InvalidInput
from runner_agent.gitlab.api import AmbiguousRequest, ApiError, GitLabAPI, NotFound, connect
from runner_agent.gitlab.retry import RetryPolicy, within

# --- configuration -------------------------------------------------------------------------


def test_env_token_is_a_private_token(fake: FakeGitLab, api: GitLabAPI) -> None:
    api.get_project()
    assert fake.calls[0].headers["PRIVATE-TOKEN"] == CANARY_TOKEN
    assert "JOB-TOKEN" not in fake.calls[0].headers
    assert api.connection.source == "env" and CANARY_TOKEN not in repr(api.connection)


def test_inside_a_job_the_job_token_and_project_come_from_predefined_variables(
    fake: FakeGitLab,
) -> None:
    job_env = {
        "CI_API_V4_URL": "http://localhost/api/v4",
        "CI_JOB_TOKEN": CANARY_TOKEN,
        "CI_PROJECT_ID": "42",
    }
    api = connect(job_env)
    assert api.url == "http://localhost" and api.project == "42" and api.is_job_token
    with pytest.raises(NotFound):
        api.get_package_file("runner-agent-state", "acme+web", "state.json")
    assert fake.calls[0].headers["JOB-TOKEN"] == CANARY_TOKEN
    assert (
        fake.calls[0].path == "/projects/42/packages/generic/runner-agent-state/acme+web/state.json"
    )


def test_gitlab_token_wins_over_the_job_token() -> None:
    api = connect({**ENV, "CI_JOB_TOKEN": "job", "CI_SERVER_URL": "http://x"}, project="p")
    assert api.connection.kind == "private" and api.url == "http://localhost"


def test_python_gitlab_config_file_section(tmp_path: Path, fake: FakeGitLab) -> None:
    cfg = tmp_path / "python-gitlab.cfg"
    cfg.write_text(
        f"[global]\ndefault = other\n\n[other]\nurl = http://nowhere\nprivate_token = x\n\n"
        f"[agents]\nurl = http://localhost\nprivate_token = {CANARY_TOKEN}\ntimeout = 7\n"
    )
    api = connect({}, project="acme/agents", section="agents", config_files=[str(cfg)])
    assert api.url == "http://localhost" and api.secrets == (CANARY_TOKEN,)
    assert api.get_project()["default_branch"] == "main"
    assert fake.calls[0].path == "/projects/acme/agents"  # sent url-encoded, decoded here
    with pytest.raises(InvalidInput, match="gitlab-config-section"):
        connect({}, project="p", section="missing", config_files=[str(cfg)])


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({}, "no GitLab configured"),
        ({"GITLAB_TOKEN": "t"}, "GITLAB_URL is not"),
        ({"GITLAB_URL": "ftp://x", "GITLAB_TOKEN": "t"}, "not an http"),
        ({"GITLAB_URL": "https://u:secret@x", "GITLAB_TOKEN": "t"}, "carries credentials"),
        ({"GITLAB_URL": "https://x", "GITLAB_TOKEN": "t"}, "no project"),
    ],
)
def test_configuration_problems_are_invalid_input(environ: dict[str, str], message: str) -> None:
    with pytest.raises(InvalidInput, match=message) as caught:
        connect(environ)
    assert caught.value.exit_code == 2 and "secret" not in str(caught.value)


# --- paths and bodies ----------------------------------------------------------------------


def test_generic_package_put_then_get_latest(fake: FakeGitLab, api: GitLabAPI) -> None:
    api.put_package_file("runner-agent-dispatch", "d1", "bundle.json", b"one")
    api.put_package_file("runner-agent-dispatch", "d1", "bundle.json", b"two")
    assert api.get_package_file("runner-agent-dispatch", "d1", "bundle.json") == b"two"
    put = fake.calls[0]
    assert (put.method, put.path, put.body) == (
        "PUT",
        "/projects/42/packages/generic/runner-agent-dispatch/d1/bundle.json",
        b"one",
    )
    assert put.headers["Content-type"] == "application/octet-stream"


def test_create_pipeline_with_inputs_or_variables(fake: FakeGitLab, api: GitLabAPI) -> None:
    api.create_pipeline("main", inputs={"dispatch_id": "d1", "checksum": "sha256:x"})
    api.create_pipeline("main", variables={"RA_DISPATCH_ID": "d1"})
    first, second = (c.json() for c in fake.routed("create_pipeline"))
    assert first == {"ref": "main", "inputs": {"dispatch_id": "d1", "checksum": "sha256:x"}}
    assert second == {"ref": "main", "variables": [{"key": "RA_DISPATCH_ID", "value": "d1"}]}


def test_trigger_pipeline_sends_the_trigger_token_in_the_body(
    fake: FakeGitLab, api: GitLabAPI
) -> None:
    created = api.trigger_pipeline(fake.trigger_token, "main", inputs={"dispatch_id": "d1"})
    call = fake.routed("trigger_pipeline")[0]
    assert call.path == "/projects/42/trigger/pipeline"
    assert call.json() == {
        "token": fake.trigger_token,
        "ref": "main",
        "inputs": {"dispatch_id": "d1"},
    }
    assert created["source"] == "trigger" and fake.trigger_token in api.secrets


def test_list_pipelines_by_name_newest_first(fake: FakeGitLab, api: GitLabAPI) -> None:
    api.create_pipeline("main", inputs={"dispatch_id": "a"})
    api.create_pipeline("main", inputs={"dispatch_id": "b"})
    found = api.list_pipelines(name="runner-agent b")
    assert [p["name"] for p in found] == ["runner-agent b"]
    query = fake.routed("pipelines")[0].query
    assert query == {
        "order_by": ["id"],
        "sort": ["desc"],
        "per_page": ["20"],
        "name": ["runner-agent b"],
    }


def test_bridges_jobs_cancel_and_artifacts_paths(fake: FakeGitLab, api: GitLabAPI) -> None:
    parent = api.create_pipeline("main", inputs={"dispatch_id": "a"})["id"]
    child = fake.add_child(parent, status="running", collect={"reports": []})
    assert api.list_bridges(parent)[0]["downstream_pipeline"]["id"] == child
    job = api.list_pipeline_jobs(child)[0]
    assert api.download_job_artifacts(job["id"])[:2] == b"PK"
    assert api.cancel_pipeline(parent)["status"] == "canceled"
    assert api.cancel_pipeline(parent)["status"] == "canceled"  # again: harmless
    paths = [c.path for c in fake.calls[1:]]
    assert paths == [
        f"/projects/42/pipelines/{parent}/bridges",
        f"/projects/42/pipelines/{child}/jobs",
        f"/projects/42/jobs/{job['id']}/artifacts",
        f"/projects/42/pipelines/{parent}/cancel",
        f"/projects/42/pipelines/{parent}/cancel",
    ]
    assert fake.pipelines[child]["status"] == "canceled"


# --- retries -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault", ["429", "500", "502", "503", "reset", "timeout!", "connect-timeout"]
)
def test_idempotent_requests_are_retried(
    fault: str, fake: FakeGitLab, api: GitLabAPI, clock: Clock
) -> None:
    fake.inject("GET", "pipeline", fault, fault)
    fake.pipelines[7] = {"id": 7, "status": "running"}
    assert api.get_pipeline(7)["status"] == "running"
    assert len(fake.routed("pipeline")) == 3
    if fault == "429":
        assert clock.sleeps == [3.0, 3.0]  # Retry-After, not our backoff
    else:  # a pause before each retry, not shrinking
        assert len(clock.sleeps) == 2 and 0 < clock.sleeps[0] <= clock.sleeps[1]


def test_within_a_deadline_no_retry_ends_after_it(
    fake: FakeGitLab, api: GitLabAPI, clock: Clock
) -> None:
    fake.pipelines[7] = {"id": 7, "status": "running"}
    fake.inject("GET", "pipeline", "429", "reset")
    with within(2.0), pytest.raises(GitLabError, match="429"):
        api.get_pipeline(7)  # GitLab asks for 3 s: past the deadline, so no retry
    assert clock.sleeps == []
    with within(2.0):  # a dropped connection: a short backoff still fits, so it retries
        assert api.get_pipeline(7)["status"] == "running"
    assert len(clock.sleeps) == 1 and clock.sleeps[0] < 2.0
    fake.inject("GET", "pipeline", "429")
    assert api.get_pipeline(7)["status"] == "running"  # without a deadline: waits, retries
    assert clock.sleeps[-1] == 3.0


def test_a_429_that_says_not_when_waits_out_a_rate_limit_minute(
    fake: FakeGitLab, api: GitLabAPI, clock: Clock
) -> None:
    fake.retry_after = ""  # older GitLab: pipeline creation's limit sends no Retry-After
    fake.pipelines[7] = {"id": 7, "status": "running"}
    fake.inject("GET", "pipeline", "429")
    assert api.get_pipeline(7)["status"] == "running"
    assert len(clock.sleeps) == 1 and 60 <= clock.sleeps[0] <= 90  # a minute, and some jitter
    fake.inject("GET", "pipeline", *["429"] * 7)  # still refused after every wait: an error
    with pytest.raises(GitLabError, match="429"):
        api.get_pipeline(7)
    assert len(clock.sleeps) == 1 + RetryPolicy().max_retries  # bounded


def test_retry_after_as_an_http_date_and_ratelimit_reset(policy: RetryPolicy, clock: Clock) -> None:
    assert policy.retry_after({"Retry-After": "Tue, 14 Nov 2023 22:13:30 GMT"}) == pytest.approx(10)
    assert policy.retry_after({"RateLimit-Reset": str(int(clock.now) + 20)}) == pytest.approx(20)
    assert policy.retry_after({"Retry-After": "soon"}) is None


def test_a_too_long_retry_after_fails_instead_of_sleeping(fake: FakeGitLab, clock: Clock) -> None:
    api = connect(ENV, project="42", retry_policy=RetryPolicy(sleep=clock.sleep, max_retry_after=2))
    fake.inject("GET", "project", "429")
    with pytest.raises(ApiError, match="rate limited") as caught:
        api.get_project()
    assert caught.value.exit_code == EXIT_GITLAB and clock.sleeps == []


def test_retries_are_bounded(fake: FakeGitLab, api: GitLabAPI, clock: Clock) -> None:
    fake.inject("GET", "project", *["503"] * 10)
    with pytest.raises(ApiError, match="503"):
        api.get_project()
    assert len(fake.calls) == 1 + RetryPolicy().max_retries


@pytest.mark.parametrize("fault", ["500", "500!", "502!", "503", "reset", "reset!", "timeout!"])
def test_pipeline_creation_is_never_blindly_retried(
    fault: str, fake: FakeGitLab, api: GitLabAPI
) -> None:
    fake.inject("POST", "create_pipeline", fault)
    with pytest.raises(AmbiguousRequest, match="outcome unknown"):
        api.create_pipeline("main", inputs={"dispatch_id": "d"})
    assert len(fake.routed("create_pipeline")) == 1


@pytest.mark.parametrize("fault", ["429", "connect-timeout"])
def test_pipeline_creation_is_retried_when_gitlab_surely_did_not_act(
    fault: str, fake: FakeGitLab, api: GitLabAPI
) -> None:
    fake.inject("POST", "create_pipeline", fault)
    api.create_pipeline("main", inputs={"dispatch_id": "d"})
    assert len(fake.routed("create_pipeline")) == 2 and len(fake.created_pipelines()) == 1


# --- errors and secrecy ----------------------------------------------------------------------


def test_refusals_are_gitlab_errors_with_a_useful_message(fake: FakeGitLab, clock: Clock) -> None:
    wrong = connect(
        {**ENV, "GITLAB_TOKEN": "wrong"}, project="42", retry_policy=RetryPolicy(sleep=clock.sleep)
    )
    with pytest.raises(GitLabError, match="refused the token") as caught:
        wrong.get_project()
    assert caught.value.exit_code == EXIT_GITLAB
    api = connect(ENV, project="42", retry_policy=RetryPolicy(sleep=clock.sleep))
    fake.inject("GET", "project", "403")
    with pytest.raises(GitLabError, match=r"forbidden \(403\): the token lacks a permission"):
        api.get_project()


def test_the_token_never_appears_in_errors_or_logs(
    fake: FakeGitLab, api: GitLabAPI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    fake.echo_token_in_errors = True  # a server that quotes the token it got back
    fake.inject("GET", "project", "403", *["500"] * 7, "502!")
    messages = []
    for _ in range(2):
        with pytest.raises(GitLabError) as caught:
            api.get_project()
        messages.append(str(caught.value))
    fake.inject("POST", "create_pipeline", "502!")
    with pytest.raises(GitLabError) as caught:
        api.create_pipeline("main")
    messages.append(str(caught.value))
    text = "\n".join(messages) + caplog.text
    assert CANARY_TOKEN not in text
    assert "(token ********)" in messages[0] and "(token ********)" in messages[1]
    assert "retry 6/6" in caplog.text


def test_network_errors_name_the_server_not_the_token(clock: Clock) -> None:
    api = connect(
        {"GITLAB_URL": "http://127.0.0.1:9", "GITLAB_TOKEN": CANARY_TOKEN},
        project="42",
        retry_policy=RetryPolicy(sleep=clock.sleep, max_retries=1),
        timeout=2,
    )
    with pytest.raises(
        GitLabError, match=r"cannot reach GitLab at http://127\.0\.0\.1:9"
    ) as caught:
        api.get_project()
    assert CANARY_TOKEN not in str(caught.value)
