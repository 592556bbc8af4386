"""A wheel built from the repository carries the templates and the Ansible content, and works
when installed without the source tree (not editable)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (found,) = out.glob("runner_agent-*.whl")
    return found


def test_wheel_carries_templates_agents_and_schema(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    collection = "runner_agent/_data/ansible/ansible_collections/runner_agent/agents"
    assert f"{collection}/galaxy.yml" in names
    assert f"{collection}/plugins/module_utils/kv.py" in names
    for role in ("kv_file", "kv_etcd"):
        assert f"{collection}/roles/{role}/meta/argument_specs.yml" in names
        assert f"{collection}/plugins/modules/{role}.py" in names
    assert any(n.startswith("runner_agent/_data/templates/gitlab-ci/") for n in names)
    assert "runner_agent/model/schemas/task.schema.json" in names
    assert not [n for n in names if "__pycache__" in n or n.startswith("tests/")]


def test_installed_wheel_runs_without_the_source_tree(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-deps",
            "--no-compile",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    # the installed copy comes first on the path; the dependencies come from this venv
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = (
        "import json, runner_agent, runner_agent.core.resources as r;"
        "print(json.dumps([runner_agent.__file__, str(r.ansible_dir()), str(r.templates_dir())]))"
    )
    where = json.loads(
        subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            cwd=tmp_path,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    assert all(path.startswith(str(target)) for path in where)
    agents = subprocess.run(
        [sys.executable, "-m", "runner_agent", "agents", "--output", "json"],
        env=env,
        cwd=tmp_path,
        check=True,
        capture_output=True,
        text=True,
    )
    listed = {a["name"]: a for a in json.loads(agents.stdout)}
    assert {"kv_file", "kv_etcd"} <= set(listed)
    assert listed["kv_file"]["path"].startswith(str(target))
    assert {"install", "update", "uninstall", "cycle", "backup"} <= set(
        listed["kv_file"]["commands"]
    )
