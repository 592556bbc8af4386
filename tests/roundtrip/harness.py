"""The round trip's harness: a GitLab stand-in serving the agent project on 127.0.0.1, and
the CLI as the operator runs it against that GitLab. Context managers, so fixtures of any
scope can use them."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_gitlab import CANARY_TOKEN, served
from standin import TOOLS, Cli, GitLabStandIn, agent_project, engine_ready, stop_processes

FIXTURE_AGENTS = Path(__file__).resolve().parent.parent / "fixtures" / "agents"


def runner_environment() -> dict[str, str]:
    """The environment of the runner's shell: no access token, nothing of an enclosing job."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CI_", "GITLAB_", "RUNNER_AGENT_")) and k != "PYTHON_GITLAB_CFG"
    }
    env["PATH"] = os.pathsep.join([str(TOOLS), str(Path(sys.executable).parent), env["PATH"]])
    return env


@contextlib.contextmanager
def running_standin(tmp_path: Path) -> Iterator[GitLabStandIn]:
    """GitLab on 127.0.0.1: project acme/agents (id 42) built from the shipped template."""
    engine_ready()
    work = tmp_path / "runner"
    work.mkdir()
    # the runner's temp folder: short (mitogen's socket path), and swept after the test
    temp = Path(tempfile.mkdtemp(prefix="ra-rt-"))
    gitlab = GitLabStandIn(
        project_repo=agent_project(tmp_path / "agents"),
        workdir=work,
        runner_env={
            **runner_environment(),
            "TMPDIR": str(temp),
            # the runner's own setting (config.toml `environment`) adding the test agents
            "RUNNER_AGENT_PATH": str(FIXTURE_AGENTS),
        },
        retry_after="1",
    )
    with served(gitlab):
        try:
            yield gitlab
        finally:  # a failed test leaves no pipeline, agent or Ansible process running
            for run in gitlab.runs.values():
                if run.process is not None and run.process.poll() is None:
                    os.killpg(run.process.pid, signal.SIGKILL)
            stop_processes(str(temp), str(work))
            gitlab.wait_idle(timeout=30)
            shutil.rmtree(temp, ignore_errors=True)


def operator_cli(standin: GitLabStandIn, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Cli:
    """``runner-agent`` on the operator's machine: an access token for the stand-in; each
    call returns (exit code, stdout, stderr)."""
    from runner_agent.cli import main
    from runner_agent.cli._common import Seams

    for name in list(os.environ):
        if name.startswith(("CI_", "GITLAB_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("GITLAB_URL", standin.base)
    monkeypatch.setenv("GITLAB_TOKEN", CANARY_TOKEN)
    monkeypatch.setenv("RUNNER_AGENT_PROJECT", "acme/agents")
    monkeypatch.setenv("RUNNER_AGENT_PATH", str(FIXTURE_AGENTS))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    # poll every second or two (the CLI grows the pause up to a minute): a shorter test
    seams = Seams(max_poll_interval=2.0)

    def run(*args: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args), seams=seams)
        return code, out.getvalue(), err.getvalue()

    return run
