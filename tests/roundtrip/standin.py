"""A GitLab stand-in that runs the pipelines it is asked to create.

:class:`GitLabStandIn` is the stateful fake of ``tests/gitlab`` (GitLab's documented answers,
fault injection) served over HTTP on 127.0.0.1, plus what a GitLab instance and its runners do
with a new pipeline: check out the agent project (a git repository built from the shipped
template), run the pipeline with ``gitlab-ci-local``'s shell executor, its jobs calling back
into the stand-in with a job token, and record the outcome as GitLab would show it: pipeline
status, jobs, the bridge to the child pipeline, the collect job's artifacts archive.

The project's CI/CD variables (``GITLAB_CI``, ``CI_SERVER_URL``, ``CI_PROJECT_ID``,
``CI_JOB_TOKEN``, ...) reach every job, child pipelines included, through gitlab-ci-local's
variables file, as a project's variables reach every job on GitLab.

A child pipeline with approval gates (``dispatch --plan``: manual jobs with ``allow_failure:
false`` that the apply jobs need) runs in two steps, as on GitLab. gitlab-ci-local runs a
manual job only when ``--manual`` names it, and refuses a pipeline where a job needs a manual
job it was not told to run; so the stand-in runs the parent (its child refused), then the
child's jobs before the gates (stages ``check`` and ``plan``) with ``--file`` on the child's
YAML, and shows what GitLab shows: the child ``manual``, its gates ``manual``, the jobs after
them ``created``, the trigger job and the parent ``running``. Once every gate was started
(``POST /jobs/:id/play``, refused for a protected environment as the fake refuses it) it runs
the gates and the jobs after them with ``--manual``, then the parent's remaining job, and the
pipeline ends as gitlab-ci-local ran it. One gate started of several leaves the child waiting.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from fake_gitlab import PROJECT_ID, PROJECT_PATH, Answer, Call, FakeGitLab, fixture

from runner_agent.core.resources import templates_dir

ROOT = Path(__file__).resolve().parents[2]
TOOLS = ROOT / "tools" / "node_modules" / ".bin"
ENGINE = TOOLS / "gitlab-ci-local"
JOB_TOKEN = "glcbt-CANARY-job-token-5150"  # each pipeline's jobs get this plus "-p<id>"
ENGINE_TIMEOUT = 180  # seconds for one pipeline, below pytest's per-test timeout
Cli = Callable[..., tuple[int, str, str]]  # runner-agent's CLI: (exit code, stdout, stderr)
GIT = ["git", "-c", "user.email=ci@example.invalid", "-c", "user.name=ci"]
# gitlab-ci-local's log: "\t[bridge] -> name  ..." while a child's job runs, and at the end
# " PASS  name" / " FAIL  name" / " WARN  name" (a child's jobs with or without "[bridge] -> ")
_CHILD_LINE = re.compile(r"^\t\[(?P<bridge>[^\]]+)\] -> (?P<name>\S+)\s")
_RESULT = re.compile(r"^ (PASS|FAIL|WARN) {2}(?:\[[^\]]+\] -> )?(?P<name>\S+)\s*$")
_STATUS = {"PASS": "success", "FAIL": "failed", "WARN": "success"}


def agent_project(path: Path, files: dict[str, str] | None = None) -> Path:
    """The agent project's repository: the shipped pipeline as .gitlab-ci.yml, committed."""
    path.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=path, check=True)
    pipeline = (templates_dir() / "agent-project.gitlab-ci.yml").read_text(encoding="utf-8")
    for name, text in {".gitlab-ci.yml": pipeline, **(files or {})}.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    subprocess.run([*GIT, "add", "-A"], cwd=path, check=True)
    subprocess.run([*GIT, "commit", "-qm", "agent project"], cwd=path, check=True)
    return path


@dataclass
class Run:
    """One pipeline being run by gitlab-ci-local."""

    pipeline_id: int
    checkout: Path
    log: Path
    job_token: str
    process: subprocess.Popen[bytes] | None = None
    canceled: bool = False
    done: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    active_jobs: int = 0  # jobs alive beside this run's, itself included, as GitLab counts them
    body: dict[str, Any] = field(default_factory=dict)  # the creation request, as accepted
    tags: dict[str, list[str]] = field(default_factory=dict)  # top-level job -> its tags
    waiting: list[str] = field(default_factory=list)  # jobs no runner can take: never run
    child_file: str = ""  # a gated child pipeline's YAML, relative to the checkout
    gates: dict[int, str] = field(default_factory=dict)  # gate job id -> name, not yet started
    child_id: int = 0

    def overlaps(self, other: Run) -> bool:
        end = self.ended if self.ended is not None else float("inf")
        other_end = other.ended if other.ended is not None else float("inf")
        return self.started < other_end and other.started < end


