"""The package's public names resolve, and a local run's import does not load the GitLab
client (the agent job starts faster, and works where python-gitlab is never used)."""

from __future__ import annotations

import subprocess
import sys

import runner_agent


def test_every_public_name_resolves() -> None:
    missing = [name for name in runner_agent.__all__ if not hasattr(runner_agent, name)]
    assert missing == []


def test_importing_the_package_or_the_run_command_loads_no_gitlab_client() -> None:
    code = (
        "import sys, runner_agent, runner_agent.cli.run_cmd;"
        "print(sorted(m for m in sys.modules if m == 'gitlab' or m.startswith('gitlab.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
