"""The only module that imports python-gitlab: every GitLab call the toolkit makes, as a method.

Connection (:func:`connect`), first match wins: a section of python-gitlab's own config file
(``--gitlab-config-section``); ``GITLAB_URL`` + ``GITLAB_TOKEN`` (a personal, project or group
access token); inside a GitLab job ``CI_SERVER_URL`` (or ``CI_API_V4_URL``) + ``CI_JOB_TOKEN``.
The project comes from ``--project``, ``RUNNER_AGENT_PROJECT`` or ``CI_PROJECT_ID``.

Retries happen in one place, :mod:`runner_agent.gitlab.retry`, inside the HTTP session python-gitlab
sends through; python-gitlab's own retry loop is switched off (why: see that module). A POST
that failed after it was sent raises :class:`AmbiguousRequest`, so the caller can look up
whether it took effect.

Every third-party exception is translated here into :class:`~runner_agent.core.errors.GitLabError`
(exit 4) with a message that never holds the token.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import gitlab
import gitlab.config
import gitlab.exceptions
import requests

from runner_agent.core.errors import InvalidInput, Problem
from runner_agent.core.redact import Redactor
from runner_agent.gitlab import retry
from runner_agent.gitlab.port import AmbiguousRequest, ApiError, Connection, NotFound
from runner_agent.gitlab.retry import TRANSIENT, RetryingSession, RetryPolicy

__all__ = [
    "AmbiguousRequest",
    "ApiError",
    "GitLabAPI",
    "NotFound",
    "RetryPolicy",
    "connect",
]

DEFAULT_TIMEOUT = 30.0


def same_gitlab(a: str, b: str) -> bool:
    """Whether two GitLab URLs name the same instance (scheme, host, port and path)."""

    def key(url: str) -> tuple[str, str, int | None, str]:
        parts = urlsplit(url.strip())
        path = parts.path.rstrip("/").removesuffix("/api/v4").rstrip("/")
        return parts.scheme.lower(), (parts.hostname or "").lower(), parts.port, path

    try:
        return key(a) == key(b)
    except ValueError:  # a bad port
        return False


def _base_url(url: str, what: str) -> str:
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(Problem(what, f"{url!r} is not an http(s) URL"))
    if parts.username or parts.password:
        raise InvalidInput(
            Problem(what, "the URL carries credentials: put the token in GITLAB_TOKEN instead")
        )
    return url.strip().rstrip("/").removesuffix("/api/v4")


def resolve_connection(environ: Mapping[str, str]) -> Connection | None:
    """The connection the environment names, or None (then a config file section is needed).

    A token goes only to the GitLab the environment names with it, never to one a handle or
    any other input names: a crafted handle must not collect the token.
    """
    if environ.get("GITLAB_TOKEN"):
        url = environ.get("GITLAB_URL") or environ.get("CI_SERVER_URL")
        if not url:
            raise InvalidInput(Problem("GITLAB_URL", "GITLAB_TOKEN is set but GITLAB_URL is not"))
        return Connection(_base_url(url, "GITLAB_URL"), environ["GITLAB_TOKEN"], "private", "env")
    if environ.get("CI_JOB_TOKEN"):
        url = environ.get("CI_SERVER_URL") or environ.get("CI_API_V4_URL")
        if url:
            return Connection(
                _base_url(url, "CI_SERVER_URL"), environ["CI_JOB_TOKEN"], "job", "job"
            )
    return None


def connect(
    environ: Mapping[str, str],
    *,
    project: str | None = None,
    section: str | None = None,
    config_files: list[str] | None = None,
    retry_policy: RetryPolicy | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> GitLabAPI:
    """A :class:`GitLabAPI` for one project, configured as the module docstring says.

    Raises InvalidInput when nothing names a GitLab, a token or a project, or the config file
    section is missing or wrong. Makes no request.
    """
    session = RetryingSession(retry_policy or RetryPolicy(), timeout)
    if section:
        try:
            gl = gitlab.Gitlab.from_config(section, config_files, session=session)
        except gitlab.config.ConfigError as exc:
            raise InvalidInput(Problem("--gitlab-config-section", str(exc))) from exc
        token = gl.private_token or gl.oauth_token or gl.job_token or ""
        kind = "job" if token and token == gl.job_token else "config"
        conn = Connection(gl.url, token, kind, f"python-gitlab config section {section!r}")
    else:
        found = resolve_connection(environ)
        if found is None:
            raise InvalidInput(
                Problem(
                    "GitLab",
                    "no GitLab configured: set GITLAB_URL and GITLAB_TOKEN, pass "
                    "--gitlab-config-section for python-gitlab's config file, or run in a job",
                )
            )
        conn = found
        if conn.kind == "job":
            gl = gitlab.Gitlab(conn.url, job_token=conn.token, session=session)
        else:
            gl = gitlab.Gitlab(conn.url, private_token=conn.token, session=session)
    session.home = str(gl.url)  # credentials never follow a redirect off this GitLab
    gl.retry_transient_errors = False  # RetryPolicy, in the session, is the only retry loop
    if gl.timeout is None:
        gl.timeout = timeout
    name = project or environ.get("RUNNER_AGENT_PROJECT") or environ.get("CI_PROJECT_ID")
    if not name:
        raise InvalidInput(
            Problem("--project", "no project: pass --project, or set RUNNER_AGENT_PROJECT")
        )
    return GitLabAPI(gl, str(name), conn, session)


def _variables_refused(where: str) -> str:
    """The project's "Minimum role to use pipeline variables" refused the request."""
    if "/trigger/pipeline" in where:
        return (
            f"{where}: the project allows no one to use pipeline variables, and GitLab "
            "without the fix of gitlab-org/gitlab#557381 counts the trigger API's own "
            "TRIGGER_PAYLOAD as one: dispatch without --trigger-token-env (an access token "
            "creates the pipeline with inputs), or raise the minimum role to Developer"
        )
    return (
        f"{where}: the project allows no one to use pipeline variables: dispatch without "
        "--variables (inputs need GitLab 17.10), or raise the minimum role to Developer in "
        "Settings > CI/CD > Variables"
    )


