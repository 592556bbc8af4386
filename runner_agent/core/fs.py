"""The one safe way to write a file, and to open a lock file, for every writer of the toolkit.

A write goes to a temporary file created exclusively (``O_EXCL``, ``O_NOFOLLOW``) with a random
name in the target's folder, with its permissions set before any data reaches it (0600 unless
asked otherwise: reports, state and dotenv files can hold what an operator would not share),
is flushed to disk (``fsync``) and renamed over the target, so a reader sees the old file or
the new one, never half of one. A symbolic link, a folder or anything else that is not a
regular file at the target is refused, and so is a link at a lock file: a planted link never
has the toolkit write, truncate or chmod what it points to.

Every failure is :class:`UnsafePath`, an :class:`InvalidInput` naming the path (exit 2).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path

from runner_agent.core.errors import InvalidInput, Problem

__all__ = [
    "PRIVATE",
    "PUBLIC",
    "UnsafePath",
    "check_lockable",
    "check_writable",
    "lock_file",
    "read_text",
    "write_bytes",
    "write_text",
]

PRIVATE = 0o600  # anything that can hold a secret, or a run's outcome
PUBLIC = 0o644  # rendered pipeline YAML, meant to be committed and read by others
_DIR_MODE = 0o700


class UnsafePath(InvalidInput):
    """A path the toolkit will not or cannot write (or read): it names the path and why."""

    def __init__(self, path: Path | str, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(Problem(self.path, reason))


def _reason(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _refuse_non_regular(path: Path, what: str) -> None:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    except OSError as exc:
        raise UnsafePath(path, f"cannot {what}: {_reason(exc)}") from exc
    if stat.S_ISLNK(info.st_mode):
        raise UnsafePath(path, f"refusing to {what} through a symbolic link")
    if not stat.S_ISREG(info.st_mode):
        raise UnsafePath(path, f"cannot {what}: not a regular file")


def _make_parent(path: Path) -> None:
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True, mode=_DIR_MODE)
    except FileExistsError as exc:  # a file where a folder should be
        raise UnsafePath(path, f"cannot write: {parent} is not a folder") from exc
    except NotADirectoryError as exc:
        raise UnsafePath(path, "cannot write: a parent of it is a file, not a folder") from exc
    except OSError as exc:
        raise UnsafePath(path, f"cannot write: cannot create {parent}: {_reason(exc)}") from exc
    if not parent.is_dir():
        raise UnsafePath(path, f"cannot write: {parent} is not a folder")


def check_writable(path: Path) -> None:
    """Raise :class:`UnsafePath` unless ``path`` can be written by :func:`write_bytes` (its
    folder exists or can be made, is writable, and the path is not a link or a folder).

    For paths written after work was done (a run's report), so a bad one stops the run
    before it starts. Creates missing folders.
    """
    path = Path(path)
    _make_parent(path)
    _refuse_non_regular(path, "write")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise UnsafePath(path, f"cannot write: {path.parent} is not writable")


def check_lockable(path: Path) -> None:
    """Raise :class:`UnsafePath` when :func:`lock_file` would refuse ``path`` (a link, a
    folder or anything but a regular file is there), so a run can stop before it starts.
    Creates nothing; a missing lock file is fine."""
    _refuse_non_regular(Path(path), "lock")


def write_bytes(path: Path, data: bytes, *, mode: int = PRIVATE) -> None:
    """Replace ``path`` with ``data`` atomically (see the module). Raises UnsafePath."""
    path = Path(path)
    _make_parent(path)
    _refuse_non_regular(path, "write")
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(tmp, flags, mode)
    except OSError as exc:
        raise UnsafePath(path, f"cannot write: {_reason(exc)}") from exc
    try:
        try:
            os.fchmod(fd, mode)  # exact, whatever the umask: before any data is written
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)  # replaces a link planted since the check, never follows it
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise UnsafePath(path, f"cannot write: {_reason(exc)}") from exc
        raise
    with contextlib.suppress(OSError):  # the rename itself survives a crash
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def write_text(path: Path, text: str, *, mode: int = PRIVATE) -> None:
    """:func:`write_bytes` of ``text`` as UTF-8. Raises UnsafePath."""
    write_bytes(path, text.encode("utf-8"), mode=mode)


def read_text(path: Path) -> str | None:
    """The UTF-8 text of a regular file, None when there is none. A link is refused (the
    toolkit never reads its state through a planted link). Raises UnsafePath."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePath(path, "refusing to read through a symbolic link") from exc
        raise UnsafePath(path, f"cannot read: {_reason(exc)}") from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafePath(path, "cannot read: not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read()
    except OSError as exc:
        raise UnsafePath(path, f"cannot read: {_reason(exc)}") from exc
    finally:
        os.close(fd)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnsafePath(path, f"cannot read: not UTF-8 text ({exc.reason})") from exc


@contextlib.contextmanager
def lock_file(path: Path) -> Iterator[int]:
    """Open (creating, 0600) the lock file ``path`` for reading and writing; yield its
    descriptor, closed on exit. A link or anything but a regular file there is refused, so a
    lock never truncates another file. Raises UnsafePath."""
    path = Path(path)
    _make_parent(path)
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    try:
        fd = os.open(path, flags, PRIVATE)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UnsafePath(path, "refusing to lock through a symbolic link") from exc
        raise UnsafePath(path, f"cannot open the lock: {_reason(exc)}") from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafePath(path, "cannot lock: not a regular file")
        os.set_blocking(fd, True)
        yield fd
    finally:
        os.close(fd)
