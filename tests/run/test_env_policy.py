"""``${env:NAME}`` reads only what the agent project allows: names starting with RA_SECRET_, or
listed in RUNNER_AGENT_ENV_ALLOW; never CI_JOB_TOKEN, GITLAB_TOKEN, other CI_* / GITLAB_*
variables or the runner's, even when listed. A task naming one is invalid input (exit 2) and
nothing runs, so no pipeline credential can be written into what a task's config names."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from runner_agent.cli import main

FIXTURE_AGENTS = Path(__file__).resolve().parents[1] / "fixtures" / "agents"


def _run(tmp_path: Path, message: str) -> int:
    task = tmp_path / "t.yml"
    task.write_text(
        yaml.safe_dump({"identity": "cli/probe", "agent": "probe", "config": {"message": message}})
    )
    state = tmp_path / "state"
    agents = str(FIXTURE_AGENTS)
    return main(["run", str(task), "--local", "--state-dir", str(state), "--agents-path", agents])


@pytest.mark.parametrize(
    "name",
    ["CI_JOB_TOKEN", "GITLAB_TOKEN", "CI_REGISTRY_PASSWORD", "RUNNER_TOKEN", "REDIS_PASSWORD"],
)
def test_a_task_naming_a_pipeline_credential_is_invalid_and_runs_nothing(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    name: str,
) -> None:
    monkeypatch.setenv(name, "glcbt-CANARY-credential")
    monkeypatch.setenv("RUNNER_AGENT_ENV_ALLOW", name)  # listing it changes nothing
    assert _run(tmp_path, f"${{env:{name}}}") == 2
    err = capsys.readouterr().err
    assert f"${{env:{name}}} is refused" in err and "RA_SECRET_" in err
    assert "glcbt-CANARY-credential" not in err and not (tmp_path / "state").exists()


def test_validation_alone_refuses_a_pipeline_credential(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    task = tmp_path / "t.yml"
    task.write_text(
        yaml.safe_dump(
            {"identity": "a/b", "agent": "probe", "config": {"message": "${env:CI_JOB_TOKEN}"}}
        )
    )
    assert main(["validate", str(task), "--agents-path", str(FIXTURE_AGENTS)]) == 2
    assert "config.message: ${env:CI_JOB_TOKEN} is refused" in capsys.readouterr().err


def test_a_name_neither_prefixed_nor_listed_is_refused_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ACME_PASSWORD", "pw-canary")
    monkeypatch.delenv("RUNNER_AGENT_ENV_ALLOW", raising=False)
    assert _run(tmp_path, "${env:ACME_PASSWORD}") == 2
    err = capsys.readouterr().err
    assert "RA_SECRET_ACME_PASSWORD" in err and "RUNNER_AGENT_ENV_ALLOW" in err
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize(
    ("name", "allow"), [("RA_SECRET_PW", ""), ("ACME_PASSWORD", "OTHER, ACME_PASSWORD")]
)
def test_a_prefixed_or_listed_name_resolves(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, allow: str
) -> None:
    monkeypatch.setenv(name, "pw-canary")
    monkeypatch.setenv("RUNNER_AGENT_ENV_ALLOW", allow)
    assert _run(tmp_path, f"${{env:{name}}}") == 0