def _pkg(package: str, version: str, file_name: str) -> str:
    return "/".join(quote(part, safe="") for part in (package, version, file_name))


class GitLabAPI:
    """Every GitLab call runner_agent makes, for one project. Methods raise :class:`ApiError`
    (a GitLabError: exit 4), :class:`NotFound` on 404 and :class:`AmbiguousRequest` when a
    non-idempotent request may or may not have taken effect."""

    def __init__(
        self, gl: gitlab.Gitlab, project: str, connection: Connection, session: RetryingSession
    ) -> None:
        self._gl = gl
        self.project = project
        self.connection = connection
        self.session = session
        self._secrets = [connection.token] if connection.token else []
        self.redactor = Redactor(self._secrets)
        self._project_path = f"/projects/{quote(project, safe='')}"

    @property
    def url(self) -> str:
        return str(self._gl.url).rstrip("/")

    def for_project(self, project: str) -> GitLabAPI:
        """The same connection and session, for another project (no request)."""
        if project == self.project:
            return self
        other = GitLabAPI(self._gl, project, self.connection, self.session)
        for secret in self._secrets:
            other.add_secret(secret)
        return other

    @property
    def is_job_token(self) -> bool:
        return self.connection.kind == "job"

    @property
    def secrets(self) -> tuple[str, ...]:
        """The values this client must never print: its token, trigger tokens it was given."""
        return tuple(self._secrets)

    def add_secret(self, value: str) -> None:
        """Mask ``value`` (a trigger token, say) in every error message from now on."""
        if value and value not in self._secrets:
            self._secrets.append(value)
            self.redactor = Redactor(self._secrets)

    # --- plumbing -----------------------------------------------------------------------

    def _call(
        self,
        verb: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | bytes | None = None,
        idempotent: bool = True,
    ) -> requests.Response:
        where = f"{verb.upper()} {path}"
        try:
            with retry.idempotent(idempotent):
                return self._gl.http_request(
                    verb,
                    path,
                    query_data=dict(query or {}),
                    post_data=body,  # type: ignore[arg-type]
                    raw=isinstance(body, bytes),
                    obey_rate_limit=False,
                    retry_transient_errors=False,
                    max_retries=0,
                )
        except gitlab.exceptions.GitlabError as exc:
            raise self._translate_http(where, exc, idempotent) from None
        except requests.RequestException as exc:
            raise self._translate_network(where, exc, idempotent) from None

    def _translate_http(
        self, where: str, exc: gitlab.exceptions.GitlabError, idem: bool
    ) -> ApiError:
        status = exc.response_code
        detail = self.redactor.text(str(exc.error_message))[:300]
        if status == 401:
            msg = f"{where}: GitLab refused the token (401): check it is valid and not expired"
        elif status == 403:
            msg = f"{where}: forbidden (403): the token lacks a permission here: {detail}"
        elif status == 404:
            return NotFound(f"{where}: not found (404): {detail}", 404)
        elif status == 400 and "permissions to set pipeline variables" in detail:
            msg = _variables_refused(where)
        elif status == 400 and "Duplicate package" in detail:
            # lib/api/generic_packages.rb answers 400 when the project refuses duplicates
            msg = (
                f"{where}: the project refuses duplicate generic packages (400): allow "
                "duplicates for generic packages in Settings > Packages and registries, "
                "or add runner-agent-* to the exceptions"
            )
        elif status == 429:
            msg = f"{where}: rate limited by GitLab (429) after retries: {detail}"
        elif status is not None and status in TRANSIENT and not idem:
            return AmbiguousRequest(f"{where}: GitLab answered {status}; outcome unknown", status)
        else:
            msg = f"{where}: GitLab answered {status}: {detail}"
        return ApiError(self.redactor.text(msg), status)

    def _translate_network(
        self, where: str, exc: requests.RequestException, idem: bool
    ) -> ApiError:
        kind = type(exc).__name__
        if not idem and not isinstance(exc, requests.exceptions.ConnectTimeout):
            return AmbiguousRequest(f"{where}: {kind} after sending; outcome unknown")
        return ApiError(self.redactor.text(f"{where}: cannot reach GitLab at {self.url}: {kind}"))

    def _json(self, response: requests.Response, where: str) -> Any:
        try:
            return response.json()
        except ValueError as exc:
            raise ApiError(f"{where}: GitLab answered something that is not JSON") from exc

    def _get(self, path: str, query: Mapping[str, Any] | None = None) -> Any:
        return self._json(self._call("get", path, query=query), f"GET {path}")

    def _get_all(
        self, path: str, query: Mapping[str, Any] | None = None, limit: int = 20
    ) -> list[Any]:
        """Every page of a list (at most ``limit`` pages of 100)."""
        items: list[Any] = []
        page = "1"
        for _ in range(limit):
            response = self._call(
                "get", path, query={**(query or {}), "per_page": 100, "page": page}
            )
            data = self._json(response, f"GET {path}")
            items.extend(data if isinstance(data, list) else [])
            page = response.headers.get("X-Next-Page", "")
            if not page:
                break
        return items

    # --- generic package registry ----------------------------------------------------------

    def put_package_file(self, package: str, version: str, file_name: str, data: bytes) -> None:
        """Upload one file (PUT is safe to repeat: GitLab keeps the latest of same-named files)."""
        path = f"{self._project_path}/packages/generic/{_pkg(package, version, file_name)}"
        self._call("put", path, body=data)

    def get_package_file(self, package: str, version: str, file_name: str) -> bytes:
        """The latest file of that name. Raises NotFound when there is none."""
        path = f"{self._project_path}/packages/generic/{_pkg(package, version, file_name)}"
        return bytes(self._call("get", path).content)

    def list_package_files(self, package: str, version: str) -> list[str]:
        """The file names of a generic package version (GitLab 16.6+ filters by version); []
        when there is no such package. Two requests, or more for many files."""
        path = f"{self._project_path}/packages"
        query = {  # newest first: GitLab before 16.6 ignores package_version
            "package_type": "generic",
            "package_name": package,
            "package_version": version,
            "order_by": "created_at",
            "sort": "desc",
        }
        names: list[str] = []
        for found in self._get_all(path, query, limit=5):
            # package_name is a fuzzy search, and older GitLab ignores package_version
            if found.get("name") != package or found.get("version") != version:
                continue
            files = self._get_all(f"{path}/{int(found['id'])}/package_files")
            names.extend(str(f.get("file_name", "")) for f in files)
        return names

    # --- pipelines -----------------------------------------------------------------------------

    def create_pipeline(
        self,
        ref: str,
        *,
        inputs: Mapping[str, Any] | None = None,
        variables: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """POST /projects/:id/pipeline. Never blindly retried: raises AmbiguousRequest when it
        failed after being sent."""
        body: dict[str, Any] = {"ref": ref}
        if inputs:
            body["inputs"] = dict(inputs)
        if variables:
            body["variables"] = [{"key": k, "value": v} for k, v in variables.items()]
        path = f"{self._project_path}/pipeline"
        return dict(self._json(self._call("post", path, body=body, idempotent=False), path))

    def trigger_pipeline(
        self,
        trigger_token: str,
        ref: str,
        *,
        inputs: Mapping[str, Any] | None = None,
        variables: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """POST /projects/:id/trigger/pipeline with a trigger token (or a job token)."""
        self.add_secret(trigger_token)
        body: dict[str, Any] = {"token": trigger_token, "ref": ref}
        if inputs:
            body["inputs"] = dict(inputs)
        if variables:
            body["variables"] = dict(variables)
        path = f"{self._project_path}/trigger/pipeline"
        return dict(self._json(self._call("post", path, body=body, idempotent=False), path))

    def get_version(self) -> dict[str, Any]:
        """GET /version (doc/api/version.md): ``{"version": "17.11.2-ee", "revision": ...}``."""
        return dict(self._get("/version"))

    def get_project(self) -> dict[str, Any]:
        return dict(self._get(self._project_path))

    def get_pipeline(self, pipeline_id: int) -> dict[str, Any]:
        return dict(self._get(f"{self._project_path}/pipelines/{int(pipeline_id)}"))

    def list_pipelines(
        self, *, name: str | None = None, ref: str | None = None, per_page: int = 20
    ) -> list[dict[str, Any]]:
        """The newest pipelines (one page), filtered by name and ref (GitLab 16.9+ filters by
        name on the server; callers check ``name`` in each answer, as older GitLabs ignore it)."""
        query: dict[str, Any] = {"order_by": "id", "sort": "desc", "per_page": per_page}
        if name:
            query["name"] = name
        if ref:
            query["ref"] = ref
        return list(self._get(f"{self._project_path}/pipelines", query))

    def list_bridges(self, pipeline_id: int) -> list[dict[str, Any]]:
        """The trigger jobs of a pipeline, each with its ``downstream_pipeline``."""
        return self._get_all(f"{self._project_path}/pipelines/{int(pipeline_id)}/bridges")

    def list_pipeline_jobs(self, pipeline_id: int) -> list[dict[str, Any]]:
        return self._get_all(f"{self._project_path}/pipelines/{int(pipeline_id)}/jobs")

    def cancel_pipeline(self, pipeline_id: int) -> dict[str, Any]:
        """POST .../cancel: GitLab answers 200 whatever the state, so repeating it is harmless."""
        path = f"{self._project_path}/pipelines/{int(pipeline_id)}/cancel"
        return dict(self._json(self._call("post", path, idempotent=True), path))

    def download_job_artifacts(self, job_id: int) -> bytes:
        """The job's artifacts archive (zip)."""
        return bytes(
            self._call("get", f"{self._project_path}/jobs/{int(job_id)}/artifacts").content
        )

    # --- pipeline schedules -------------------------------------------------------------------

    def list_schedules(self) -> list[dict[str, Any]]:
        return self._get_all(f"{self._project_path}/pipeline_schedules")

    def create_schedule(
        self,
        *,
        description: str,
        ref: str,
        cron: str,
        cron_timezone: str = "UTC",
        inputs: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """POST /projects/:id/pipeline_schedules (inputs: GitLab 17.11+)."""
        body: dict[str, Any] = {
            "description": description,
            "ref": ref,
            "cron": cron,
            "cron_timezone": cron_timezone,
            "active": True,
        }
        if inputs:
            body["inputs"] = [{"name": k, "value": v} for k, v in inputs.items()]
        path = f"{self._project_path}/pipeline_schedules"
        return dict(self._json(self._call("post", path, body=body, idempotent=False), path))

    def create_schedule_variable(self, schedule_id: int, key: str, value: str) -> None:
        path = f"{self._project_path}/pipeline_schedules/{int(schedule_id)}/variables"
        self._call("post", path, body={"key": key, "value": value}, idempotent=False)

    def delete_schedule(self, schedule_id: int) -> None:
        self._call("delete", f"{self._project_path}/pipeline_schedules/{int(schedule_id)}")
