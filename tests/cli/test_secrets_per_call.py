"""The CLI's masker holds one invocation's secrets: a later call in the same process (a test,
STACKL's server) is not masked with them."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from runner_agent.cli import main

FIXTURE_AGENTS = Path(__file__).resolve().parents[1] / "fixtures" / "agents"


def test_a_later_call_is_not_masked_with_an_earlier_calls_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RA_SECRET_TEST", "e")
    task = {
        "identity": "pc/probe",
        "agent": "probe",
        "config": {"message": "${env:RA_SECRET_TEST}"},
    }
    (tmp_path / "t.yml").write_text(yaml.safe_dump(task))
    agents = ["--agents-path", str(FIXTURE_AGENTS)]
    assert (
        main(["run", str(tmp_path / "t.yml"), "--local", "--state-dir", str(tmp_path), *agents])
        == 0
    )
    capsys.readouterr()
    (tmp_path / "bad.yml").write_text(yaml.safe_dump({"identity": "pc/probe", "agent": "nope"}))
    assert main(["validate", str(tmp_path / "bad.yml"), *agents]) == 2
    assert "unknown agent 'nope'" in capsys.readouterr().err
