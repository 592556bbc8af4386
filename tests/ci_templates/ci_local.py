"""A throwaway git repository and the gitlab-ci-local that runs its pipelines."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tools" / "node_modules" / ".bin"


@dataclass
class Ci:
    """A git repository and the gitlab-ci-local that runs its pipelines."""

    repo: Path
    env: dict[str, str]
    home: Path

    def write(self, files: dict[str, str]) -> None:
        for name, text in files.items():
            path = self.repo / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")

    def commit(self) -> None:
        git = ["git", "-c", "user.email=ci@example.invalid", "-c", "user.name=ci"]
        subprocess.run([*git, "add", "-A"], cwd=self.repo, check=True)
        subprocess.run([*git, "commit", "-qm", "tasks"], cwd=self.repo, check=True)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run the pipeline; the log is in the result's stdout."""
        variables = [f"--variable={k}={self.env[k]}" for k in _JOB_VARIABLES]
        return subprocess.run(
            [
                str(TOOLS / "gitlab-ci-local"),
                "--no-color",
                f"--home={self.home}",
                *variables,
                *args,
            ],
            cwd=self.repo,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=240,
            check=False,
        )

    def json(self, name: str) -> Any:
        return json.loads((self.repo / name).read_text(encoding="utf-8"))


_JOB_VARIABLES = ("RUNNER_AGENT_LOCAL", "RUNNER_AGENT_STATE_DIR")
