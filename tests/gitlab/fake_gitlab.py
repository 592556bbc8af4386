"""A stand-in for the few GitLab endpoints runner_agent uses, with state and fault injection.

Answers are built from the JSON fixtures (GitLab's documented responses) with ids, names and
statuses filled in. Two front ends: ``responses`` callbacks on ``http://localhost`` for unit
tests, and a real HTTP server on 127.0.0.1 for tests that span processes.

Faults are queued per route and consumed one per matching request:
``429`` (refused, with Retry-After), ``500``/``502``/``503`` (refused), the same with ``!``
(``500!``: GitLab did the work, then the answer failed), ``reset`` / ``reset!`` (connection
dropped before / after the work), ``timeout!`` (the work was done, the answer never came) and
``connect-timeout`` (never sent). A fault injected with ``caller="job"`` (or ``"private"``)
waits for a request made with a job token (or an access token).
"""

from __future__ import annotations

import copy
import io
import json
import re
import threading
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import requests
import responses

FIXTURES = Path(__file__).parent / "fixtures"
CANARY_TOKEN = "glpat-CANARY-token-0123456789"
PROJECT_ID = 42
PROJECT_PATH = "acme/agents"
API = "/api/v4"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / f"{name}.json").read_text())


@dataclass
class Call:
    method: str
    path: str  # decoded, without /api/v4 and the query
    query: dict[str, list[str]]
    body: bytes
    headers: dict[str, str]
    route: str = ""
    accepted: dict[str, Any] | None = None  # the body as this GitLab version reads it

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


Answer = tuple[int, dict[str, str], bytes]

_ROUTES: list[tuple[str, str, re.Pattern[str]]] = [
    (m, name, re.compile(rf"^/projects/(?P<project>[^/]+){pattern}$"))
    for m, name, pattern in [
        ("PUT", "package", r"/packages/generic/(?P<pkg>[^/]+)/(?P<ver>[^/]+)/(?P<file>[^/]+)"),
        ("GET", "package", r"/packages/generic/(?P<pkg>[^/]+)/(?P<ver>[^/]+)/(?P<file>[^/]+)"),
        ("GET", "packages", r"/packages"),
        ("GET", "package_files", r"/packages/(?P<id>[0-9]+)/package_files"),
        ("POST", "create_pipeline", r"/pipeline"),
        ("POST", "trigger_pipeline", r"/trigger/pipeline"),
        ("GET", "pipelines", r"/pipelines"),
        ("GET", "pipeline", r"/pipelines/(?P<id>[0-9]+)"),
        ("GET", "bridges", r"/pipelines/(?P<id>[0-9]+)/bridges"),
        ("GET", "jobs", r"/pipelines/(?P<id>[0-9]+)/jobs"),
        ("POST", "cancel", r"/pipelines/(?P<id>[0-9]+)/cancel"),
        ("GET", "artifacts", r"/jobs/(?P<id>[0-9]+)/artifacts"),
        ("POST", "play", r"/jobs/(?P<id>[0-9]+)/play"),
        ("GET", "schedules", r"/pipeline_schedules"),
        ("POST", "create_schedule", r"/pipeline_schedules"),
        ("DELETE", "schedule", r"/pipeline_schedules/(?P<id>[0-9]+)"),
        ("POST", "schedule_variable", r"/pipeline_schedules/(?P<id>[0-9]+)/variables"),
        ("GET", "project", r""),
    ]
]
FINISHED = {"success", "failed", "canceled", "skipped"}

