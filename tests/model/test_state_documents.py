"""State documents are checked on every read, and never steer where a run writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from runner_agent.cli import main
from runner_agent.core import fs
from runner_agent.core.errors import InvalidInput
from runner_agent.model.state import LocalStateStore, State, UnreadableState

FIXTURE_AGENTS = Path(__file__).resolve().parents[1] / "fixtures" / "agents"

DAMAGED = {
    "a list": [],
    "a string": "state",
    "null": None,
    "no identity": {"agent": "probe"},
    "history not a list": {"identity": "acme/web", "history": "x"},
    "history of strings": {"identity": "acme/web", "history": ["x"]},
    "outputs not an object": {"identity": "acme/web", "outputs": [1]},
    "installed not a boolean": {"identity": "acme/web", "installed": "yes"},
    "another schema": {"identity": "acme/web", "schema": 2},
}


def _store_with(tmp_path: Path, identity: str, document: object) -> tuple[LocalStateStore, Path]:
    path = tmp_path / "state" / f"{identity}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document))
    return LocalStateStore(tmp_path / "state"), path


@pytest.mark.parametrize("kind", sorted(DAMAGED))
def test_a_damaged_document_is_unreadable_naming_file_and_reason(tmp_path: Path, kind: str) -> None:
    store, path = _store_with(tmp_path, "acme/web", DAMAGED[kind])
    with pytest.raises(UnreadableState) as caught:
        store.read("acme/web")
    assert str(caught.value).startswith(f"unreadable state document: {path}: ")
    assert caught.value.exit_code == 2


def test_the_identity_inside_must_be_the_one_asked_for(tmp_path: Path) -> None:
    store, _ = _store_with(tmp_path, "acme/web", {"identity": "acme/db"})
    with pytest.raises(UnreadableState, match="holds identity 'acme/db', not 'acme/web'"):
        store.read("acme/web")


def test_an_identity_that_climbs_out_is_never_a_path(tmp_path: Path) -> None:
    store = LocalStateStore(tmp_path / "state")
    for identity in ("../../x", "/etc/x", "a/../b", "A"):
        with pytest.raises(InvalidInput, match="not a valid identity"):
            store.write(State(identity))
    assert not (tmp_path / "x.json").exists()


def test_a_state_document_behind_a_symlink_is_unreadable(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(json.dumps({"identity": "acme/web"}))
    (tmp_path / "state" / "acme").mkdir(parents=True)
    (tmp_path / "state" / "acme" / "web.json").symlink_to(elsewhere)
    with pytest.raises(UnreadableState, match="symbolic link"):
        LocalStateStore(tmp_path / "state").read("acme/web")


def test_a_symlink_at_the_lock_is_refused_and_its_target_kept(tmp_path: Path) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (tmp_path / "state" / "acme").mkdir(parents=True)
    (tmp_path / "state" / "acme" / "web.lock").symlink_to(victim)
    store = LocalStateStore(tmp_path / "state")
    with pytest.raises(fs.UnsafePath, match="symbolic link"), store.lock("acme/web", "update"):
        pass
    assert victim.read_text() == "precious"


def test_state_is_written_private(tmp_path: Path) -> None:
    LocalStateStore(tmp_path / "state").write(State("acme/web"))
    assert (tmp_path / "state" / "acme" / "web.json").stat().st_mode & 0o777 == 0o600


def _write_tasks(path: Path, *identities: str) -> Path:
    path.write_text(
        yaml.safe_dump_all(
            [
                {"identity": i, "agent": "probe", "command": "hello", "config": {"message": "x"}}
                for i in identities
            ]
        )
    )
    return path


def test_run_against_a_damaged_state_exits_2_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, damaged = _store_with(tmp_path, "cli/second", {"identity": "../../x"})
    tasks = _write_tasks(tmp_path / "t.yml", "cli/first", "cli/second")
    report = tmp_path / "out" / "report.json"
    code = main(
        [
            "run",
            str(tasks),
            "--local",
            "--state-dir",
            str(tmp_path / "state"),
            "--agents-path",
            str(FIXTURE_AGENTS),
            "--report",
            str(report),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert f"unreadable state document: {damaged}: identity: " in err
    assert "Traceback" not in err
    assert not (tmp_path / "state" / "cli" / "first.json").exists()  # the first did not run
    assert not report.exists()
    assert json.loads(damaged.read_text()) == {"identity": "../../x"}


class _Registry:
    """The package registry's one call GitLabStateStore.read makes, answering ``document``."""

    def __init__(self, document: bytes) -> None:
        self.document = document

    def get_package_file(self, package: str, version: str, file_name: str) -> bytes:
        return self.document


@pytest.mark.parametrize("kind", sorted(DAMAGED))
def test_a_damaged_document_in_gitlab_is_unreadable_too(kind: str) -> None:
    from runner_agent.gitlab.state_store import GitLabStateStore

    store = GitLabStateStore(_Registry(json.dumps(DAMAGED[kind]).encode()))  # type: ignore[arg-type]
    with pytest.raises(UnreadableState) as caught:
        store.read("acme/web")
    assert str(caught.value).startswith(
        "unreadable state document: package registry runner-agent-state/acme+web/state.json: "
    )


def test_a_document_with_a_non_finite_number_is_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "state" / "acme" / "web.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"identity": "acme/web", "outputs": {"a": 1e400, "b": NaN}}')
    with pytest.raises(UnreadableState, match="not JSON"):
        LocalStateStore(tmp_path / "state").read("acme/web")


def test_state_shows_a_document_s_control_and_bidi_characters_escaped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _store_with(
        tmp_path,
        "acme/web",
        {
            "identity": "acme/web",
            "agent": "kv\u202efile",
            "last_command": "\x1b]0;owned\x07",
            "last_status": "success\nfake: line",
            "outputs": {"k\x1b[2J": "v"},
        },
    )
    code = main(["state", "acme/web", "--state-dir", str(tmp_path / "state")])
    out = capsys.readouterr().out
    assert code == 0
    assert not any(ch in out for ch in "\x1b\x07\u202e")
    assert out.count("\n") == 3  # two lines and one output: no line of the document's own
    assert "\\x1b]0;owned\\x07" in out


@pytest.mark.parametrize("planted", ["link", "dangling link", "folder"])
def test_run_with_a_link_at_a_lock_exits_2_naming_it_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], planted: str
) -> None:
    """The red team's case: a link planted at the second task's lock file. Found when the
    lock was taken, it was a task in error (exit 1) after the first task had run."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    lock = tmp_path / "state" / "cli" / "second.lock"
    lock.parent.mkdir(parents=True)
    if planted == "link":
        lock.symlink_to(victim)
    elif planted == "dangling link":
        lock.symlink_to(tmp_path / "nowhere")
    else:
        lock.mkdir()
    tasks = _write_tasks(tmp_path / "t.yml", "cli/first", "cli/second")
    report = tmp_path / "out" / "report.json"
    argv = ["run", str(tasks), "--local", "--state-dir", str(tmp_path / "state")]
    code = main([*argv, "--agents-path", str(FIXTURE_AGENTS), "--report", str(report)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert str(lock) in err and "Traceback" not in err
    assert ("symbolic link" if "link" in planted else "not a regular file") in err
    assert not (tmp_path / "state" / "cli" / "first.json").exists()  # the first did not run
    assert not (tmp_path / "state" / "cli" / "first.lock").exists()
    assert not report.exists() and not (tmp_path / "nowhere").exists()
    assert victim.read_text() == "precious"
