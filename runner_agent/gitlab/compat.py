"""Which GitLab the toolkit talks to, and what that GitLab and the token allow.

Two policies, both applied before the dispatcher sends anything GitLab could refuse:

- **Token.** The dispatcher's commands create, list, read and cancel pipelines and read their
  bridges and jobs. ``CI_JOB_TOKEN`` may do none of that (doc/ci/jobs/ci_job_token.md, "Job
  token access": pipelines only through ``PUT .../metadata``, jobs only ``GET /job``), so a
  command holding only a job token stops with InvalidInput (exit 2) saying which token it needs.
- **Version.** ``GET /version`` (doc/api/version.md) is read once per process and GitLab. Below
  :data:`OLDEST_SUPPORTED` the dispatcher refuses (GitLabError, exit 4) naming both versions;
  above it, it passes a dispatch's ids as pipeline inputs where the route takes them and as
  variables where it does not: GitLab ignores an ``inputs`` parameter it does not know and runs
  the pipeline with the defaults (doc/api/pipelines.md, pipeline_triggers.md,
  pipeline_schedules.md). Every rule and its source: docs/gitlab-compat.md.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from enum import StrEnum

from runner_agent.core.errors import GitLabError, InvalidInput, Problem
from runner_agent.gitlab.port import Connection, GitLab
from runner_agent.pipeline.ci_schema import OLDEST_GITLAB

__all__ = [
    "OLDEST_SUPPORTED",
    "Route",
    "UnsupportedGitLab",
    "Version",
    "inputs_accepted",
    "preflight",
    "require_access_token",
    "server_version",
]


@dataclass(frozen=True, order=True)
class Version:
    major: int
    minor: int
    text: str = field(default="", compare=False)  # as GitLab wrote it; not compared

    @classmethod
    def parse(cls, text: str) -> Version:
        """``17.11.2-ee`` -> Version(17, 11). Raises GitLabError on anything else."""
        found = re.match(r"^\s*v?(\d+)\.(\d+)", text or "")
        if not found:
            raise GitLabError(f"GET /version: {text!r} is not a GitLab version")
        return cls(int(found[1]), int(found[2]), text.strip())

    def __str__(self) -> str:
        return self.text or f"{self.major}.{self.minor}"


def _v(text: str) -> Version:
    major, minor = text.split(".")
    return Version(int(major), int(minor), text)


# The agent project's spec uses `type: array` inputs (runner_tags), which GitLab reads from
# 16.11 (doc/ci/inputs/_index.md, "Input types"); older versions refuse the file. One number,
# shared with the CI check of the shipped YAML (runner_agent.pipeline.ci_schema).
OLDEST_SUPPORTED = _v(f"{OLDEST_GITLAB[0]}.{OLDEST_GITLAB[1]}")


class Route(StrEnum):
    CREATE = "POST /projects/:id/pipeline"
    TRIGGER = "POST /projects/:id/trigger/pipeline"
    SCHEDULE = "POST /projects/:id/pipeline_schedules"


# The first version whose route reads `inputs` (each route's "history" in doc/api/).
INPUTS_SINCE = {
    Route.CREATE: _v("17.10"),  # doc/api/pipelines.md, "Create a new pipeline"
    Route.TRIGGER: _v("17.11"),  # doc/api/pipeline_triggers.md
    Route.SCHEDULE: _v("17.11"),  # doc/api/pipeline_schedules.md
}


class UnsupportedGitLab(GitLabError):
    """The GitLab is older than the oldest version the toolkit supports (exit 4)."""


def require_access_token(connection: Connection, command: str) -> None:
    """Raise InvalidInput (exit 2, before any request) when the only credential is a job token."""
    if connection.kind != "job":
        return
    raise InvalidInput(
        Problem(
            "CI_JOB_TOKEN",
            f"{command} needs an access token with the api scope (a project access token, "
            "Developer role, in the agent project): CI_JOB_TOKEN may not create, read or "
            "cancel pipelines (doc/ci/jobs/ci_job_token.md). In a job, store the token in a "
            "masked, protected CI/CD variable and set GITLAB_TOKEN to it",
        )
    )


_VERSIONS: dict[str, Version] = {}
_LOCK = threading.Lock()


def server_version(api: GitLab) -> Version:
    """GitLab's version: one GET /version per process and GitLab. Raises GitLabError."""
    with _LOCK:
        known = _VERSIONS.get(api.url)
    if known is not None:
        return known
    found = Version.parse(str(api.get_version().get("version", "")))
    with _LOCK:
        _VERSIONS[api.url] = found
    return found


def forget_versions() -> None:
    """Tests: read GET /version again."""
    with _LOCK:
        _VERSIONS.clear()


def check_supported(version: Version) -> None:
    if version < OLDEST_SUPPORTED:
        raise UnsupportedGitLab(
            f"GitLab {version} is older than {OLDEST_SUPPORTED}, the oldest version runner-agent "
            "supports (the agent project's inputs need it): upgrade GitLab"
        )


def inputs_accepted(version: Version, route: Route) -> bool:
    """Whether ``route`` reads ``inputs`` in this version (else they are silently dropped)."""
    return version >= INPUTS_SINCE[route]


def preflight(api: GitLab, command: str, route: Route) -> bool:
    """The checks before a command's first request: the token (no request), then the version
    (one request per process). Returns whether ``route`` takes inputs. Raises InvalidInput,
    UnsupportedGitLab, GitLabError."""
    require_access_token(api.connection, command)
    version = server_version(api)
    check_supported(version)
    return inputs_accepted(version, route)
