"""Malformed task files through the real CLI: exit 2, a line naming file, index and field, a
useful message, no traceback, and nothing written.

Every file in tests/fixtures/bad_tasks/ holds exactly one problem and is listed in BAD below;
a few more (a huge file, a device, a pair of files) are made by the tests themselves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from runner_agent.cli import main
from runner_agent.model.taskfile import MAX_FILE_BYTES, MAX_NODES

HERE = Path(__file__).resolve().parents[1]
BAD = HERE / "fixtures" / "bad_tasks"
AGENTS = HERE / "fixtures" / "agents"

# (file, task index or None for the whole file, field or "" , fragment of the message)
CASES: list[tuple[str, int | None, str, str]] = [
    # -- not YAML/JSON at all, or not text
    ("yaml_syntax.yml", None, "", "not valid YAML at line 5, column 1: expected ',' or '}'"),
    ("json_syntax.json", None, "", "not valid JSON at line 1, column 43"),
    ("yaml_tab_indent.yml", None, "", "indent with spaces, not tabs"),
    ("yaml_bad_indent.yml", None, "", "not valid YAML at line 5, column 3"),
    ("multi_doc_second_syntax.yml", 1, "", "not valid YAML at line 7"),
    ("binary_junk.bin", None, "", "binary data"),
    ("latin1.yml", None, "", "not UTF-8 text (byte 18)"),
    ("empty.yml", None, "", "no task found"),
    ("comments_only.yml", None, "", "no task found"),
    ("scalar.yml", 0, "", "a task is a mapping, not str"),
    ("alias_bomb.yml", 0, "", f"more than {MAX_NODES} values once YAML aliases are expanded"),
    ("duplicate_key.yml", 0, "identity", "duplicate key 'identity' (line 3, column 1; first at"),
    ("duplicate_key_nested.json", 0, "config.count", "duplicate key 'count'"),
    # -- plain data only
    ("python_object_tag.yml", 0, "config", "YAML tag !!python/object/apply:os.system is not"),
    ("binary_tag.yml", 0, "config.extra.blob", "YAML tag !!binary is not allowed"),
    (
        "option_int_key.yml",
        0,
        "config",
        'key 8080 is a number; keys are strings: quote it ("8080")',
    ),
    ("option_nan.yml", 0, "config.count", "nan is not a finite number"),
    ("deep_nesting.yml", 0, "config.extra", "nested deeper than 64 levels"),
    # -- wrong types
    ("identity_int.yml", 0, "identity", 'is a number; expected a string: quote it ("42")'),
    ("config_list.yml", 0, "config", "is a list; expected a mapping"),
    ("hosts_string.yml", 0, "hosts", "'localhost' is not valid here: The automation endpoints"),
    ("hosts_empty_list.yml", 0, "hosts", "should be non-empty"),
    ("hosts_bad_name.yml", 0, "hosts[1]", "'web 2' is not valid: A host name"),
    ("timeout_soon.yml", 0, "timeout", "'soon' is not valid: a duration such as 30s, 10m or 2h"),
    ("timeout_zero.yml", 0, "timeout", "0 is less than the minimum of 1"),
    ("timeout_too_long.yml", 0, "timeout", "720000s (200h) is longer than the limit of 168h"),
    ("runner_tags_string.yml", 0, "runner.tags", "'acme-dc1' is a string; expected a list"),
    ("version_number.yml", 0, "version", 'quote it ("1.2")'),
    ("outputs_from_string.yml", 0, "outputs_from", "'acme/db' is a string; expected a list"),
    # -- missing and unknown fields
    ("missing_identity.yml", 0, "identity", "required field is missing"),
    ("missing_agent.json", 0, "agent", "required field is missing"),
    ("unknown_field.yml", 0, "colour", "unknown field (known: agent, apiVersion, check, command"),
    ("unknown_runner_field.yml", 0, "runner.image", "unknown field (known: tags)"),
    ("api_version_unknown.yml", 0, "apiVersion", "expected 'runner-agent/v1'"),
    # -- agent, command and config against the agent's argument spec
    ("agent_bad_name.yml", 0, "agent", "'Probe' is not valid: Lower-case letters"),
    ("unknown_agent.yml", 0, "agent", "unknown agent 'nope' (known: "),
    ("unknown_command.yml", 0, "command", "agent 'probe' has no command 'explode' (it has: "),
    ("option_wrong_type.yml", 0, "config.count", "unable to convert to int"),
    ("option_embedded_placeholder_int.yml", 0, "config.count", "unable to convert to int"),
    ("unknown_option.yml", 0, "config.colour", "unknown option (the agent accepts: count"),
    ("option_name_hyphen.yml", 0, "config.my-option", "An option name"),
    ("missing_required_option.yml", 0, "config.message", "missing required arguments: message"),
    (
        "choice_violation.yml",
        0,
        "config.format",
        "value of format must be one of: json, yaml, ini, env, got: xml",
    ),
    # -- identity: path traversal and friends
    ("identity_dotdot.yml", 0, "identity", "'..' segments are not allowed (path traversal)"),
    ("identity_inner_dotdot.yml", 0, "identity", "'..' segments are not allowed (path traversal)"),
    ("identity_double_dot.yml", 0, "identity", "'..' is not allowed (GitLab refuses it"),
    ("identity_absolute.yml", 0, "identity", "must not start with '/' (absolute path)"),
    ("identity_double_slash.yml", 0, "identity", "empty segment ('//')"),
    ("identity_upper.yml", 0, "identity", "upper-case letters are not allowed"),
    ("identity_trailing_slash.yml", 0, "identity", "must not end with '/'"),
    ("identity_hidden.yml", 0, "identity", "segment '.hidden' must start with a lower-case"),
    ("identity_empty.yml", 0, "identity", "must not be empty"),
    ("outputs_from_traversal.yml", 0, "outputs_from[0]", "(path traversal)"),
    # -- the bad one among good ones: the index names it
    ("list_one_bad.yml", 1, "identity", "'Acme/Db' is not a valid identity"),
    ("list_one_bad.json", 1, "agent", "required field is missing"),
    ("multi_doc_second_bad.yml", 1, "hosts", "3 is not valid here"),
    # -- placeholders and outputs
    ("placeholder_bad_env.yml", 0, "config.message", "bad placeholder '${env:1BAD}'"),
    ("placeholder_unclosed.yml", 0, "config.message", "missing the closing '}'"),
    (
        "placeholder_outputs_unlisted.yml",
        0,
        "config.message",
        "${outputs:x:y} names 'x', which is not listed in outputs_from",
    ),
    ("outputs_from_self.yml", 0, "outputs_from", "a task cannot read its own outputs"),
    ("same_identity_two_agents.yml", 1, "agent", "identity 'acme/web' uses agent 'probe' in "),
]


PARAMS = [pytest.param(*case, id=case[0]) for case in CASES]


def prefix(path: Path | str, index: int | None, field: str) -> str:
    """The start of the line the CLI prints for a problem: ``invalid: file[index] field:``."""
    where = f"invalid: {path}"
    if index is not None:
        where += f"[{index}]"
    if field:
        where += f" {field}"
    return where + ":"


def validate(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    code = main(["validate", "--agents-path", str(AGENTS), *map(str, args)])
    out, err = capsys.readouterr()
    return code, out, err


def listing(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")}


def test_fixture_table_covers_every_bad_file() -> None:
    on_disk = {p.name for p in BAD.iterdir() if p.is_file()}
    listed = {c[0] for c in CASES}
    assert on_disk == listed
    assert len(on_disk) >= 30


@pytest.mark.parametrize(("name", "index", "field", "fragment"), PARAMS)
def test_bad_task_file(
    capsys: pytest.CaptureFixture[str], name: str, index: int | None, field: str, fragment: str
) -> None:
    path = BAD / name
    before = listing(BAD)
    code, out, err = validate(capsys, path)
    assert code == 2
    assert out == ""
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, f"one problem per fixture, got: {err}"
    assert lines[0].startswith(prefix(path, index, field)), lines[0]
    assert fragment in lines[0]
    assert listing(BAD) == before


def test_every_problem_of_every_file_is_reported_at_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    names = ["option_wrong_type.yml", "yaml_syntax.yml", "list_one_bad.yml", "timeout_soon.yml"]
    code, _, err = validate(capsys, *(BAD / n for n in names))
    assert code == 2
    lines = err.splitlines()
    assert len(lines) == 4
    for name, line in zip(names, lines, strict=True):
        assert line.startswith(f"invalid: {BAD / name}")


def test_same_identity_with_two_agents_across_files(capsys: pytest.CaptureFixture[str]) -> None:
    a, b = BAD / "same_identity" / "a.yml", BAD / "same_identity" / "b.yml"
    assert validate(capsys, a)[0] == 0
    assert validate(capsys, b)[0] == 0
    code, _, err = validate(capsys, a, b)
    assert code == 2
    assert err.splitlines() == [
        f"{prefix(b, 0, 'agent')} identity 'acme/web' uses agent 'probe' in {a}[0]"
    ]


def test_huge_file_is_refused_before_it_is_read(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "huge.yml"
    block = "identity: acme/web\nagent: probe\n" + "# padding\n" * 1000
    with path.open("w") as f:
        f.write(block * (MAX_FILE_BYTES // len(block) + 1))
    code, _, err = validate(capsys, path)
    assert code == 2
    assert err.strip() == f"{prefix(path, None, '')} file is {path.stat().st_size} bytes; " + (
        f"at most {MAX_FILE_BYTES}: refused"
    )


def test_endless_device_is_refused_not_read_forever(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = validate(capsys, "/dev/zero")
    assert code == 2
    assert f"larger than {MAX_FILE_BYTES} bytes" in err


def test_missing_file_and_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = validate(capsys, tmp_path / "nope.yml", tmp_path)
    assert code == 2
    lines = err.splitlines()
    assert (
        lines[0]
        == f"{prefix(tmp_path / 'nope.yml', None, '')} cannot read: No such file or directory"
    )
    assert lines[1].startswith(f"{prefix(tmp_path, None, '')} cannot read: ")


def test_big_but_allowed_alias_use_is_fine(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "anchors.yml"
    path.write_text(
        "- &web {identity: acme/web, agent: probe, config: {message: hi}}\n"
        "- {<<: *web, identity: acme/db}\n"
    )
    code, out, err = validate(capsys, path)
    assert (code, err) == (0, "")
    assert out.strip() == "ok: 2 task(s) in 1 file(s)"


# -- through a real process: exit status, no traceback, nothing written ------------------------

SUBPROCESS_CASES = [
    "yaml_syntax.yml",
    "binary_junk.bin",
    "alias_bomb.yml",
    "python_object_tag.yml",
    "identity_dotdot.yml",
    "unknown_option.yml",
]


def _cli(
    *args: str | Path, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner_agent", *map(str, args)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_validate_in_a_process(tmp_path: Path, name: str) -> None:
    proc = _cli("validate", "--agents-path", AGENTS, BAD / name, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith(f"invalid: {BAD / name}")
    assert list(tmp_path.iterdir()) == []


RUN_CASES = [
    "yaml_syntax.yml",
    "duplicate_key.yml",
    "identity_dotdot.yml",
    "unknown_command.yml",
    "option_wrong_type.yml",
    "placeholder_outputs_unlisted.yml",
]


@pytest.mark.parametrize("name", RUN_CASES)
def test_run_refuses_before_anything_is_written(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    name: str,
) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    state, report = tmp_path / "state", tmp_path / "out" / "report.json"
    args = ["run", str(BAD / name), "--local", "--agents-path", str(AGENTS)]
    code = main([*args, "--state-dir", str(state), "--report", str(report)])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert err.startswith(f"invalid: {BAD / name}")
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tmp"]
    assert list(temp.iterdir()) == []
    # without --state-dir: the default state folder is not created either
    assert main(args) == 2
    assert not (tmp_path / "xdg").exists()


def test_run_in_a_process_writes_nothing(tmp_path: Path) -> None:
    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path / "xdg"), "TMPDIR": str(tmp_path)}
    proc = _cli(
        "run",
        BAD / "unknown_agent.yml",
        "--local",
        "--state-dir",
        tmp_path / "state",
        "--report",
        tmp_path / "report.json",
        cwd=tmp_path,
        env=env,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert f"{prefix(BAD / 'unknown_agent.yml', 0, 'agent')} unknown agent 'nope'" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_validate_json_output_is_not_printed_for_bad_input(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = main(
        ["validate", "--output", "json", "--agents-path", str(AGENTS), str(BAD / "empty.yml")]
    )
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert err.startswith("invalid: ")


def test_usage_errors_are_invalid_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate"]) == 2
    assert "Missing argument" in capsys.readouterr().err
    assert main(["validate", "--output", "xml", str(BAD / "empty.yml")]) == 2


# -- the valid side of the same command ---------------------------------------------------------


def test_validate_ok(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    a = tmp_path / "a.yml"
    a.write_text("identity: acme/web\nagent: probe\n")
    b = tmp_path / "b.json"
    b.write_text(json.dumps([{"identity": "acme/db", "agent": "probe", "timeout": 30}]))
    code, out, err = validate(capsys, a, b)
    assert (code, err) == (0, "")
    assert out == "ok: 2 task(s) in 2 file(s)\n"


def test_validate_output_json_prints_the_tasks(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "tasks.yml"
    path.write_text(
        "identity: acme/web\n"
        "agent: probe\n"
        "command: update\n"
        "version: '1.0'\n"
        "config: {message: '${env:GREETING}', count: '${env:N}'}\n"
        "runner: {tags: [acme-dc1]}\n"
        "timeout: 10m\n"
        "---\n"
        "identity: acme/db\n"
        "agent: probe\n"
        "outputs_from: [acme/web]\n"
        "config: {message: 'from ${outputs:acme/web:greeting}'}\n"
    )
    code, out, err = validate(capsys, "--output", "json", path)
    assert (code, err) == (0, "")
    assert json.loads(out) == {
        "valid": True,
        "tasks": [
            {
                "identity": "acme/web",
                "agent": "probe",
                "command": "update",
                "version": "1.0",
                "config": {"message": "${env:GREETING}", "count": "${env:N}"},
                "hosts": ["localhost"],
                "runner": {"tags": ["acme-dc1"]},
                "timeout": 600,
            },
            {
                "identity": "acme/db",
                "agent": "probe",
                "config": {"message": "from ${outputs:acme/web:greeting}"},
                "hosts": ["localhost"],
                "timeout": 3600,
                "outputs_from": ["acme/web"],
            },
        ],
    }