# Where GitLab accepts CI_JOB_TOKEN (doc/ci/jobs/ci_job_token.md, "Job token access"): the
# package registry and Packages API, job artifacts, POST /trigger/pipeline. Elsewhere the
# JOB-TOKEN header is not read: the request is anonymous, so 404 on a private project's route
# and 401 on /version.
JOB_TOKEN_ROUTES = {
    ("PUT", "package"),
    ("GET", "package"),
    ("GET", "packages"),
    ("GET", "package_files"),
    ("POST", "trigger_pipeline"),
    ("GET", "artifacts"),
}
# Generic package rules, lib/gitlab/regex/packages.rb (generic_package_name_regex = maven
# file name, generic_package_version_regex = maven_version_regex, generic_package_file_name);
# the API refuses others with 400 (lib/api/generic_packages.rb, Grape `regexp:`).
PACKAGE_NAME = re.compile(r"\A[A-Za-z0-9._+-]+\Z")
PACKAGE_VERSION = re.compile(r"\A(?!.*\.\.)[\w+.-]+\Z", re.ASCII)
PACKAGE_FILE = re.compile(r"\A(?!~)[A-Za-z0-9._+~-]+(?<!~)\Z")
# What Entities::Ci::Pipeline (lib/api/entities/ci/pipeline.rb, with pipeline_basic.rb)
# exposes: the answer to POST /pipeline and POST /trigger/pipeline. No iid, no name.
CREATED_FIELDS = [
    "id",
    "project_id",
    "sha",
    "ref",
    "status",
    "source",
    "created_at",
    "updated_at",
    "web_url",
    "before_sha",
    "tag",
    "yaml_errors",
    "user",
    "started_at",
    "finished_at",
    "committed_at",
    "duration",
    "queued_duration",
    "coverage",
    "detailed_status",
]


def version_tuple(version: str) -> tuple[int, int]:
    major, minor = version.split(".")[:2]
    return int(major), int(minor)


@dataclass
class Storage:
    """Object storage on another host (127.0.0.2): where GitLab's direct download redirects a
    package file or an artifacts archive (doc/administration/object_storage.md, "proxy_download"
    false, GitLab.com's default). Records every request's headers: no GitLab token may arrive."""

    blobs: dict[str, bytes] = field(default_factory=dict)
    seen: list[dict[str, str]] = field(default_factory=list)
    base: str = ""

    def put(self, data: bytes) -> str:
        key = f"blob-{len(self.blobs)}"
        self.blobs[key] = data
        return f"{self.base}/{key}?X-Amz-Signature=fake"


