"""GitLab in memory, behind the dispatch logic's seam (``runner_agent.gitlab.port.GitLab``).

For the logic's tests: coalescing, the in-flight checks, exactly one pipeline, following. No
HTTP, no retries: those have their own tests against the HTTP-level fake (fake_gitlab.py) and
the round trip. It keeps the GitLab rules the logic relies on, so a test fails where GitLab
would refuse:

- generic package names, file names and versions: ``generic_package_name_regex``
  (``\\A[A-Za-z0-9._+-]+\\z``) and ``generic_package_version_regex`` (no ``..``,
  ``\\A(?!.*\\.\\.)[\\w+.-]+\\z``) from lib/gitlab/regex/packages.rb, refused with 400;
- a missing package file, pipeline or project answers 404 (NotFound);
- the creation answer (``Entities::Ci::Pipeline``, lib/api/entities/ci/pipeline.rb) has no
  ``name``; the list does, and filters by it (doc/api/pipelines.md, "List project pipelines");
- a pipeline's name is the agent project's ``workflow:name``, ``runner-agent <dispatch_id>``
  from its inputs or variables (templates/agent-project.gitlab-ci.yml);
- cancelling answers the pipeline whatever its state (doc/api/pipelines.md, cancel).

Answers are built from the documented responses in fixtures/ (shared with fake_gitlab.py).
"""

from __future__ import annotations

import copy
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fake_gitlab import PROJECT_ID, PROJECT_PATH, fixture

from runner_agent.gitlab.port import AmbiguousRequest, ApiError, Connection, NotFound

URL = "http://gitlab.test"
_NAME = re.compile(r"\A[A-Za-z0-9._+-]+\Z")
_VERSION = re.compile(r"\A(?!.*\.\.)[\w+.-]+\Z", re.ASCII)
_BASIC = tuple(fixture("pipelines")[0])  # the fields of a pipeline in a list


@dataclass
class Server:
    """What the GitLab holds, shared by every project handle on it."""

    # GET /version's answer (doc/api/version.md); 17.11 takes inputs on every route
    version: str = "17.11.2-ee"
    packages: dict[tuple[str, str, str], list[bytes]] = field(default_factory=dict)
    pipelines: dict[int, dict[str, Any]] = field(default_factory=dict)
    bridges: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    calls: list[tuple[str, ...]] = field(default_factory=list)
    # the next creations: "lost" creates the pipeline and loses the answer, "unsent" fails
    # before GitLab acts; both raise AmbiguousRequest, as a cut connection does
    creation_faults: list[str] = field(default_factory=list)
    next_id: int = 1000
    lock: threading.Lock = field(default_factory=threading.Lock)


