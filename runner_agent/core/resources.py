"""Where the shipped data lives: the Ansible agents and the GitLab CI templates.

A wheel carries them under ``runner_agent/_data/`` (see pyproject.toml); a source checkout or an
editable install finds them at the repository's top level.
"""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "COLLECTION",
    "ansible_dir",
    "collection_dir",
    "data_dir",
    "schema_path",
    "shipped_roles_dir",
    "templates_dir",
]

COLLECTION = ("runner_agent", "agents")  # the shipped agents' Ansible collection

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
    """The folder to put on Ansible's collections path: it holds ``ansible_collections/``."""
    return data_dir("ansible")


def collection_dir() -> Path:
    """The shipped agents' collection (galaxy.yml, roles, plugins)."""
    return ansible_dir().joinpath("ansible_collections", *COLLECTION)


def shipped_roles_dir() -> Path:
    """The shipped agents: the collection's roles."""
    return collection_dir() / "roles"


def templates_dir() -> Path:
    return data_dir("templates") / "gitlab-ci"


def schema_path(name: str = "task") -> Path:
    return _PACKAGE / "model" / "schemas" / f"{name}.schema.json"
