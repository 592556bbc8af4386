"""The shipped agents as an Ansible collection, checked with Ansible's own tools: it builds with
`ansible-galaxy collection build`, passes `ansible-test sanity` (every test that applies to a
collection, run in a copy so nothing lands in the source tree) and `ansible-lint --profile
production`.

ansible-test first fetches a pip bootstrap script, which cannot be downloaded here: `make setup`
leaves one at ~/.ansible/test/cache/get_pip_<version>.py that runs ensurepip (see the Makefile).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml
from agents.ansible_run import BIN, COLLECTIONS

from runner_agent.core.resources import COLLECTION, collection_dir

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"  # the venv's: no other needed


def _copy(tmp_path: Path) -> Path:
    """The collection copied to tmp_path/ansible_collections/<namespace>/<name>."""
    target = tmp_path.joinpath("ansible_collections", *COLLECTION)
    shutil.copytree(
        collection_dir(), target, ignore=shutil.ignore_patterns("__pycache__", "output")
    )
    return target


def _env(tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env["ANSIBLE_COLLECTIONS_PATH"] = str(tmp_path)
    env.pop("ANSIBLE_CONFIG", None)
    return env


def test_galaxy_metadata_names_the_collection_the_roles_call() -> None:
    galaxy = yaml.safe_load((collection_dir() / "galaxy.yml").read_text())
    assert (galaxy["namespace"], galaxy["name"]) == COLLECTION
    assert galaxy["license"] == ["Apache-2.0"]
    calls = {
        next(iter(k for k in task if k.startswith("runner_agent.")), None)
        for tasks in (collection_dir() / "roles").glob("*/tasks/*.yml")
        for task in yaml.safe_load(tasks.read_text())
    } - {None}
    modules = {
        f"runner_agent.agents.{p.stem}"
        for p in (collection_dir() / "plugins" / "modules").glob("*.py")
    }
    assert calls and calls <= modules


def test_collection_builds_with_ansible_galaxy(tmp_path: Path) -> None:
    source = _copy(tmp_path / "src")
    subprocess.run(
        [str(BIN / "ansible-galaxy"), "collection", "build", str(source), "--output-path",
         str(tmp_path / "dist")],
        check=True, capture_output=True, text=True, timeout=120, env=_env(tmp_path),
    )  # fmt: skip
    (built,) = (tmp_path / "dist").glob("runner_agent-agents-*.tar.gz")
    with tarfile.open(built) as archive:
        names = set(archive.getnames())
    assert {
        "MANIFEST.json",
        "plugins/modules/kv_file.py",
        "plugins/modules/kv_etcd.py",
        "plugins/module_utils/kv.py",
        "roles/kv_file/meta/argument_specs.yml",
        "roles/kv_etcd/tasks/update.yml",
    } <= names


@pytest.mark.timeout(900)  # the first run installs each test's requirements from PyPI
def test_ansible_test_sanity_passes(tmp_path: Path) -> None:
    bootstrap = Path.home() / ".ansible" / "test" / "cache" / "get_pip_24_2.py"
    assert bootstrap.is_file(), f"{bootstrap} is missing: run `make setup`"
    root = _copy(tmp_path)
    proc = subprocess.run(
        [str(BIN / "ansible-test"), "sanity", "--python", PYTHON, "--venv", "--color", "no"],
        cwd=root, capture_output=True, text=True, timeout=880, env=_env(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-6000:]


def test_ignore_files_only_waive_the_gpl_header_check() -> None:
    for ignore in (collection_dir() / "tests" / "sanity").glob("ignore-*.txt"):
        for line in ignore.read_text().splitlines():
            entry, _, reason = line.partition(" # ")
            assert entry.endswith(" validate-modules:missing-gplv3-license"), line
            assert "Apache-2.0" in reason, line


@pytest.mark.timeout(600)
def test_ansible_lint_production_profile_passes(tmp_path: Path) -> None:
    root = _copy(tmp_path)
    proc = subprocess.run(
        [str(BIN / "ansible-lint"), "--profile", "production", "--offline", "--nocolor"],
        cwd=root, capture_output=True, text=True, timeout=580, env=_env(tmp_path),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-6000:]
    assert "Profile 'production' was required, and it passed" in proc.stdout + proc.stderr


def test_collections_path_is_the_shipped_ansible_folder() -> None:
    assert COLLECTIONS.joinpath("ansible_collections", *COLLECTION) == collection_dir()