@dataclass
class Kill:
    """A fault for the runner side: the job running ``task_file`` dies midway."""

    task_file: str  # as the job's command line names it, such as "0002.json"
    sig: signal.Signals
    done: threading.Event = field(default_factory=threading.Event)


def _inputs_errors(spec: dict[str, Any], given: dict[str, Any]) -> list[str]:
    """GitLab's checks of a pipeline's inputs against the CI file's spec:inputs: no unknown
    input, and a `type: number` input takes a number, not a string
    (lib/gitlab/ci/config/interpolation/inputs.rb, inputs/number_input.rb)."""
    errors = []
    unknown = [name for name in given if name not in spec]
    if unknown:
        errors.append(f"unknown input arguments: {', '.join(unknown)}")
    for name, value in given.items():
        kind = (spec.get(name) or {}).get("type", "string")
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        if kind == "number" and not numeric:
            errors.append(f"`{name}` input: provided value is not a number")
    return errors


# Project::MAX_BUILD_TIMEOUT, 1.month in ActiveSupport (30.436875 days): a job's `timeout`
# may not pass it (lib/gitlab/ci/config/entry/timeout.rb; the DurationValidator's
# "should not exceed the limit", lib/gitlab/config/entry/validators.rb)
MAX_BUILD_TIMEOUT = 2_629_746
_DURATION_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def _timeout_errors(text: str, given: dict[str, Any]) -> list[str]:
    """GitLab's check of each job's `timeout` once the inputs are interpolated: over a month
    refuses the pipeline. Only the forms the shipped YAML can take (<n>s/m/h/d/w parts)."""
    documents = text.split("\n---\n", 1)
    if len(documents) != 2:
        return []
    try:
        header = yaml.safe_load(documents[0]) or {}
    except yaml.YAMLError:
        return []  # the engine refuses the file: the run says why
    spec = ((header.get("spec") or {}) if isinstance(header, dict) else {}).get("inputs") or {}
    values = {k: (v or {}).get("default") for k, v in spec.items()} | given

    def value(m: re.Match[str]) -> str:
        got = values.get(m["name"])
        return got if isinstance(got, str) else json.dumps(got)

    body = re.sub(r"\$\[\[\s*inputs\.(?P<name>\w+)\s*\]\]", value, documents[1])
    try:
        jobs = yaml.safe_load(body) or {}
    except yaml.YAMLError:
        return []
    errors = []
    for name, job in jobs.items() if isinstance(jobs, dict) else []:
        timeout = job.get("timeout") if isinstance(job, dict) else None
        if not isinstance(timeout, str):
            continue
        parts = re.findall(r"(\d+)\s*([smhdw])", timeout)
        if sum(int(n) * _DURATION_UNIT[u] for n, u in parts) > MAX_BUILD_TIMEOUT:
            errors.append(f"jobs:{name}:timeout config should not exceed the limit")
    return errors


