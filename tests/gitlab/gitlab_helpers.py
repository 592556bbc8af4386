"""Helpers shared by the GitLab tests: the canaries, an injected clock, task builders."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from fake_gitlab import CANARY_TOKEN

from runner_agent.model.agents import AgentRegistry
from runner_agent.model.tasks import Task, tasks_from_data

RunCli = Callable[..., tuple[int, str, str]]
CANARY_SECRET = "s3cr3t-CANARY-value-42"
ENV = {"GITLAB_URL": "http://localhost", "GITLAB_TOKEN": CANARY_TOKEN}
# a GitLab job's environment in project 42: the job token, no access token
JOB_ENV = {
    "GITLAB_CI": "true",
    "CI_SERVER_URL": "http://localhost",
    "CI_JOB_TOKEN": CANARY_TOKEN,
    "CI_PROJECT_ID": "42",
    "CI_JOB_ID": "777",
}


class Clock:
    """Time that only moves when something sleeps."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def kv_task(identity: str = "acme/web", **extra: Any) -> dict[str, Any]:
    return {
        "identity": identity,
        "agent": "kv_file",
        "config": {
            "path": f"/tmp/ra/{identity}.json",
            "values": {"port": 8080, "password": "${env:RA_SECRET_DB_PASSWORD}"},
        },
        **extra,
    }


def make_tasks(registry: AgentRegistry, *items: dict[str, Any]) -> list[Task]:
    return tasks_from_data(list(items) or [kv_task()], "<test>", registry)


def write_tasks(path: Path, *items: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump_all(list(items) or [kv_task()]))
    return path
