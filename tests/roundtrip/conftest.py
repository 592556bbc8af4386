"""The round trip's fixtures: the agent project, the GitLab stand-in serving it on 127.0.0.1,
and the CLI as a person or a script runs it against that GitLab."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "gitlab"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import operator_cli, running_standin
from standin import Cli, GitLabStandIn


@pytest.fixture
def standin(tmp_path: Path) -> Iterator[GitLabStandIn]:
    with running_standin(tmp_path) as gitlab:
        yield gitlab


@pytest.fixture
def cli(standin: GitLabStandIn, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Cli:
    return operator_cli(standin, monkeypatch, tmp_path)


@pytest.fixture(autouse=True)
def _fresh_gitlab_version() -> Iterator[None]:
    """Each test's GitLab answers GET /version anew (the toolkit asks once per process)."""
    from runner_agent.gitlab.compat import forget_versions

    forget_versions()
    yield
    forget_versions()