@dataclass
class FakeGitLab:
    token: str = CANARY_TOKEN
    base: str = "http://localhost"
    trigger_token: str = "glptt-trigger-CANARY"
    job_token: str | None = None  # when set, JOB-TOKEN must be this one (not ``token``)
    retry_after: str = "3"  # seconds in the Retry-After header of an injected 429
    echo_token_in_errors: bool = False  # a hostile server that quotes the token back
    name_pipelines: bool = True  # the agent project sets workflow:name
    delay: dict[str, float] = field(default_factory=dict)  # route -> seconds before answering
    pipelines: dict[int, dict[str, Any]] = field(default_factory=dict)
    packages: dict[tuple[str, str, str], list[bytes]] = field(default_factory=dict)
    schedules: dict[int, dict[str, Any]] = field(default_factory=dict)
    bridges: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    jobs: dict[int, list[dict[str, Any]]] = field(default_factory=dict)
    artifacts: dict[int, bytes] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    faults: dict[tuple[str, str, str | None], list[str]] = field(default_factory=dict)
    next_id: int = 100
    lock: threading.Lock = field(default_factory=threading.Lock)
    storage: Storage | None = None  # when set, downloads answer 302 to it (direct download)
    version: str = "18.6.0"  # what GET /version answers; older ones drop what they lack
    duplicates_allowed: bool = True  # Settings > Packages: "Allow duplicates" (generic)
    # plan limit ci_active_jobs: jobs in a project's alive pipelines, all together; GitLab.com
    # Free: 500 (doc/user/gitlab_com/_index.md). A pipeline whose creation would pass it fails
    # with job_activity_limit_exceeded (lib/gitlab/ci/pipeline/chain/limit/active_jobs.rb).
    ci_active_jobs: int = 500
    # Settings > CI/CD > Variables, "Minimum role to use pipeline variables" (the API's
    # ci_pipeline_variables_minimum_override_role); "no_one_allowed" is what the docs advise
    # (doc/ci/variables/_index.md, "Restrict pipeline variables")
    pipeline_variables_role: str = "developer"
    # Settings > CI/CD > Protected environments: environment name -> whether this token's user
    # is "allowed to deploy" there (doc/ci/environments/protected_environments.md). A job with
    # `environment:` (any action) to a protected one plays only for such users (gitlab#300784)
    protected_environments: dict[str, bool] = field(default_factory=dict)

    # --- test helpers ---------------------------------------------------------------------

    def inject(self, method: str, route: str, *faults: str, caller: str | None = None) -> None:
        """Queue faults for a route; ``caller`` "job" or "private" picks whose requests."""
        self.faults.setdefault((method, route, caller), []).extend(faults)

    def pending_faults(self) -> list[str]:
        return [f for queue in self.faults.values() for f in queue]

    def routed(self, route: str, method: str | None = None) -> list[Call]:
        return [
            c for c in self.calls if c.route == route and (method is None or c.method == method)
        ]

    def created_pipelines(self) -> list[dict[str, Any]]:
        return [p for p in self.pipelines.values() if p.get("_created_by_api")]

    def set_status(self, pipeline_id: int, status: str) -> None:
        self.pipelines[pipeline_id]["status"] = status

    def add_child(
        self, parent: int, status: str = "success", collect: dict[str, Any] | None = None
    ) -> int:
        """A child pipeline below ``parent``; with ``collect`` (a summary) a collect job whose
        artifacts archive holds it."""
        child = self._new_pipeline({"ref": "main"}, name=None, source="parent_pipeline")
        child["status"] = status
        bridge = copy.deepcopy(fixture("bridges")[0])
        bridge["id"] = self._id()
        bridge["pipeline"]["id"] = parent
        bridge["downstream_pipeline"].update(
            {"id": child["id"], "status": status, "web_url": child["web_url"]}
        )
        self.bridges.setdefault(parent, []).append(bridge)
        if collect is not None:
            job = copy.deepcopy(fixture("jobs")[0])
            job["id"] = self._id()
            job["pipeline"]["id"] = child["id"]
            self.jobs.setdefault(child["id"], []).append(job)
            archive = io.BytesIO()
            with zipfile.ZipFile(archive, "w") as zf:
                zf.writestr(".runner-agent/summary.json", json.dumps(collect))
                zf.writestr(".runner-agent/reports/0000.json", "{}")
            self.artifacts[job["id"]] = archive.getvalue()
        return int(child["id"])

    def add_gated_child(self, parent: int, gates: dict[str, str]) -> int:
        """A child pipeline stopped at its approval gates (``dispatch --plan``), as GitLab shows
        it. ``gates``: gate job name -> its environment.

        - the child is ``manual``: blocking manual jobs (``allow_failure: false``) and jobs
          waiting on them, nothing running (lib/gitlab/ci/status/composite.rb);
        - its trigger job stays ``running`` and so does the parent: a ``strategy: depend``
          bridge is left running when its child is created and takes the child's status only
          once it is success, failed, canceled or skipped
          (app/services/ci/create_downstream_pipeline_service.rb, app/models/ci/bridge.rb
          ``inherit_status_from_downstream!``).
        """
        child = self.add_child(parent, status="manual")
        bridge = self.bridges[parent][-1]
        bridge["status"] = "running"
        self.pipelines[parent]["status"] = "running"
        for name, environment in gates.items():
            job = copy.deepcopy(fixture("jobs")[0])
            job.update(id=self._id(), name=name, status="manual", artifacts=[])
            job["pipeline"].update(id=child, status="manual")
            job["_environment"] = environment  # not in Entities::Ci::Job; kept for the rules
            self.jobs.setdefault(child, []).append(job)
        return child

    def package(self, pkg: str, ver: str, file: str) -> bytes | None:
        files = self.packages.get((pkg, ver, file))
        return files[-1] if files else None

    def put_package(self, pkg: str, ver: str, file: str, data: bytes) -> None:
        self.packages.setdefault((pkg, ver, file), []).append(data)

    # --- the server -----------------------------------------------------------------------

    def _id(self) -> int:
        self.next_id += 1
        return self.next_id

    def _new_pipeline(self, body: dict[str, Any], name: str | None, source: str) -> dict[str, Any]:
        pipeline = copy.deepcopy(fixture("pipeline"))
        pid = self._id()
        pipeline.update(
            id=pid,
            iid=pid,
            name=name,
            ref=body.get("ref", "main"),
            source=source,
            status="created",
            web_url=f"{self.base}/{PROJECT_PATH}/-/pipelines/{pid}",
        )
        self.pipelines[pid] = pipeline
        return pipeline

    def handle(
        self, method: str, url: str, headers: dict[str, str], body: bytes
    ) -> Answer | Exception:
        parts = urlsplit(url)
        path = parts.path.removeprefix(API)
        call = Call(method, unquote(path), parse_qs(parts.query), body, dict(headers))
        route, match = self._route(method, path)
        call.route = route
        lowered = {k.lower(): v for k, v in headers.items()}  # HTTP header names: any case
        caller = "job" if "job-token" in lowered else "private"
        with self.lock:
            self.calls.append(call)
            fault = self._take_fault(method, route, caller)
        time.sleep(self.delay.get(route, 0.0))
        sent = lowered.get("private-token", lowered.get("job-token", ""))
        if fault and not fault.endswith("!"):
            return self._refuse(fault, sent)
        if caller == "job" and (method, route) not in JOB_TOKEN_ROUTES:
            # the job token is not read here: an anonymous request
            return self._error(401) if route == "version" else self._error(404, "404_project")
        if not self._authorized(caller, sent):
            return self._error(401, sent=sent)
        if match is None:
            return self._error(404, "404_pipeline")
        with self.lock:
            answer = getattr(self, f"_do_{route}_{method.lower()}")(match, call)
        if fault:
            return self._refuse(fault.rstrip("!"), sent)
        return answer

    def _route(self, method: str, path: str) -> tuple[str, re.Match[str] | None]:
        if path == "/version" and method == "GET":
            return "version", re.match(r"/version", path)
        for m, name, pattern in _ROUTES:
            found = pattern.match(path)
            if (
                m == method
                and found
                and unquote(found.group("project")) in (str(PROJECT_ID), PROJECT_PATH)
            ):
                return name, found
        return "unknown", None

    def _authorized(self, caller: str, sent: str) -> bool:
        if caller == "job" and self.job_token is not None:
            return sent == self.job_token
        return sent == self.token

    def _take_fault(self, method: str, route: str, caller: str) -> str:
        for key in ((method, route, caller), (method, route, None)):
            queue = self.faults.get(key)
            if queue:
                return queue.pop(0)
        return ""

    def _refuse(self, fault: str, sent: str) -> Answer | Exception:
        if fault == "reset":
            return requests.ConnectionError("Connection reset by peer")
        if fault == "connect-timeout":
            return requests.exceptions.ConnectTimeout("connect timed out")
        if fault == "timeout":
            return requests.exceptions.ReadTimeout("read timed out")
        extra = {"Retry-After": self.retry_after} if fault == "429" and self.retry_after else {}
        return self._error(int(fault), fault, extra, sent)

    def _error(
        self,
        status: int,
        key: str | None = None,
        extra: dict[str, str] | None = None,
        sent: str = "",
    ) -> Answer:
        body = fixture("errors")[key or str(status)]
        if self.echo_token_in_errors:
            body = {"message": f"{body['message']} (token {sent})"}
        return (
            status,
            {"Content-Type": "application/json", **(extra or {})},
            json.dumps(body).encode(),
        )

    @staticmethod
    def _ok(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Answer:
        return (
            status,
            {"Content-Type": "application/json", **(headers or {})},
            json.dumps(data).encode(),
        )

    # --- endpoints --------------------------------------------------------------------------

    def older_than(self, version: str) -> bool:
        return version_tuple(self.version) < version_tuple(version)

    def _do_version_get(self, m: re.Match[str], call: Call) -> Answer:
        # doc/api/version.md: GET /version, any authenticated user
        return self._ok({"version": self.version, "revision": "6d5e1f2a", "kas": {}})

    @staticmethod
    def _bad_package(m: re.Match[str]) -> str:
        pkg, ver, file = (unquote(m[k]) for k in ("pkg", "ver", "file"))
        for name, value, rule in (
            ("package_name", pkg, PACKAGE_NAME),
            ("package_version", ver, PACKAGE_VERSION),
            ("file_name", file, PACKAGE_FILE),
        ):
            if not rule.match(value):
                return f"{name} is invalid"
        return ""

    def _do_project_get(self, m: re.Match[str], call: Call) -> Answer:
        return self._ok(fixture("project"))

    def _do_package_put(self, m: re.Match[str], call: Call) -> Answer:
        bad = self._bad_package(m)
        if bad:
            return self._ok({"error": bad}, 400)
        key = (unquote(m["pkg"]), unquote(m["ver"]), unquote(m["file"]))
        if not self.duplicates_allowed and key in self.packages:
            # lib/api/generic_packages.rb: a refused duplicate is a 400, not a 403
            return self._ok({"message": "Duplicate package is not allowed"}, 400)
        self.put_package(unquote(m["pkg"]), unquote(m["ver"]), unquote(m["file"]), call.body)
        return self._ok(fixture("package_created"), 201)

    def _do_package_get(self, m: re.Match[str], call: Call) -> Answer:
        bad = self._bad_package(m)
        if bad:
            return self._ok({"error": bad}, 400)
        data = self.package(unquote(m["pkg"]), unquote(m["ver"]), unquote(m["file"]))
        if data is None:
            return self._error(404, "404_package")
        if self.storage is not None:
            return 302, {"Location": self.storage.put(data)}, b""
        return 200, {"Content-Type": "application/octet-stream"}, data

    def _package_versions(self) -> list[tuple[str, str]]:
        """Each (package, version) stored, in upload order: index + 1 is its package id."""
        return list(dict.fromkeys((pkg, ver) for pkg, ver, _ in self.packages))

    def _do_packages_get(self, m: re.Match[str], call: Call) -> Answer:
        wanted = {k: call.query.get(k, [None])[0] for k in ("package_name", "package_version")}
        found = []
        for n, (pkg, ver) in enumerate(self._package_versions(), start=1):
            if wanted["package_name"] and wanted["package_name"] not in pkg:  # a fuzzy search
                continue
            if wanted["package_version"] and wanted["package_version"] != ver:
                continue
            found.append({**fixture("packages")[0], "id": n, "name": pkg, "version": ver})
        return self._ok(found)

    def _do_package_files_get(self, m: re.Match[str], call: Call) -> Answer:
        versions = self._package_versions()
        number = int(m["id"])
        if not 1 <= number <= len(versions):
            return self._error(404, "404_package")
        pkg, ver = versions[number - 1]
        files = []
        for (p, v, name), uploads in self.packages.items():
            for data in uploads if (p, v) == (pkg, ver) else []:  # every upload is a file
                entry = {**fixture("package_files")[0], "id": self._id(), "package_id": number}
                files.append({**entry, "file_name": name, "size": len(data)})
        return self._ok(files)

    def _pipeline_name(self, body: dict[str, Any]) -> str | None:
        if not self.name_pipelines:
            return None
        inputs = body.get("inputs") or {}
        variables = body.get("variables") or {}
        if isinstance(variables, list):
            variables = {v["key"]: v["value"] for v in variables}
        dispatch_id = inputs.get("dispatch_id") or variables.get("RA_DISPATCH_ID")
        return f"runner-agent {dispatch_id}" if dispatch_id else None

    def _accept(self, call: Call, inputs_from: str) -> dict[str, Any]:
        """The body as this version reads it: before ``inputs_from`` GitLab ignores ``inputs``
        (an unknown parameter) and runs the pipeline with the defaults."""
        body = dict(call.json() or {})
        if self.older_than(inputs_from):
            body.pop("inputs", None)
        call.accepted = body
        return body

    def _variables_refused(self, body: dict[str, Any], trigger: bool) -> bool:
        """Whether the project's setting refuses this request's pipeline variables. The trigger
        API adds TRIGGER_PAYLOAD as a pipeline variable to every pipeline it creates, so "no one
        allowed" refuses every trigger (gitlab-org/gitlab#557381). The fix (!204230) names no
        release we could confirm, so the fake refuses at every version: stricter than a fixed
        GitLab, never looser than an unfixed one, and runner-agent never relies on the fix."""
        if self.pipeline_variables_role != "no_one_allowed":
            return False
        return bool(body.get("variables")) or trigger

    def _do_create_pipeline_post(self, m: re.Match[str], call: Call) -> Answer:
        body = self._accept(call, "17.10")  # doc/api/pipelines.md, "Create a new pipeline"
        if self._variables_refused(body, trigger=False):
            return self._error(400, "400_variables")
        pipeline = self._new_pipeline(body, self._pipeline_name(body), "api")
        pipeline["_created_by_api"] = True
        return self._ok(_created(pipeline), 201)

    def _do_trigger_pipeline_post(self, m: re.Match[str], call: Call) -> Answer:
        body = self._accept(call, "17.11")  # doc/api/pipeline_triggers.md
        if body.get("token") != self.trigger_token and body.get("token") != self.job_token:
            return self._error(404, "404_pipeline")
        if self._variables_refused(body, trigger=True):
            return self._error(400, "400_variables")
        pipeline = self._new_pipeline(body, self._pipeline_name(body), "trigger")
        pipeline["_created_by_api"] = True
        return self._ok(_created(pipeline), 201)

    def _do_pipelines_get(self, m: re.Match[str], call: Call) -> Answer:
        found = sorted(self.pipelines.values(), key=lambda p: -int(p["id"]))
        name = call.query.get("name", [None])[0]
        if name is not None and not self.older_than("16.9"):  # the filter came in 16.9
            found = [p for p in found if p.get("name") == name]
        per_page = int(call.query.get("per_page", ["20"])[0])
        keys = fixture("pipelines")[0].keys()
        return self._ok([{k: p.get(k) for k in keys} for p in found[:per_page]])

    def _do_pipeline_get(self, m: re.Match[str], call: Call) -> Answer:
        pipeline = self.pipelines.get(int(m["id"]))
        return self._ok(_public(pipeline)) if pipeline else self._error(404, "404_pipeline")

    def _do_bridges_get(self, m: re.Match[str], call: Call) -> Answer:
        return self._ok(self.bridges.get(int(m["id"]), []))

    def _do_jobs_get(self, m: re.Match[str], call: Call) -> Answer:
        jobs = self.jobs.get(int(m["id"]), [])
        return self._ok([{k: v for k, v in j.items() if not k.startswith("_")} for j in jobs])

    def _do_cancel_post(self, m: re.Match[str], call: Call) -> Answer:
        pipeline = self.pipelines.get(int(m["id"]))
        if pipeline is None:
            return self._error(404, "404_pipeline")
        if pipeline["status"] not in FINISHED:
            pipeline["status"] = "canceled"
            for bridge in self.bridges.get(int(m["id"]), []):
                child = self.pipelines[bridge["downstream_pipeline"]["id"]]
                if child["status"] not in FINISHED:
                    child["status"] = "canceled"
                    bridge["downstream_pipeline"]["status"] = "canceled"
        return self._ok(_public(pipeline))

    def _do_play_post(self, m: re.Match[str], call: Call) -> Answer:
        """POST /projects/:id/jobs/:job_id/play (lib/api/ci/jobs.rb): 403 unless the user may
        play it (``authorize!(:play_job)``: a protected environment's deployers only), 400
        "Unplayable Job" unless it is manual. A child left with no manual job runs again, its
        bridge still running (see :meth:`add_gated_child`)."""
        job_id = int(m["id"])
        found = [(p, j) for p, jobs in self.jobs.items() for j in jobs if int(j["id"]) == job_id]
        if not found:
            return self._error(404, "404_pipeline")
        pipeline_id, job = found[0]
        if not self.protected_environments.get(job.get("_environment", ""), True):
            return self._ok({"message": "403 Forbidden"}, 403)
        if job["status"] != "manual":
            return self._ok({"message": "400 Bad request - Unplayable Job"}, 400)
        job["status"] = "pending"
        if not any(j["status"] == "manual" for j in self.jobs[pipeline_id]):
            self.pipelines[pipeline_id]["status"] = "running"
            for bridges in self.bridges.values():
                for bridge in bridges:
                    if bridge["downstream_pipeline"]["id"] == pipeline_id:
                        bridge["downstream_pipeline"]["status"] = "running"
        return self._ok({k: v for k, v in job.items() if not k.startswith("_")})

    def _do_artifacts_get(self, m: re.Match[str], call: Call) -> Answer:
        data = self.artifacts.get(int(m["id"]))
        if data is None:
            return self._error(404, "404_pipeline")
        if self.storage is not None:
            return 302, {"Location": self.storage.put(data)}, b""
        return 200, {"Content-Type": "application/zip"}, data

    def _do_schedules_get(self, m: re.Match[str], call: Call) -> Answer:
        return self._ok(list(self.schedules.values()))

    def _do_create_schedule_post(self, m: re.Match[str], call: Call) -> Answer:
        body = self._accept(call, "17.11")  # doc/api/pipeline_schedules.md
        schedule = copy.deepcopy(fixture("schedule"))
        schedule.update(
            id=self._id(),
            description=body["description"],
            ref=f"refs/heads/{body['ref']}",
            cron=body["cron"],
            cron_timezone=body.get("cron_timezone", "UTC"),
            variables=[],
            inputs=body.get("inputs", []),
        )
        self.schedules[schedule["id"]] = schedule
        return self._ok(schedule, 201)

    def _do_schedule_variable_post(self, m: re.Match[str], call: Call) -> Answer:
        schedule = self.schedules.get(int(m["id"]))
        if schedule is None:
            return self._error(404, "404_pipeline")
        body = call.json() or {}
        variable = {**fixture("schedule_variable"), "key": body["key"], "value": body["value"]}
        schedule["variables"].append(variable)
        return self._ok(variable, 201)

    def _do_schedule_delete(self, m: re.Match[str], call: Call) -> Answer:
        schedule = self.schedules.pop(int(m["id"]), None)
        return self._ok(schedule) if schedule else self._error(404, "404_pipeline")


def _public(pipeline: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in pipeline.items() if not k.startswith("_")}


def _created(pipeline: dict[str, Any]) -> dict[str, Any]:
    return {k: pipeline[k] for k in CREATED_FIELDS if k in pipeline}


@contextmanager
def mocked(fake: FakeGitLab) -> Iterator[responses.RequestsMock]:
    """Route every request to ``fake.base`` through ``responses`` callbacks."""
    pattern = re.compile(re.escape(fake.base) + API + r"/.*")

    def callback(request: Any) -> Any:
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        elif not isinstance(body, bytes):
            body = body.read()
        return fake.handle(request.method, request.url, dict(request.headers), body)

    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        for method in ("GET", "POST", "PUT", "DELETE"):
            rsps.add_callback(method, pattern, callback=callback)
        yield rsps


@contextmanager
def served(fake: FakeGitLab) -> Iterator[str]:
    """Serve ``fake`` over real HTTP on 127.0.0.1; yields the base URL."""

    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            answer = fake.handle(self.command, fake.base + self.path, dict(self.headers), body)
            if isinstance(answer, Exception):
                self.close_connection = True
                return
            status, headers, data = answer
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_DELETE = _any

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake.base
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def storage_served(storage: Storage, host: str = "127.0.0.2") -> Iterator[str]:
    """Serve ``storage`` over HTTP on another loopback address; yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            storage.seen.append(dict(self.headers))
            data = storage.blobs.get(urlsplit(self.path).path.lstrip("/"))
            self.send_response(200 if data is not None else 404)
            self.send_header("Content-Length", str(len(data or b"")))
            self.end_headers()
            self.wfile.write(data or b"")

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, 0), Handler)
    storage.base = f"http://{host}:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield storage.base
    finally:
        server.shutdown()
        server.server_close()
