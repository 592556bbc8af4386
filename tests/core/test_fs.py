"""runner_agent.core.fs: the one safe write, and lock files that never follow a link."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from runner_agent.core import fs
from runner_agent.report.model import Report, Status


def test_write_replaces_the_file_with_private_permissions_whatever_the_umask(
    tmp_path: Path,
) -> None:
    target = tmp_path / "out" / "report.json"
    old = os.umask(0)
    try:
        fs.write_text(target, "new")
    finally:
        os.umask(old)
    assert target.read_text() == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_write_gives_a_replaced_file_the_asked_mode_not_the_old_one(tmp_path: Path) -> None:
    target = tmp_path / "pipeline.yml"
    target.write_text("old")
    target.chmod(0o666)
    fs.write_text(target, "new", mode=fs.PUBLIC)
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_write_refuses_a_symlink_at_the_target_and_leaves_its_target_alone(
    tmp_path: Path,
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    link = tmp_path / "report.json"
    link.symlink_to(victim)
    with pytest.raises(fs.UnsafePath, match="symbolic link") as caught:
        fs.write_text(link, "data")
    assert str(link) in str(caught.value)
    assert victim.read_text() == "precious" and link.is_symlink()


def test_write_leaves_no_temporary_file_behind(tmp_path: Path) -> None:
    fs.write_text(tmp_path / "a.json", "x")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_write_never_writes_through_a_link_planted_at_the_old_fixed_temporary_name(
    tmp_path: Path,
) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / ".report.json.tmp").symlink_to(victim)  # the name the old writer used
    Report("a/b", "kv_file", None, Status.SUCCESS).write(tmp_path / "report.json")
    assert victim.read_text() == "precious"
    assert '"identity": "a/b"' in (tmp_path / "report.json").read_text()


def test_write_under_a_file_is_a_clear_error_naming_the_path(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("")
    target = tmp_path / "blocker" / "r.json"
    with pytest.raises(fs.UnsafePath) as caught:
        fs.write_text(target, "x")
    assert str(caught.value).startswith(f"{target}: cannot write")
    assert caught.value.exit_code == 2


def test_write_into_an_unwritable_folder_is_a_clear_error() -> None:
    # /proc refuses new files even to root, who may write a chmod-ed read-only folder
    with pytest.raises(fs.UnsafePath, match="cannot write"):
        fs.write_text(Path("/proc/self/ra-report.json"), "x")


def test_write_refuses_a_folder_at_the_target(tmp_path: Path) -> None:
    (tmp_path / "r.json").mkdir()
    with pytest.raises(fs.UnsafePath, match="not a regular file"):
        fs.write_text(tmp_path / "r.json", "x")


def test_check_writable_refuses_a_link_before_anything_is_written(tmp_path: Path) -> None:
    (tmp_path / "r.env").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(fs.UnsafePath, match="symbolic link"):
        fs.check_writable(tmp_path / "r.env")
    assert not (tmp_path / "elsewhere").exists()


def test_lock_file_refuses_a_symlink_and_never_truncates_its_target(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious")
    (tmp_path / "x.lock").symlink_to(victim)
    with pytest.raises(fs.UnsafePath, match="symbolic link"), fs.lock_file(tmp_path / "x.lock"):
        pass
    assert victim.read_text() == "precious"


def test_lock_file_is_created_private(tmp_path: Path) -> None:
    with fs.lock_file(tmp_path / "x.lock"):
        pass
    assert stat.S_IMODE((tmp_path / "x.lock").stat().st_mode) == 0o600


def test_read_text_refuses_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "target").write_text("{}")
    (tmp_path / "doc.json").symlink_to(tmp_path / "target")
    with pytest.raises(fs.UnsafePath, match="symbolic link"):
        fs.read_text(tmp_path / "doc.json")


def test_read_text_of_a_missing_file_is_none(tmp_path: Path) -> None:
    assert fs.read_text(tmp_path / "nothing.json") is None