@dataclass
class GitLabStandIn(FakeGitLab):
    project_repo: Path = Path()
    workdir: Path = Path()
    runner_env: dict[str, str] = field(default_factory=dict)  # the runner's environment
    variables: dict[str, str] = field(default_factory=dict)  # extra project CI/CD variables
    runs: dict[int, Run] = field(default_factory=dict)
    kills: list[Kill] = field(default_factory=list)

    refused_job_tokens: list[str] = field(default_factory=list)

    def _authorized(self, caller: str, sent: str) -> bool:
        """A job token is valid while its pipeline runs: GitLab revokes a cancelled job's
        token at once (its last uploads fail), and a finished job's."""
        if caller != "job":
            return super()._authorized(caller, sent)
        valid = any(
            run.job_token == sent and not run.canceled and not run.done.is_set()
            for run in self.runs.values()
        )
        if not valid:
            self.refused_job_tokens.append(sent)
        return valid

    # --- test helpers ---------------------------------------------------------------------

    def kill_job_midway(self, task_file: str, sig: signal.Signals = signal.SIGTERM) -> Kill:
        """Kill the job that runs ``task_file`` once its Ansible run has started: SIGTERM as a
        runner stopping a job, SIGKILL (the whole process tree) as a machine dying."""
        kill = Kill(task_file, sig)
        self.kills.append(kill)
        return kill

    def wait_idle(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        for run in list(self.runs.values()):
            assert run.done.wait(max(deadline - time.monotonic(), 0)), f"{run} still running"

    def job_calls(self) -> list[Call]:
        return [c for c in self.calls if "JOB-TOKEN" in c.headers]

    # --- pipelines --------------------------------------------------------------------------

    def _do_create_pipeline_post(self, m: re.Match[str], call: Call) -> Answer:
        refused = self._header_refused(call)
        if refused:
            return refused
        answer = super()._do_create_pipeline_post(m, call)
        self._start(answer, call)
        return answer

    def _do_trigger_pipeline_post(self, m: re.Match[str], call: Call) -> Answer:
        refused = self._header_refused(call)
        if refused:
            return refused
        answer = super()._do_trigger_pipeline_post(m, call)
        self._start(answer, call)
        return answer

    def _header_refused(self, call: Call) -> Answer | None:
        """GitLab refuses a CI file whose spec: header has a key this version does not know
        (lib/gitlab/ci/config/header/spec.rb: only `inputs`; `description` from 18.10), and the
        API answers 400 with the error, creating nothing (lib/api/ci/pipelines.rb)."""
        ref = (call.json() or {}).get("ref", "main")
        shown = subprocess.run(
            ["git", "show", f"{ref}:.gitlab-ci.yml"],
            cwd=self.project_repo,
            capture_output=True,
            text=True,
            check=False,
        )
        documents = list(yaml.safe_load_all(shown.stdout)) if shown.returncode == 0 else []
        header = documents[0] if len(documents) == 2 and isinstance(documents[0], dict) else {}
        allowed = {"inputs"} | (set() if self.older_than("18.10") else {"description"})
        unknown = sorted(set(header.get("spec") or {}) - allowed)
        errors = (
            [f"header:spec config contains unknown keys: {', '.join(unknown)}"] if unknown else []
        )
        inputs = (call.json() or {}).get("inputs") or {}
        # a version that reads no inputs ignores them (fake_gitlab's _accept drops them)
        inputs_from = "17.11" if "/trigger/" in call.path else "17.10"
        if isinstance(inputs, dict) and inputs and not self.older_than(inputs_from):
            errors += _inputs_errors(((header.get("spec") or {}).get("inputs") or {}), inputs)
        if not errors and shown.returncode == 0:
            given = inputs if isinstance(inputs, dict) and not self.older_than(inputs_from) else {}
            errors += _timeout_errors(shown.stdout, given)
        if not errors:
            return None
        return self._ok({"message": {"base": errors}}, 400)

    def _do_cancel_post(self, m: re.Match[str], call: Call) -> Answer:
        run = self.runs.get(int(m["id"]))
        answer = super()._do_cancel_post(m, call)
        waiting = run is not None and bool(run.gates) and run.process is not None
        if waiting and run.process.poll() is not None and not run.done.is_set():  # type: ignore[union-attr]
            # waiting at its gates: nothing runs, so it ends now
            run.canceled = True
            run.gates.clear()
            run.ended = time.monotonic()
            run.done.set()
            return answer
        if run is not None and not run.done.is_set():
            run.canceled = True  # the job token is revoked from now on
            if run.process is not None:  # "canceling" until the runner has stopped the jobs
                self.pipelines[run.pipeline_id]["status"] = "canceling"
                threading.Thread(target=self._stop_jobs, args=(run,), daemon=True).start()
        return answer

    def _stop_jobs(self, run: Run) -> None:
        """What a runner does with a cancelled job: SIGTERM to its script's processes, time
        to end (the agent reports), then the pipeline is over."""
        jobs = _agents(_processes(), run.checkout)
        _send(jobs, signal.SIGTERM)
        deadline = time.monotonic() + 10  # then the runner kills what is left
        while any(Path(f"/proc/{pid}").exists() for pid in jobs) and time.monotonic() < deadline:
            time.sleep(0.1)
        if run.process is not None:
            with contextlib.suppress(ProcessLookupError):  # the pipeline ended meanwhile
                os.killpg(run.process.pid, signal.SIGTERM)

    def _start(self, answer: Answer, call: Call) -> None:
        status, _, data = answer
        if status != 201:
            return
        pipeline = json.loads(data)
        body = call.accepted if call.accepted is not None else (call.json() or {})
        pid = int(pipeline["id"])
        checkout = self.workdir / f"p{pid}"
        subprocess.run(
            ["git", "clone", "-q", "--branch", pipeline["ref"], str(self.project_repo), checkout],
            check=True,
        )
        origin = f"{self.base}/{PROJECT_PATH}.git"
        subprocess.run(["git", "remote", "set-url", "origin", origin], cwd=checkout, check=True)
        run = Run(pid, checkout, self.workdir / f"p{pid}.log", f"{JOB_TOKEN}-p{pid}")
        run.body = body
        self.runs[pid] = run
        threading.Thread(target=self._execute, args=(run, body), daemon=True).start()

    def _project_variables(self, run: Run) -> dict[str, str]:
        return {
            "GITLAB_CI": "true",
            "CI_SERVER_URL": self.base,
            "CI_API_V4_URL": f"{self.base}/api/v4",
            "CI_PROJECT_ID": str(PROJECT_ID),
            "CI_JOB_TOKEN": run.job_token,
            **self.variables,
        }

    def _command(self, run: Run, body: dict[str, Any]) -> list[str]:
        variables_file = self.workdir / f"p{run.pipeline_id}-variables.yml"
        variables = self._project_variables(run)
        variables_file.write_text(yaml.safe_dump(variables), encoding="utf-8")
        # what started the pipeline, as GitLab sets it (doc/ci/variables/predefined_variables.md):
        # gitlab-ci-local says "push" otherwise, and the templates run no job for a push
        source = self.pipelines[run.pipeline_id]["source"]
        command = [
            str(ENGINE),
            "--no-color",
            f"--home={self.workdir / 'gcl-home'}",
            f"--variables-file={variables_file}",
            f"--variable=CI_PIPELINE_SOURCE={source}",
            f"--ignore-predefined-vars={','.join([*variables, 'CI_PIPELINE_SOURCE'])}",
        ]
        for key, value in (body.get("inputs") or {}).items():
            # gitlab-ci-local parses an --input value as JSON when it can: as JSON, each input
            # keeps the type the API request gave it ("true" a string, [..] an array)
            command.append(f"--input={key}={json.dumps(value)}")
        trigger_variables = body.get("variables") or {}
        if isinstance(trigger_variables, list):  # POST /pipeline: [{"key", "value"}]
            trigger_variables = {v["key"]: v["value"] for v in trigger_variables}
        command.extend(f"--variable={k}={v}" for k, v in trigger_variables.items())
        return command

    def _execute(self, run: Run, body: dict[str, Any]) -> None:
        try:
            code = self._run_engine(run)
            if code != 0 and not run.canceled and self._stop_at_gates(run):
                return  # the pipeline waits for a person: see the module's docstring
        except BaseException:
            run.ended = time.monotonic()
            run.done.set()
            raise
        run.ended = time.monotonic()
        run.done.set()  # also when the engine failed: the job token is invalid from now
        with self.lock:
            if run.waiting:  # GitLab created the jobs; no runner ever takes them
                for name in run.waiting:
                    self._job(run, run.pipeline_id, name, "pending")
                self.pipelines[run.pipeline_id]["status"] = "pending"
                return
            self._record_jobs(run)
            bridges = self.bridges.get(run.pipeline_id, [])
            failed = code != 0 or any(b["status"] == "failed" for b in bridges)
            status = "canceled" if run.canceled else ("failed" if failed else "success")
            if self._over_active_jobs(run):
                status = "failed"
                self.pipelines[run.pipeline_id]["_failure_reason"] = "job_activity_limit_exceeded"
                self._undo_uploads(run)
            self.pipelines[run.pipeline_id]["status"] = status

    def _no_runner_for(self, run: Run, body: dict[str, Any]) -> list[str]:
        """The jobs of the pipeline (after their rules, as gitlab-ci-local lists them) left
        with a tag naming an unset variable: GitLab creates them, and no runner has such a
        tag, so they stay pending and nothing of the pipeline runs."""
        run.tags = self._tags(run)
        literal = {name for name, tags in run.tags.items() if any("$" in t for t in tags)}
        if not literal:
            return []
        listed = subprocess.run(
            [*self._command(run, body), "--list"],
            cwd=run.checkout,
            env=self.runner_env,
            capture_output=True,
            text=True,
            timeout=ENGINE_TIMEOUT,
            check=False,
        ).stdout.splitlines()
        header = next((n for n, line in enumerate(listed) if line.startswith("name ")), None)
        if header is None:
            return []  # the engine refused the file: the run says why
        names = {line.split()[0] for line in listed[header + 1 :] if line.strip()}
        return sorted(literal & names)

    def _tags(self, run: Run) -> dict[str, list[str]]:
        """Each top-level job's tags as GitLab stores them when it creates the pipeline: the
        inputs interpolated (doc/ci/inputs/_index.md: an array input placed whole), then each
        tag's variables expanded once from the pipeline's variables, the project's and the
        YAML's global ones, in GitLab's order of precedence (doc/ci/variables/_index.md); a
        variable that is not set stays as written (ExpandVariables.expand_existing in
        lib/gitlab/ci/pipeline/seed/build.rb; spec/services/ci/create_pipeline_service/
        tags_spec.rb, "when the variable is not set")."""
        text = (run.checkout / ".gitlab-ci.yml").read_text(encoding="utf-8")
        documents = list(yaml.safe_load_all(text))
        if len(documents) != 2:
            return {}
        spec = (documents[0] or {}).get("spec", {}).get("inputs", {})
        given = {k: v.get("default") for k, v in spec.items()} | (run.body.get("inputs") or {})

        def value(m: re.Match[str]) -> str:
            got = given[m["name"]]
            return got if isinstance(got, str) else json.dumps(got)

        body = text.split("\n---\n", 1)[1]
        pipeline = yaml.safe_load(re.sub(r"\$\[\[\s*inputs\.(?P<name>\w+)\s*\]\]", value, body))
        sent = run.body.get("variables") or {}
        if isinstance(sent, list):
            sent = {v["key"]: v["value"] for v in sent}
        known = {
            **{k: str(v) for k, v in (pipeline.get("variables") or {}).items()},
            **self._project_variables(run),
            **sent,
        }

        def expand(tag: str) -> str:
            return re.sub(
                r"\$(?:\{(\w+)\}|(\w+))",
                lambda m: known.get(m[1] or m[2], m[0]),
                tag,
            )

        return {
            name: [expand(str(tag)) for tag in job.get("tags") or []]
            for name, job in pipeline.items()
            if isinstance(job, dict) and "script" in job
        }

    # --- approval gates (dispatch --plan) ---------------------------------------------------

    def _stop_at_gates(self, run: Run) -> bool:
        """When gitlab-ci-local refused the child for its gates: run the child up to them and
        show it waiting. Returns False when the failure was anything else."""
        text = run.log.read_text(encoding="utf-8", errors="replace")
        if "is when:manual, its needed by" not in text:
            return False
        child_file = ".runner-agent/pipeline.yml"  # the plan job's artifact the trigger includes
        child = yaml.safe_load((run.checkout / child_file).read_text(encoding="utf-8"))
        jobs = {k: v for k, v in child.items() if isinstance(v, dict) and "stage" in v}
        before = [n for n, j in jobs.items() if j["stage"] in ("check", "plan")]
        gates = [n for n, j in jobs.items() if j.get("when") == "manual"]
        log = run.checkout.parent / f"p{run.pipeline_id}-plan.log"
        self._engine(run, ["--file", child_file, *before], log)
        with self.lock:
            run.child_file = child_file
            results = _results(run.log)
            for name, status in results.items():
                if name != "runner-agent-run":  # the trigger job is the bridge below
                    self._job(run, run.pipeline_id, name, status)
            kid = self._new_pipeline({"ref": "main"}, name=None, source="parent_pipeline")
            kid["status"] = "manual"
            run.child_id = int(kid["id"])
            bridge = copy.deepcopy(fixture("bridges")[0])
            bridge.update(id=self._id(), name="runner-agent-run", status="running")
            bridge["pipeline"]["id"] = run.pipeline_id
            bridge["downstream_pipeline"].update(
                {"id": kid["id"], "status": "manual", "web_url": kid["web_url"]}
            )
            self.bridges.setdefault(run.pipeline_id, []).append(bridge)
            for name, status in _results(log).items():
                self._job(run, run.child_id, name, status)
            for name in gates:
                self._job(run, run.child_id, name, "manual")
                job = self.jobs[run.child_id][-1]
                environment = jobs[name].get("environment") or {}
                job["_environment"] = environment.get("name", "")
                run.gates[int(job["id"])] = name
            for name in jobs:
                if name not in before and name not in gates:
                    self._job(run, run.child_id, name, "created")
            self.pipelines[run.pipeline_id]["status"] = "running"
        return True

    def _do_play_post(self, m: re.Match[str], call: Call) -> Answer:
        answer = super()._do_play_post(m, call)
        job_id = int(m["id"])
        for run in self.runs.values():
            if answer[0] == 200 and job_id in run.gates:
                del run.gates[job_id]
                if not run.gates:  # every identity approved: the rest of the pipeline runs
                    threading.Thread(target=self._resume, args=(run,), daemon=True).start()
        return answer

    def _resume(self, run: Run) -> None:
        """The gates, the jobs after them, then the parent's last job; the outcome recorded."""
        child = yaml.safe_load((run.checkout / run.child_file).read_text(encoding="utf-8"))
        jobs = {k: v for k, v in child.items() if isinstance(v, dict) and "stage" in v}
        rest = [n for n, j in jobs.items() if j["stage"] not in ("check", "plan")]
        gates = [n for n in rest if jobs[n].get("when") == "manual"]
        manual = [f"--manual={g}" for g in gates]
        child_log = run.checkout.parent / f"p{run.pipeline_id}-apply.log"
        parent_log = run.checkout.parent / f"p{run.pipeline_id}-summary.log"
        parent_log.write_text("")
        try:
            self._engine(run, ["--file", run.child_file, *manual, *rest], child_log)
            # named on the command line, gitlab-ci-local runs a job whatever its rules: the
            # summary job's rule (`$RA_DISPATCH_ID != ""`) is applied here
            if _dispatch_id(run.body):
                self._engine(run, ["runner-agent-summary"], parent_log)
        finally:
            run.ended = time.monotonic()
            run.done.set()
        with self.lock:
            results = _results(child_log)
            kept = [j for j in self.jobs[run.child_id] if j["name"] not in results]
            self.jobs[run.child_id] = kept
            for name, status in results.items():
                self._job(run, run.child_id, name, status)
            failed = any(s == "failed" for s in results.values()) or len(results) < len(rest)
            child_status = "canceled" if run.canceled else ("failed" if failed else "success")
            self.pipelines[run.child_id]["status"] = child_status
            for bridge in self.bridges.get(run.pipeline_id, []):
                bridge["status"] = bridge["downstream_pipeline"]["status"] = child_status
            summary = _results(parent_log)
            for name, status in summary.items():
                self._job(run, run.pipeline_id, name, status)
            bad = child_status != "success" or "failed" in summary.values()
            parent = "canceled" if run.canceled else ("failed" if bad else "success")
            self.pipelines[run.pipeline_id]["status"] = parent

    def _engine(self, run: Run, extra: list[str], log_path: Path, watch: bool = False) -> int:
        """gitlab-ci-local in the run's checkout with the run's variables and inputs; with
        ``watch``, the runner-side faults (:meth:`kill_job_midway`) apply to it."""
        with self.lock:
            if run.canceled:
                return 1
            with log_path.open("wb") as log:
                run.process = subprocess.Popen(
                    [*self._command(run, run.body), *extra],
                    cwd=run.checkout,
                    env=self.runner_env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
        if watch:
            threading.Thread(target=self._watch_kills, args=(run,), daemon=True).start()
        try:
            return run.process.wait(timeout=ENGINE_TIMEOUT)
        except subprocess.TimeoutExpired:  # a hung pipeline: stop it, the test then fails
            os.killpg(run.process.pid, signal.SIGKILL)
            return run.process.wait()

    def _undo_uploads(self, run: Run) -> None:
        """GitLab would not have created the pipeline that passed the limit, so none of its
        jobs would have run: what they uploaded and kept goes (gitlab-ci-local cannot be
        stopped at the child's creation, so the check comes after the run)."""
        for bridge in self.bridges.get(run.pipeline_id, []):
            child = int(bridge["downstream_pipeline"]["id"])
            for job in self.jobs.pop(child, []):
                self.artifacts.pop(int(job["id"]), None)
            self.pipelines[child]["status"] = "failed"
            bridge["status"] = bridge["downstream_pipeline"]["status"] = "failed"
        for job in self.jobs.get(run.pipeline_id, []):
            self.artifacts.pop(int(job["id"]), None)  # the summary job found nothing either
        mine = [
            c
            for c in self.calls
            if (c.method, c.route) == ("PUT", "package")
            and c.headers.get("JOB-TOKEN") == run.job_token
        ]
        for call in mine:
            _, _, rest = call.path.partition("/packages/generic/")
            pkg, ver, file = rest.split("/", 2)
            uploads = self.packages.get((pkg, ver, file), [])
            if call.body in uploads:
                uploads.remove(call.body)
            if not uploads:
                self.packages.pop((pkg, ver, file), None)

    def _hierarchy_jobs(self, run: Run) -> int:
        """Jobs and bridges of a run's pipeline and its children (alive together: the parts of
        a split dispatch run side by side, under their still-running parent)."""
        pipelines = [run.pipeline_id] + [
            int(b["downstream_pipeline"]["id"]) for b in self.bridges.get(run.pipeline_id, [])
        ]
        jobs = sum(len(self.jobs.get(p, [])) for p in pipelines)
        return jobs + len(self.bridges.get(run.pipeline_id, []))

    def _over_active_jobs(self, run: Run) -> bool:
        """GitLab counts, when it creates a pipeline, every job of the project's alive pipelines
        plus the new one's (lib/gitlab/ci/pipeline/chain/limit/active_jobs.rb). Checked when the
        run is over, from what ran: this hierarchy and every other run alive meanwhile."""
        others = [r for r in self.runs.values() if r is not run and r.overlaps(run)]
        total = self._hierarchy_jobs(run) + sum(self._hierarchy_jobs(r) for r in others)
        run.active_jobs = total
        return total > self.ci_active_jobs

    def _run_engine(self, run: Run) -> int:
        with self.lock:
            if run.canceled:  # cancelled before a runner took it
                return 1
            run.waiting = self._no_runner_for(run, run.body)
            if run.waiting:
                return 0
            self.pipelines[run.pipeline_id]["status"] = "running"
        return self._engine(run, [], run.log, watch=True)

    # --- what GitLab shows afterwards -------------------------------------------------------

    def _record_jobs(self, run: Run) -> None:
        """Jobs, bridges and child pipelines from gitlab-ci-local's log, as GitLab lists them:
        a bridge (trigger job) is not a job, and with ``strategy: depend`` it takes its child
        pipeline's status."""
        lines = run.log.read_text(encoding="utf-8", errors="replace").splitlines()
        in_child = {m["name"]: m["bridge"] for line in lines if (m := _CHILD_LINE.match(line))}
        results = {m["name"]: _STATUS[m[1]] for line in lines if (m := _RESULT.match(line))}
        children: dict[str, list[tuple[str, str]]] = {}
        for name, status in results.items():
            if name in in_child:
                children.setdefault(in_child[name], []).append((name, status))
        for name, status in results.items():
            if name in in_child:
                continue
            if name in children:
                self._child(run, name, children[name])
            else:
                self._job(run, run.pipeline_id, name, status)

    def _child(self, run: Run, bridge_name: str, jobs: list[tuple[str, str]]) -> None:
        failed = any(status == "failed" for _, status in jobs)
        child = self._new_pipeline({"ref": "main"}, name=None, source="parent_pipeline")
        child["status"] = "failed" if failed else "success"
        bridge = copy.deepcopy(fixture("bridges")[0])
        bridge.update(id=self._id(), name=bridge_name, status=child["status"])
        bridge["pipeline"]["id"] = run.pipeline_id
        bridge["downstream_pipeline"].update(
            {"id": child["id"], "status": child["status"], "web_url": child["web_url"]}
        )
        self.bridges.setdefault(run.pipeline_id, []).append(bridge)
        for name, status in jobs:
            self._job(run, int(child["id"]), name, status)

    def _job(self, run: Run, pipeline_id: int, name: str, status: str) -> None:
        job = copy.deepcopy(fixture("jobs")[0])
        job_id = self._id()
        job.update(
            id=job_id,
            name=name,
            status=status,
            failure_reason="script_failure" if status == "failed" else None,
            web_url=f"{self.base}/{PROJECT_PATH}/-/jobs/{job_id}",
            artifacts=[],
        )
        if pipeline_id == run.pipeline_id:
            job["tag_list"] = run.tags.get(name, [])
        job["pipeline"].update(id=pipeline_id, status=self.pipelines[pipeline_id]["status"])
        kept = run.checkout / ".gitlab-ci-local" / "artifacts" / name
        if kept.is_dir() and any(kept.rglob("*")):
            archive = io.BytesIO()
            with zipfile.ZipFile(archive, "w") as zf:
                for path in sorted(kept.rglob("*")):
                    if path.is_file():
                        zf.write(path, path.relative_to(kept).as_posix())
            self.artifacts[job_id] = archive.getvalue()
            job["artifacts"] = copy.deepcopy(fixture("jobs")[0]["artifacts"])
            job["artifacts"][0]["size"] = len(self.artifacts[job_id])
        self.jobs.setdefault(pipeline_id, []).append(job)

    # --- runner-side faults -----------------------------------------------------------------

    def _watch_kills(self, run: Run) -> None:
        while not run.done.is_set() and run.process is not None and run.process.poll() is None:
            for kill in self.kills:
                if not kill.done.is_set():
                    self._try_kill(run, kill)
            time.sleep(0.1)

    def _try_kill(self, run: Run, kill: Kill) -> None:
        tree = _processes()
        for pid in _agents(tree, run.checkout):
            cmdline = tree[pid][1]
            if f"tasks/{kill.task_file}" not in cmdline or "runner-agent run" not in cmdline:
                continue
            below = _descendants(tree, pid)
            if not any("ansible" in tree[p][1] for p in below):
                return  # not midway yet
            _send([pid, *below] if kill.sig == signal.SIGKILL else [pid], kill.sig)
            kill.done.set()
            return


def _dispatch_id(body: dict[str, Any]) -> str:
    """The dispatch id a pipeline was created with, as an input or a variable; "" for a
    pipeline run by hand."""
    variables = body.get("variables") or {}
    if isinstance(variables, list):
        variables = {v["key"]: v["value"] for v in variables}
    return str(
        (body.get("inputs") or {}).get("dispatch_id") or variables.get("RA_DISPATCH_ID") or ""
    )


def _results(log: Path) -> dict[str, str]:
    """Job name -> status from a gitlab-ci-local log's closing lines."""
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    return {m["name"]: _STATUS[m[1]] for line in lines if (m := _RESULT.match(line))}


def stop_processes(*markers: str) -> None:
    """SIGKILL every process whose command line or working folder names one of ``markers``."""
    found = _processes().items()
    _send(
        [p for p, (_, cmd, cwd) in found if any(m in cmd or cwd.startswith(m) for m in markers)],
        signal.SIGKILL,
    )


def _agents(tree: dict[int, tuple[int, str, str]], checkout: Path) -> list[int]:
    """The runner-agent processes (Python) that jobs run in a pipeline's checkout."""
    return [
        pid
        for pid, (_, cmdline, cwd) in tree.items()
        if cwd.startswith(str(checkout))
        and Path(cmdline.split(" ", 1)[0]).name.startswith("python")
        and "runner-agent " in cmdline
    ]


def _send(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        if pid != os.getpid():
            with contextlib.suppress(ProcessLookupError):  # ended on its own meanwhile
                os.kill(pid, sig)


def _processes() -> dict[int, tuple[int, str, str]]:
    """pid -> (parent pid, command line, working directory), for what /proc lets us read."""
    found: dict[int, tuple[int, str, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        found[int(entry.name)] = (ppid, cmdline.strip(), cwd)
    return found


def _descendants(tree: dict[int, tuple[int, str, str]], root: int) -> list[int]:
    out: list[int] = []
    frontier = [root]
    while frontier:
        parent = frontier.pop()
        kids = [pid for pid, (ppid, _, _) in tree.items() if ppid == parent]
        out.extend(kids)
        frontier.extend(kids)
    return out


def engine_ready() -> None:
    assert ENGINE.exists(), f"{ENGINE} is missing: run `make setup` (npm install in tools/)"
    assert shutil.which("rsync"), "gitlab-ci-local needs rsync: apt-get install rsync"