class MemoryGitLab:
    """One project (id 42, ``acme/agents``) of an in-memory GitLab."""

    def __init__(self, server: Server | None = None, project: str = str(PROJECT_ID)) -> None:
        self.server = server or Server()
        self.project = project

    @property
    def url(self) -> str:
        return URL

    @property
    def secrets(self) -> tuple[str, ...]:
        return ()

    @property
    def connection(self) -> Connection:
        """An access token's connection: the dispatcher refuses a job token before asking."""
        return Connection(URL, "memory-token", "private", "test")

    def get_version(self) -> dict[str, Any]:
        with self.server.lock:
            self.server.calls.append(("get_version",))
            return {"version": self.server.version, "revision": "memory"}

    def for_project(self, project: str) -> MemoryGitLab:
        return MemoryGitLab(self.server, project)

    # --- what a test looks at ---------------------------------------------------------------

    def writes(self) -> list[tuple[str, ...]]:
        """The calls that change something, in order."""
        reads = ("get_", "list_")
        return [c for c in self.server.calls if not c[0].startswith(reads)]

    def created_pipelines(self) -> list[dict[str, Any]]:
        return [p for p in self.server.pipelines.values() if p["source"] in ("api", "trigger")]

    def set_status(self, pipeline_id: int, status: str) -> None:
        self.server.pipelines[pipeline_id]["status"] = status

    def package(self, package: str, version: str, file_name: str) -> bytes | None:
        found = self.server.packages.get((package, version, file_name))
        return found[-1] if found else None

    # --- the seam ---------------------------------------------------------------------------

    def _call(self, *call: str) -> None:
        self.server.calls.append(call)
        if self.project not in (str(PROJECT_ID), PROJECT_PATH):
            raise NotFound("404 Project Not Found", 404)

    def get_project(self) -> dict[str, Any]:
        with self.server.lock:
            self._call("get_project")
            return dict(fixture("project"))

    def put_package_file(self, package: str, version: str, file_name: str, data: bytes) -> None:
        with self.server.lock:
            self._call("put_package_file", package, version, file_name)
            if not (_NAME.match(package) and _NAME.match(file_name)):
                raise ApiError("400 Bad request - package_name or file_name is invalid", 400)
            if not _VERSION.match(version):
                raise ApiError("400 Bad request - package_version is invalid", 400)
            self.server.packages.setdefault((package, version, file_name), []).append(data)

    def get_package_file(self, package: str, version: str, file_name: str) -> bytes:
        with self.server.lock:
            self._call("get_package_file", package, version, file_name)
            found = self.package(package, version, file_name)
        if found is None:
            raise NotFound("404 Package Not Found", 404)
        return found

    def list_package_files(self, package: str, version: str) -> list[str]:
        with self.server.lock:
            self._call("list_package_files", package, version)
            return [
                name
                for (p, v, name), uploads in self.server.packages.items()
                if (p, v) == (package, version)
                for _ in uploads
            ]

    def _create(self, source: str, ref: str, ids: Mapping[str, Any]) -> dict[str, Any]:
        fault = self.server.creation_faults.pop(0) if self.server.creation_faults else ""
        if fault == "unsent":
            raise AmbiguousRequest("POST /pipeline: connection reset before GitLab answered")
        self.server.next_id += 1
        pid = self.server.next_id
        dispatch_id = ids.get("dispatch_id") or ids.get("RA_DISPATCH_ID")
        pipeline = copy.deepcopy(fixture("pipeline"))
        pipeline.update(
            id=pid,
            iid=pid,
            name=f"runner-agent {dispatch_id}" if dispatch_id else None,
            ref=ref,
            source=source,
            status="created",
            web_url=f"{URL}/{PROJECT_PATH}/-/pipelines/{pid}",
        )
        self.server.pipelines[pid] = pipeline
        if fault == "lost":
            raise AmbiguousRequest("POST /pipeline: connection reset after it was sent")
        return {k: v for k, v in pipeline.items() if k != "name"}

    def create_pipeline(
        self,
        ref: str,
        *,
        inputs: Mapping[str, Any] | None = None,
        variables: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        with self.server.lock:
            self._call("create_pipeline", ref)
            return self._create("api", ref, {**(inputs or {}), **(variables or {})})

    def trigger_pipeline(
        self,
        trigger_token: str,
        ref: str,
        *,
        inputs: Mapping[str, Any] | None = None,
        variables: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        with self.server.lock:
            self._call("trigger_pipeline", ref)
            return self._create("trigger", ref, {**(inputs or {}), **(variables or {})})

    def get_pipeline(self, pipeline_id: int) -> dict[str, Any]:
        with self.server.lock:
            self._call("get_pipeline", str(pipeline_id))
            found = self.server.pipelines.get(pipeline_id)
            if found is None:
                raise NotFound("404 Not found", 404)
            return dict(found)

    def list_pipelines(
        self, *, name: str | None = None, ref: str | None = None, per_page: int = 20
    ) -> list[dict[str, Any]]:
        with self.server.lock:
            self._call("list_pipelines", name or "")
            found = sorted(self.server.pipelines.values(), key=lambda p: -int(p["id"]))
            found = [
                p
                for p in found
                if (name is None or p.get("name") == name) and (ref is None or p["ref"] == ref)
            ]
            return [{k: p.get(k) for k in _BASIC} for p in found[:per_page]]

    def list_bridges(self, pipeline_id: int) -> list[dict[str, Any]]:
        with self.server.lock:
            self._call("list_bridges", str(pipeline_id))
            return copy.deepcopy(self.server.bridges.get(pipeline_id, []))

    def list_pipeline_jobs(self, pipeline_id: int) -> list[dict[str, Any]]:
        with self.server.lock:
            self._call("list_pipeline_jobs", str(pipeline_id))
            return []

    def cancel_pipeline(self, pipeline_id: int) -> dict[str, Any]:
        with self.server.lock:
            self._call("cancel_pipeline", str(pipeline_id))
            found = self.server.pipelines.get(pipeline_id)
            if found is None:
                raise NotFound("404 Not found", 404)
            if found["status"] in ("created", "pending", "running", "waiting_for_resource"):
                found["status"] = "canceled"
            return dict(found)

    def download_job_artifacts(self, job_id: int) -> bytes:
        with self.server.lock:
            self._call("download_job_artifacts", str(job_id))
            raise NotFound("404 Not found", 404)
