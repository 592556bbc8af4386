"""Generated formats are valid by construction: JUnit is XML, the table shows no control or
bidi character raw, dotenv names are unique and its lines are the report's."""

from __future__ import annotations

import json
import unicodedata
from pathlib import Path
from xml.etree import ElementTree as ET

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from runner_agent.cli import main
from runner_agent.core.errors import InvalidInput
from runner_agent.model.tasks import tasks_from_data
from runner_agent.report.model import (
    CommandResult,
    FailedTask,
    Report,
    Status,
    TaskResult,
    dotenv,
    junit,
    table,
)

FIXTURE_AGENTS = Path(__file__).resolve().parents[1] / "fixtures" / "agents"
BIDI = "\u202e\u2066\u200f"


def _report(text: str) -> Report:
    """A report holding ``text`` in every field a person or a job can put text in."""
    return Report(
        "acme/web",
        text,
        text,
        Status.FAILED,
        commands=[
            CommandResult(
                text,
                Status.FAILED,
                failed_tasks=[FailedTask(text, text, text)],
                results=[TaskResult(text, text, "failed", 0.5, text)],
                error=text,
                started=text,
            )
        ],
        error=text,
        started=text,
    )


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1))
def test_junit_is_xml_whatever_the_fields_hold(text: str) -> None:
    root = ET.fromstring(junit([_report(text)]).encode("utf-8"))
    assert root.tag == "testsuites"
    assert len(root.findall("testsuite/testcase")) == 2


def test_junit_keeps_a_control_character_readable_as_an_escape() -> None:
    xml = junit([_report("bad\x01char\ufffe")])
    ET.fromstring(xml.encode())
    assert "bad\\x01char\\ufffe" in xml


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), min_size=1))
def test_the_table_shows_no_control_or_bidi_character(text: str) -> None:
    out = table([_report(text)])
    assert out.endswith("\n")
    body = out[:-1]
    shown = {unicodedata.category(ch) for ch in body.replace("\n", "")}
    assert not shown & {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}
    assert not set(BIDI) & set(body)
    assert body.count("\n") == 1 + 2  # the header, a row, the failed task, the error


def test_the_table_of_collected_reports_escapes_bidi_and_escape_sequences(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = Report("acme/web", "probe", None, Status.ERROR, error="ok\x1b[2J\u202eevil").to_dict()
    (tmp_path / "r.json").write_text(json.dumps(data))
    assert main(["collect", str(tmp_path / "r.json")]) == 1
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\u202e" not in out
    assert "ok\\x1b[2J\\u202eevil" in out


def test_dotenv_never_names_an_output_like_another_identity_status() -> None:
    text = dotenv({"identity": "a", "status": "success", "outputs": {"b_status": "x", "u": "y"}})
    assert text == "RA_A_STATUS=success\nRA_A_U=y\n"


def test_dotenv_refuses_a_status_that_is_not_one() -> None:
    with pytest.raises(ValueError, match="status"):
        dotenv({"identity": "a", "status": "success\nRA_B_STATUS=success", "outputs": {}})


@pytest.mark.parametrize("brk", ["\n", "\r", "\x0b", "\x0c", "\x85", "\u2028"])
def test_dotenv_leaves_out_a_value_with_any_line_break(brk: str) -> None:
    text = dotenv({"identity": "a", "status": "success", "outputs": {"k": f"x{brk}B=1"}})
    assert text == "RA_A_STATUS=success\n"


def test_the_dotenv_command_validates_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for n, bad in enumerate(
        [
            {"identity": "a", "status": "success\nRA_X=1"},
            {"identity": "a", "status": "success", "outputs": ["x"]},
            {"identity": "../a", "status": "success"},
            {"identity": "a", "status": "success", "commands": [{"command": 1}]},
        ]
    ):
        report = tmp_path / f"{n}.json"
        report.write_text(json.dumps(bad))
        assert main(["dotenv", str(report), "-f", str(tmp_path / f"{n}.env")]) == 2
        err = capsys.readouterr().err
        assert f"invalid: {report}: not a report: " in err and "Traceback" not in err
        assert not (tmp_path / f"{n}.env").exists()


@pytest.mark.parametrize("other", ["acme-web", "acme.web", "acme_web"])
def test_identities_with_the_same_dotenv_names_are_invalid_naming_both(other: str) -> None:
    tasks = [
        {"identity": "acme/web", "agent": "probe"},
        {"identity": other, "agent": "probe"},
    ]
    with pytest.raises(InvalidInput) as caught:
        tasks_from_data(tasks)
    message = str(caught.value)
    assert f"identity {other!r} and 'acme/web'" in message and "RA_ACME_WEB_*" in message


def test_validate_reports_a_dotenv_name_collision_across_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "a.yml").write_text(yaml.safe_dump({"identity": "acme/web", "agent": "probe"}))
    (tmp_path / "b.yml").write_text(yaml.safe_dump({"identity": "acme-web", "agent": "probe"}))
    code = main(
        [
            "validate",
            str(tmp_path / "a.yml"),
            str(tmp_path / "b.yml"),
            "--agents-path",
            str(FIXTURE_AGENTS),
        ]
    )
    assert code == 2
    assert "same dotenv names" in capsys.readouterr().err
