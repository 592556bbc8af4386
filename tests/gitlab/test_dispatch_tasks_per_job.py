"""`dispatch --tasks-per-job N`: checked before any request, then passed to the agent project
as the `type: number` input tasks_per_job (a JSON number: GitLab refuses a string for it), or
as the pipeline variable RA_TASKS_PER_JOB where the ids go as variables."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_gitlab import FakeGitLab
from gitlab_helpers import RunCli, write_tasks


@pytest.mark.parametrize("value", ["0", "-1", "x", "2.5"])
def test_a_bad_value_is_exit_2_naming_the_flag_and_sends_nothing(
    fake: FakeGitLab, run_cli: RunCli, tmp_path: Path, value: str
) -> None:
    tasks = str(write_tasks(tmp_path / "t.yml"))
    code, _, err = run_cli("dispatch", tasks, "-p", "42", "--tasks-per-job", value)
    assert code == 2 and "--tasks-per-job" in err
    assert fake.calls == []


@pytest.mark.parametrize(
    ("flags", "sent"),
    [
        ((), None),
        (("--tasks-per-job", "5"), {"inputs": {"tasks_per_job": 5}}),
        (("--tasks-per-job", "5", "--variables"), {"variables": {"RA_TASKS_PER_JOB": "5"}}),
    ],
)
def test_the_value_reaches_the_pipeline_as_input_or_variable(
    fake: FakeGitLab, run_cli: RunCli, tmp_path: Path, flags: tuple[str, ...], sent: object
) -> None:
    tasks = str(write_tasks(tmp_path / "t.yml"))
    code, _, err = run_cli("dispatch", tasks, "-p", "42", *flags)
    assert code == 0, err
    (call,) = fake.routed("create_pipeline")
    body = call.json()
    if sent is None:  # the project's own default: nothing sent for it
        assert "tasks_per_job" not in body.get("inputs", {})
        assert "RA_TASKS_PER_JOB" not in str(body.get("variables", ""))
        return
    kind, values = next(iter(sent.items()))  # type: ignore[attr-defined]
    given = body[kind]
    if isinstance(given, list):  # POST /pipeline: [{"key", "value"}]
        given = {v["key"]: v["value"] for v in given}
    for key, value in values.items():
        assert given[key] == value and type(given[key]) is type(value)
