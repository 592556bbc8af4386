"""A secret handed to a real Ansible run appears in no form in anything the run prints or
stores: table, JSON, JUnit, HTML, dotenv, the -v stream, the state document."""

from __future__ import annotations

import json
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
import yaml

from runner_agent.cli import main
from runner_agent.core.redact import MASK, forms

FIXTURE_AGENTS = Path(__file__).resolve().parents[1] / "fixtures" / "agents"

# whitespace that squashing would change, quotes, a backslash, non-ASCII (raw in Ansible's
# JSON), a control character: each form a secret can take on its way through
NASTY = 'p@ss  w\tord "é€" \\ end\x01'


def _run(
    tmp_path: Path, secret: str, monkeypatch: pytest.MonkeyPatch, **config: object
) -> tuple[int, dict[str, str]]:
    monkeypatch.setenv("RA_SECRET_TEST", secret)
    task = {
        "identity": "sec/probe",
        "agent": "probe",
        "config": {"message": "${env:RA_SECRET_TEST}", **config},
    }
    (tmp_path / "t.yml").write_text(yaml.safe_dump(task))
    out = tmp_path / "out"
    code = main(
        [
            "run", str(tmp_path / "t.yml"), "--local", "--verbose",
            "--state-dir", str(tmp_path / "state"), "--agents-path", str(FIXTURE_AGENTS),
            "--report", str(out / "r.json"), "--dotenv", str(out / "r.env"),
            "--html", str(out / "r.html"),
        ]
    )  # fmt: skip
    files = {p.name: p.read_text() for p in sorted(out.iterdir())}
    state = tmp_path / "state" / "sec" / "probe.json"
    if state.exists():
        files["state"] = state.read_text()
    return code, files


def _leaks(secret: str, text: str) -> list[str]:
    """Forms of the secret in ``text``, and pieces of it a reformatting (whitespace squashed,
    text cut) would leave: the secret's every form is also checked by the property tests."""
    visible = text.replace(MASK, "\ue000")
    pieces = {*forms(secret), " ".join(secret.split())}
    if secret == NASTY:
        pieces |= {"p@ss", "€"}
    return [f for f in pieces if f in visible]


def test_a_secret_never_appears_in_what_a_failed_run_prints_or_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, files = _run(tmp_path, NASTY, monkeypatch, fail=True)
    printed = capsys.readouterr()
    assert code == 1
    assert "probe failed with" in printed.out and MASK in printed.out
    assert MASK in printed.err  # the -v stream showed the failure, masked
    for name, text in {**files, "stdout": printed.out, "stderr": printed.err}.items():
        assert _leaks(NASTY, text) == [], name
    ET.fromstring(files["r.junit.xml"].encode())


def test_a_secret_never_appears_in_outputs_state_or_dotenv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, files = _run(tmp_path, NASTY, monkeypatch)
    printed = capsys.readouterr()
    assert code == 0
    assert json.loads(files["state"])["outputs"]["message"] == MASK
    for name, text in {**files, "stdout": printed.out, "stderr": printed.err}.items():
        assert _leaks(NASTY, text) == [], name


@pytest.mark.parametrize("secret", ["s", "success", "e", "1"])
def test_a_secret_equal_to_a_report_word_leaves_the_report_and_state_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, secret: str
) -> None:
    code, files = _run(tmp_path, secret, monkeypatch)
    assert code == 0
    report = json.loads(files["r.json"])
    assert report["status"] == "success" and report["identity"] == "sec/probe"
    assert report["outputs"]["message"] == MASK
    state = json.loads(files["state"])
    assert set(state["outputs"]) >= {"message", "count", "installed_by"}
    assert state["last_status"] == "success" and state["identity"] == "sec/probe"
    assert files["r.env"].startswith("RA_SEC_PROBE_STATUS=success\n")
