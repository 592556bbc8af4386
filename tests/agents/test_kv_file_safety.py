"""kv_file where an attacker or an unlucky operator would push: paths with $VAR or ~, symbolic
links planted at the path, file modes and ownership, values a format cannot hold."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
import yaml
from agents.ansible_run import load_library, run_module

kv = load_library("kv_file", "kv_file")


def _write(tmp_path: Path, **args: Any) -> dict[str, Any]:
    return run_module("kv_file", "kv_file", args, tmp_path / "work")


def test_path_is_not_expanded_from_the_runners_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RA_SECRET_TOKEN", "s3cr3t-value")
    target = f"{tmp_path}/$RA_SECRET_TOKEN/app.json"
    result = _write(tmp_path, path=target, values={"k": 1})
    assert result["changed"] is True and result["path"] == target
    assert Path(target).is_file() and not (tmp_path / "s3cr3t-value").exists()
    assert "s3cr3t-value" not in json.dumps(result)


@pytest.mark.parametrize("path", ["~/app.json", "$HOME/app.json", "relative/app.json"])
def test_path_must_be_absolute(tmp_path: Path, path: str) -> None:
    result = _write(tmp_path, path=path, values={"k": 1})
    assert result["failed"] is True and "path must be absolute" in result["msg"]
    assert list((tmp_path / "work").iterdir()) == [tmp_path / "work" / "kv_file-args.json"]


def test_backup_dir_is_not_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RA_SECRET_TOKEN", "s3cr3t-value")
    target = tmp_path / "app.json"
    target.write_text("{}\n")
    folder = f"{tmp_path}/$RA_SECRET_TOKEN"
    result = _write(tmp_path, path=str(target), operation="backup", backup_dir=folder)
    assert result["backup_path"].startswith(folder + "/app.json.")
    assert "s3cr3t-value" not in json.dumps(result)


@pytest.mark.parametrize("operation", ["write", "remove", "backup"])
def test_a_symbolic_link_at_the_path_is_refused_and_its_target_untouched(
    tmp_path: Path, operation: str
) -> None:
    victim = tmp_path / "victim.conf"
    victim.write_text("precious\n")
    victim.chmod(0o644)
    link = tmp_path / "app.json"
    link.symlink_to(victim)
    result = _write(tmp_path, path=str(link), values={"k": 1}, operation=operation)
    assert result["failed"] is True
    assert result["msg"].startswith(f"{link} is a symbolic link")
    assert link.is_symlink() and victim.read_text() == "precious\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.json", "victim.conf", "work"]


def test_a_dangling_symbolic_link_at_the_path_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "app.json"
    link.symlink_to(tmp_path / "planted-elsewhere")
    result = _write(tmp_path, path=str(link), values={"k": 1})
    assert result["failed"] is True and "is a symbolic link" in result["msg"]
    assert not (tmp_path / "planted-elsewhere").exists()


def test_a_new_file_without_mode_is_private(tmp_path: Path) -> None:
    target = tmp_path / "app.json"
    assert _write(tmp_path, path=str(target), values={"token": "x"})["changed"] is True
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_a_rewrite_leaves_no_temporary_file_behind(tmp_path: Path) -> None:
    target = tmp_path / "app.json"
    _write(tmp_path, path=str(target), values={"k": 1})
    _write(tmp_path, path=str(target), values={"k": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["app.json", "work"]


def test_symbolic_mode_is_taken_as_ansibles_file_modules_take_it(tmp_path: Path) -> None:
    target = tmp_path / "app.json"
    result = _write(tmp_path, path=str(target), values={"k": 1}, mode="u=rw,g=r,o=")
    assert result["changed"] is True
    assert stat.S_IMODE(target.stat().st_mode) == 0o640


def test_a_mode_only_change_is_reported_with_its_diff(tmp_path: Path) -> None:
    target = tmp_path / "app.json"
    _write(tmp_path, path=str(target), values={"k": 1}, mode="0600")
    again = _write(tmp_path, path=str(target), values={"k": 1}, mode="0644")
    assert again["changed"] is True and again["drift"] == []
    assert {"before": {"mode": "0600"}, "after": {"mode": "0644"}} in again["diff"]
    assert stat.S_IMODE(target.stat().st_mode) == 0o644


def test_an_invalid_mode_fails_and_writes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "app.json"
    result = _write(tmp_path, path=str(target), values={"k": 1}, mode="rwx-bogus")
    assert result["failed"] is True and "mode" in result["msg"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"]


def test_owner_and_group_are_set(tmp_path: Path) -> None:
    target = tmp_path / "app.json"
    # root (the test machines and CI) gives the file away; anyone else keeps their own ids
    uid, gid = (65534, 65534) if os.geteuid() == 0 else (os.geteuid(), os.getegid())
    result = _write(tmp_path, path=str(target), values={"k": 1}, owner=str(uid), group=str(gid))
    assert result["changed"] is True
    assert (target.stat().st_uid, target.stat().st_gid) == (uid, gid)


def test_a_rewrite_keeps_the_files_mode_and_owner(tmp_path: Path) -> None:
    target = tmp_path / "app.json"
    _write(tmp_path, path=str(target), values={"k": 1}, mode="0640")
    before = target.stat()
    _write(tmp_path, path=str(target), values={"k": 2})
    after = target.stat()
    assert stat.S_IMODE(after.st_mode) == 0o640
    assert (after.st_uid, after.st_gid) == (before.st_uid, before.st_gid)
    assert after.st_ino != before.st_ino  # replaced by a rename, not rewritten in place


def test_yaml_escapes_del_and_what_yaml_readers_refuse(tmp_path: Path) -> None:
    values = {"k\x7f": "a\x7fb\x85c\u2028d\ufeffe\x00f\x9f"}
    text = kv.render(values, "yaml")
    assert "\x7f" not in text and "\x85" not in text and "\u2028" not in text
    assert yaml.safe_load(text) == values and kv.parse_yaml_subset(text) == values


def test_a_yaml_file_with_del_shows_no_drift_after_its_write(tmp_path: Path) -> None:
    target = tmp_path / "app.yaml"
    args: dict[str, Any] = {"path": str(target), "format": "yaml", "values": {"k": "a\x7fb"}}
    assert _write(tmp_path, **args)["changed"] is True
    cycle = run_module("kv_file", "kv_file", args, tmp_path / "work", check=True)
    assert cycle["changed"] is False and cycle["drift"] == []


@pytest.mark.parametrize(
    ("fmt", "values", "message"),
    [
        ("json", {"k": float("nan")}, "json: NaN and infinity cannot be written"),
        ("json", {"k": [float("inf")]}, "json: NaN and infinity cannot be written"),
        ("yaml", {"k": "\ud800"}, "yaml: the value of 'k' is not valid Unicode"),
        ("json", {"\udfff": 1}, "json: key '\\udfff' is not valid Unicode"),
        ("ini", {"k": " padded"}, "has surrounding spaces"),
        ("ini", {"k": "a\x0cb"}, "a line break or a control character"),
        ("ini", {"s": {"k\x1c": 1}}, "a line break or a control character"),
        ("ini", {" s": {"k": 1}}, "section name ' s'"),
        ("env", {"K": "a\x0bb"}, "env: the value of 'K' holds a control character"),
        ("env", {"K": "a\u2028b"}, "env: the value of 'K' holds a control character"),
    ],
)
def test_values_a_format_cannot_hold_are_refused(
    fmt: str, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(kv.KVError) as refused:
        kv.render(values, fmt)
    assert message in str(refused.value)


def test_a_refused_value_writes_nothing_and_names_the_file(tmp_path: Path) -> None:
    target = tmp_path / "app.ini"
    result = _write(tmp_path, path=str(target), format="ini", values={"k": " padded"})
    assert result["failed"] is True and result["msg"].startswith(f"{target}: ini: ")
    assert not target.exists()


def _linked_parent(tmp_path: Path) -> tuple[Path, Path, Path]:
    """The red team's case: the destination's folder replaced by a link to another folder,
    which holds a file of the destination's name, in a folder others can write (the only
    place another user can make that swap). (target, link, victim)"""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    victim = elsewhere / "app.env"
    victim.write_text("ROOT_TOKEN=precious-victim-value\n")
    victim.chmod(0o644)
    shared = tmp_path / "srv"
    shared.mkdir()
    shared.chmod(0o777)  # writable by others, not sticky
    link = shared / "conf"
    link.symlink_to(elsewhere)
    return link / "app.env", link, victim


def _refused(link: Path, target: Path) -> str:
    return (
        f"{link} is a symbolic link in a folder others can write (or theirs): kv_file does not "
        f"write through it; point the path at the real folder (path {target})"
    )


@pytest.mark.parametrize(
    ("operation", "check"),
    [("write", False), ("write", True), ("remove", False), ("remove", True), ("backup", False)],
)
def test_a_linked_parent_folder_is_refused_and_the_other_folder_untouched(
    tmp_path: Path, operation: str, check: bool
) -> None:
    target, link, victim = _linked_parent(tmp_path)
    before = sorted(p.name for p in victim.parent.iterdir())
    args: dict[str, Any] = {
        "path": str(target),
        "format": "env",
        "values": {"ROOT_TOKEN": "attacker-chosen"},
        "operation": operation,
    }
    result = run_module("kv_file", "kv_file", args, tmp_path / "work", check=check)
    assert result["failed"] is True, result
    assert result["msg"] == _refused(link, target)
    assert "precious-victim-value" not in json.dumps(result)  # not read, so not in a diff
    assert victim.read_text() == "ROOT_TOKEN=precious-victim-value\n"
    assert stat.S_IMODE(victim.stat().st_mode) == 0o644
    assert sorted(p.name for p in victim.parent.iterdir()) == before


def test_a_link_higher_up_in_a_shared_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "real" / "deep").mkdir(parents=True)
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    (shared / "top").symlink_to(tmp_path / "real")
    target = shared / "top" / "deep" / "app.json"
    result = _write(tmp_path, path=str(target), values={"k": 1})
    assert result["failed"] is True and result["msg"] == _refused(shared / "top", target)
    assert list((tmp_path / "real" / "deep").iterdir()) == []


def test_a_trusted_link_that_leads_through_a_shared_one_is_refused(tmp_path: Path) -> None:
    """A trusted link's target is walked with the same rule."""
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    (tmp_path / "elsewhere").mkdir()
    (shared / "conf").symlink_to(tmp_path / "elsewhere")
    (tmp_path / "etc").symlink_to(shared)  # made by this user in its own folder: trusted
    target = tmp_path / "etc" / "conf" / "app.json"
    result = _write(tmp_path, path=str(target), values={"k": 1})
    assert result["failed"] is True and "is a symbolic link in a folder others" in result["msg"]
    assert list((tmp_path / "elsewhere").iterdir()) == []


