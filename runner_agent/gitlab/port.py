"""The seam between the dispatch logic and GitLab: the calls it makes, as a Protocol.

:class:`runner_agent.gitlab.api.GitLabAPI` (python-gitlab, retries, error translation) is the
real one; tests of the logic (coalescing, exactly one pipeline, following) use an in-memory
GitLab that implements this and keeps GitLab's rules (tests/gitlab/memory_gitlab.py). The
errors are defined here, not in ``api``, so neither side needs python-gitlab to raise them.

Every method raises :class:`ApiError` (a GitLabError: exit 4) when GitLab refuses or cannot
be reached, :class:`NotFound` on 404, :class:`AmbiguousRequest` when a request that is not
safe to repeat failed after it was sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from runner_agent.core.errors import GitLabError

__all__ = ["AmbiguousRequest", "ApiError", "Connection", "GitLab", "NotFound"]


class ApiError(GitLabError):
    """GitLab answered with an error, or could not be reached."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class NotFound(ApiError):
    """404: the object does not exist (or the token may not see it)."""


class AmbiguousRequest(ApiError):
    """A non-idempotent request failed after it was sent: it may or may not have taken effect."""


@dataclass(frozen=True)
class Connection:
    """Where and how to reach GitLab; the token never shows in ``repr``."""

    url: str
    token: str = field(repr=False)
    kind: str  # "private", "job" or "config"
    source: str


class GitLab(Protocol):
    """One project of one GitLab, as the dispatcher, the in-flight checks and the followers
    use it. Shapes of the answers: GitLab's REST API (doc/api/pipelines.md, jobs.md,
    packages/generic_packages.md, projects.md in gitlab-org/gitlab)."""

    project: str

    @property
    def url(self) -> str:
        """The GitLab's base URL, without a trailing slash."""
        ...

    @property
    def secrets(self) -> tuple[str, ...]:
        """The values never to print: the token, trigger tokens given to it."""
        ...

    @property
    def connection(self) -> Connection:
        """Where and how it reaches GitLab: the kind of token decides what it may ask."""
        ...

    def get_version(self) -> dict[str, Any]:
        """GET /version (doc/api/version.md)."""
        ...

    def for_project(self, project: str) -> GitLab:
        """The same connection, for another project (no request)."""
        ...

    def get_project(self) -> dict[str, Any]: ...

    def put_package_file(self, package: str, version: str, file_name: str, data: bytes) -> None: ...

    def get_package_file(self, package: str, version: str, file_name: str) -> bytes: ...

    def list_package_files(self, package: str, version: str) -> list[str]: ...

    def create_pipeline(
        self,
        ref: str,
        *,
        inputs: Mapping[str, Any] | None = None,
        variables: Mapping[str, str] | None = None,
    ) -> dict[str, Any]: ...

    def trigger_pipeline(
        self,
        trigger_token: str,
        ref: str,
        *,
        inputs: Mapping[str, Any] | None = None,
        variables: Mapping[str, str] | None = None,
    ) -> dict[str, Any]: ...

    def get_pipeline(self, pipeline_id: int) -> dict[str, Any]: ...

    def list_pipelines(
        self, *, name: str | None = None, ref: str | None = None, per_page: int = 20
    ) -> list[dict[str, Any]]: ...

    def list_bridges(self, pipeline_id: int) -> list[dict[str, Any]]: ...

    def list_pipeline_jobs(self, pipeline_id: int) -> list[dict[str, Any]]: ...

    def cancel_pipeline(self, pipeline_id: int) -> dict[str, Any]: ...

    def download_job_artifacts(self, job_id: int) -> bytes: ...
