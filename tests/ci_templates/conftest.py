"""Run pipelines with a real CI engine: gitlab-ci-local's shell executor in a throwaway repo.

gitlab-ci-local (npm, installed by `make setup` into tools/) runs shell jobs in the repository
itself, so the jobs see the task files the test renders there. Its child pipelines receive
only the trigger job's variables, not `--variable`: the variables every job needs are also set
in its environment, as a GitLab project's CI/CD variables reach child pipelines.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ci_templates.ci_local import TOOLS, Ci


@pytest.fixture
def ci(tmp_path: Path) -> Ci:
    engine = TOOLS / "gitlab-ci-local"
    assert engine.exists(), f"{engine} is missing: run `make setup` (npm install in tools/)"
    assert shutil.which("rsync"), "gitlab-ci-local needs rsync: apt-get install rsync"
    repo = tmp_path / "repo"
    repo.mkdir()
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, check=True)
    env = {
        **os.environ,
        # the jobs call `runner-agent` and Ansible from this venv, gitlab-ci-local from tools/
        "PATH": os.pathsep.join([str(TOOLS), str(Path(sys.executable).parent), os.environ["PATH"]]),
        "RUNNER_AGENT_LOCAL": "1",
        "RUNNER_AGENT_STATE_DIR": str(tmp_path / "state"),
    }
    for name in ("CI_PROJECT_DIR", "CI_JOB_NAME", "GITLAB_CI"):  # when the suite runs in a job
        env.pop(name, None)
    return Ci(repo, env, tmp_path / "gcl-home")


@pytest.fixture
def yaml_text() -> Callable[[Any], str]:
    import yaml

    return lambda data: yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