@pytest.mark.parametrize("sticky", [False, True])
def test_a_link_only_this_user_or_root_could_make_is_followed(tmp_path: Path, sticky: bool) -> None:
    """An operator's own link (/etc/acme -> /opt/acme/etc), in a folder no one else can
    write, or in a sticky one where no one else can replace it, is followed; a relative target
    with .. too."""
    (tmp_path / "opt" / "acme" / "etc").mkdir(parents=True)
    folder = tmp_path / "etc"
    folder.mkdir()
    folder.chmod(0o1777 if sticky else 0o755)
    (folder / "acme").symlink_to("../opt/acme/etc")
    target = folder / "acme" / "app.json"
    assert _write(tmp_path, path=str(target), values={"k": 1})["changed"] is True
    assert json.loads((tmp_path / "opt" / "acme" / "etc" / "app.json").read_text()) == {"k": 1}
    assert (folder / "acme").is_symlink()


def _stat(uid: int, mode: int) -> os.stat_result:
    return os.stat_result((mode, 0, 0, 1, uid, 0, 0, 0, 0, 0))


@pytest.mark.parametrize(
    ("link_uid", "folder_uid", "folder_mode", "trusted"),
    [
        (0, 0, 0o755, True),  # root's link in root's folder (/var/run -> /run)
        (1000, 1000, 0o700, True),  # the module's user's own
        (0, 1000, 0o755, True),
        (2000, 0, 0o1777, False),  # another user's link in /tmp
        (1000, 0, 0o1777, True),  # the module's user's link in /tmp: no one else can replace it
        (1000, 2000, 0o755, False),  # a folder another user owns (and can rewrite)
        (1000, 1000, 0o775, False),  # group-writable
        (0, 0, 0o777, False),  # world-writable, not sticky: anyone can swap the entry
    ],
)
def test_a_link_is_trusted_only_where_no_one_else_could_have_put_it(
    link_uid: int, folder_uid: int, folder_mode: int, trusted: bool
) -> None:
    link = _stat(link_uid, stat.S_IFLNK | 0o777)
    folder = _stat(folder_uid, stat.S_IFDIR | folder_mode)
    assert kv.trusted_link(link, folder, uid=1000) is trusted


