"""Fixtures for the GitLab side: a stateful fake GitLab behind ``responses``, a client on
``http://localhost`` whose retries sleep on an injected clock, a dispatcher using that clock."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from fake_gitlab import FakeGitLab, mocked
from gitlab_helpers import ENV, Clock

from runner_agent.gitlab.api import GitLabAPI, connect
from runner_agent.gitlab.dispatch import Dispatcher
from runner_agent.gitlab.inflight import MemoryLedger
from runner_agent.gitlab.retry import RetryPolicy
from runner_agent.model.agents import AgentRegistry, default_registry


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def fake() -> Iterator[FakeGitLab]:
    server = FakeGitLab()
    with mocked(server):
        yield server


@pytest.fixture
def policy(clock: Clock) -> RetryPolicy:
    return RetryPolicy(sleep=clock.sleep, now=clock, jitter=lambda: 1.0)


@pytest.fixture
def api(fake: FakeGitLab, policy: RetryPolicy) -> GitLabAPI:
    return connect(ENV, project="42", retry_policy=policy)


@pytest.fixture
def warnings() -> list[str]:
    return []


@pytest.fixture
def dispatcher(api: GitLabAPI, clock: Clock, warnings: list[str]) -> Dispatcher:
    return Dispatcher(
        api=api,
        ledger=MemoryLedger(),
        clock=clock,
        sleep=clock.sleep,
        warn=warnings.append,
        settle=1.0,
    )


@pytest.fixture(scope="session")
def registry() -> AgentRegistry:
    return default_registry()


@pytest.fixture
def run_cli(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    clock: Clock,
) -> Callable[..., tuple[int, str, str]]:
    """Run the CLI against the fake GitLab, its retries and polls sleeping on the test's
    clock (the CLI's seams); returns (exit code, stdout, stderr)."""
    from runner_agent.cli import main
    from runner_agent.cli._common import Seams

    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("RUNNER_AGENT_PROJECT", raising=False)
    seams = Seams(clock=clock, sleep=clock.sleep)

    def run(*args: str) -> tuple[int, str, str]:
        code = main(list(args), seams=seams)
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


@pytest.fixture(autouse=True)
def _fresh_gitlab_version() -> Iterator[None]:
    """Each test's GitLab answers GET /version anew (the toolkit asks once per process)."""
    from runner_agent.gitlab.compat import forget_versions

    forget_versions()
    yield
    forget_versions()
