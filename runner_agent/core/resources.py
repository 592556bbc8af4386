"""Where the shipped data lives: the Ansible agents and the GitLab CI templates.

A wheel carries them under ``runner_agent/_data/`` (see pyproject.toml); a source checkout or an
editable install finds them at the repository's top level.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["ansible_dir", "data_dir", "schema_path", "templates_dir"]

_PACKAGE = Path(__file__).resolve().parent.parent


def data_dir(name: str) -> Path:
    """The shipped folder ``name`` ("ansible" or "templates")."""
    installed = _PACKAGE / "_data" / name
    if installed.is_dir():
        return installed
    checkout = _PACKAGE.parent / name
    if checkout.is_dir():
        return checkout
    raise FileNotFoundError(f"runner_agent data folder {name!r} is missing from the installation")


def ansible_dir() -> Path:
    return data_dir("ansible")


def templates_dir() -> Path:
    return data_dir("templates") / "gitlab-ci"


def schema_path(name: str = "task") -> Path:
    return _PACKAGE / "model" / "schemas" / f"{name}.schema.json"