def test_a_dangling_link_where_a_folder_would_be_made_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    (shared / "new").symlink_to(tmp_path / "planted")
    target = shared / "new" / "sub" / "app.json"
    result = _write(tmp_path, path=str(target), values={"k": 1})
    assert result["failed"] is True and result["msg"].startswith(f"{shared / 'new'} is a")
    assert not (tmp_path / "planted").exists()


def test_a_backup_dir_through_a_shared_link_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "app.json"
    target.write_text("{}\n")
    (tmp_path / "elsewhere").mkdir()
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    (shared / "backups").symlink_to(tmp_path / "elsewhere")
    args: dict[str, Any] = {
        "path": str(target),
        "operation": "backup",
        "backup_dir": str(shared / "backups"),
    }
    result = _write(tmp_path, **args)
    assert result["failed"] is True and "is a symbolic link" in result["msg"]
    assert list((tmp_path / "elsewhere").iterdir()) == []


def test_missing_folders_are_made_without_links(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "app.json"
    assert _write(tmp_path, path=str(target), values={"k": 1})["changed"] is True
    assert json.loads(target.read_text()) == {"k": 1}


def test_a_folder_swapped_for_a_link_after_it_was_opened_is_not_followed(tmp_path: Path) -> None:
    """The folder is held by its descriptor: replaced by a link to another folder after it was
    opened, reads and writes still go to the folder that was checked."""
    folder = tmp_path / "conf"
    folder.mkdir()
    (folder / "app.json").write_text('{"k": "checked"}')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "app.json").write_text('{"k": "victim"}')
    place = kv.Place(str(folder / "app.json"))
    try:
        folder.rename(tmp_path / "moved")
        folder.symlink_to(elsewhere)
        assert place.read() == b'{"k": "checked"}'
        os.unlink(place.name, dir_fd=place.fd)
    finally:
        place.close()
    assert not (tmp_path / "moved" / "app.json").exists()
    assert (elsewhere / "app.json").read_text() == '{"k": "victim"}'
