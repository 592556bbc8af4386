"""``dispatch --plan`` through the GitLab stand-in and gitlab-ci-local: the pipeline dry-runs
the tasks, publishes the plan and stops at one manual job per identity; nothing on the real
endpoints changes (files byte for byte, etcd key by key at the same revision) until someone
starts the gates; ``status`` says "waiting for approval" and ``wait --timeout`` does not give
up meanwhile; then the apply jobs run, each in its identity's environment."""

from __future__ import annotations

import io
import json
import subprocess
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import requests
import yaml
from endpoints import EtcdPrefix
from fake_gitlab import CANARY_TOKEN
from standin import GIT, Cli, GitLabStandIn

from runner_agent.pipeline.render import PLAN_JOB, environment_name, gate_name


def until(check: Any, what: str, limit: float = 90) -> Any:
    """Poll ``check`` (a pipeline is a real process): its first truthy answer."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"never {what}")


def snapshot(path: Path) -> tuple[bytes, int, int]:
    info = path.stat()
    return path.read_bytes(), info.st_ino, info.st_mtime_ns


def phase(cli: Cli, handle: str) -> str:
    code, out, err = cli("status", handle, "-o", "json")
    assert code == 0, err
    return str(json.loads(out)["phase"])


def test_a_planned_dispatch_waits_for_approval_then_applies(
    standin: GitLabStandIn, cli: Cli, tmp_path: Path, etcd_server: str
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    web = out / "web.json"
    web.write_text('{"mode": "blue", "old": "x", "port": 8080}\n')
    db = out / "db.json"  # absent: the task would create it
    etcd = EtcdPrefix(etcd_server)
    etcd.put("ttl", "30")
    try:
        tasks = [
            {"identity": "acme/web", "agent": "kv_file", "command": "update",
             "config": {"path": str(web), "values": {"mode": "green", "port": 8080}}},
            {"identity": "acme/db", "agent": "kv_file",
             "config": {"path": str(db), "values": {"pool": 5}}},
            {"identity": "acme/cache", "agent": "kv_etcd", "command": "update",
             "config": {"endpoint": etcd.endpoint, "prefix": etcd.prefix,
                        "values": {"ttl": "60", "size": "512"}}},
        ]  # fmt: skip
        path = tmp_path / "tasks.yml"
        path.write_text(yaml.safe_dump(tasks, sort_keys=False))
        before_web, before_etcd, revision = snapshot(web), etcd.get(), etcd.revision()

        code, handle, err = cli("dispatch", str(path), "--plan", "-o", "json")
        assert code == 0, err
        pipeline_id = json.loads(handle)["pipeline_id"]
        until(lambda: phase(cli, handle) == "waiting_for_approval", "waiting for approval")

        # stopped at the gates: the dry runs ran, nothing changed anywhere
        assert snapshot(web) == before_web and not db.exists()
        assert etcd.get() == before_etcd and etcd.revision() == revision
        code, text, _ = cli("status", handle)
        assert "waiting for approval (running)" in text
        (bridge,) = standin.bridges[pipeline_id]
        assert bridge["status"] == "running" and bridge["downstream_pipeline"]["status"] == "manual"
        child = int(bridge["downstream_pipeline"]["id"])
        jobs = {j["name"]: j for j in standin.jobs[child]}
        gates = {gate_name(i): jobs[gate_name(i)] for i in ("acme/web", "acme/db", "acme/cache")}
        assert {g["status"] for g in gates.values()} == {"manual"}
        assert {j["status"] for n, j in jobs.items() if n.startswith("check:")} == {"success"}
        assert jobs["acme/web:update:0"]["status"] == "created"
        plan = _plan(standin, int(jobs[PLAN_JOB]["id"]))
        assert '| `acme/web` | `localhost` | `mode` | changed | `"blue"` | `"green"` |' in plan
        assert "`old` | removed" in plan and "`pool` | added" in plan
        assert '`ttl` | changed | `"30"` | `"60"`' in plan

        # wait --timeout 4s keeps waiting while the run waits for a person...
        waited: list[tuple[int, str, str]] = []
        waiter = threading.Thread(
            target=lambda: waited.append(cli("wait", handle, "--timeout", "4s", "--interval", "1"))
        )
        waiter.start()
        waiter.join(10)
        assert waiter.is_alive() and not waited  # not timed out at two and a half times it

        # ...then a person who may deploy to each environment starts the gates
        for gate in gates.values():
            assert _play(standin, int(gate["id"])) == 200
        waiter.join(240)
        assert not waiter.is_alive()
        ((code, _, err),) = waited
        assert "waiting for approval" in err.splitlines()[0]
        # the applying counts: it took longer than 4s, so that wait ended with exit 5
        assert code == 5 and "still running after 4s" in err, err
        code, report, err = cli("wait", handle, "--interval", "1", "-o", "json")
        assert code == 0, err + report
        reports = json.loads(report)["reports"]
        assert [(r["status"], r["check"]) for r in reports] == [("success", False)] * 3
        assert json.loads(web.read_text()) == {"mode": "green", "port": 8080}
        assert json.loads(db.read_text()) == {"pool": 5}
        assert etcd.get() == {"ttl": "60", "size": "512"}
        applied = (standin.workdir / f"p{pipeline_id}-apply.log").read_text()
        for identity in ("acme/web", "acme/db", "acme/cache"):
            assert f"environment: {{ name: {environment_name(identity)} }}" in applied
    finally:
        etcd.clear()


def test_a_gate_of_a_protected_environment_waits_for_someone_allowed(
    standin: GitLabStandIn, cli: Cli, tmp_path: Path
) -> None:
    target = tmp_path / "web.json"
    task = {
        "identity": "acme/web",
        "agent": "kv_file",
        "config": {"path": str(target), "values": {"a": 1}},
    }
    path = tmp_path / "tasks.yml"
    path.write_text(yaml.safe_dump([task]))
    code, handle, err = cli("dispatch", str(path), "--plan", "-o", "json")
    assert code == 0, err
    until(lambda: phase(cli, handle) == "waiting_for_approval", "waiting for approval")
    pipeline_id = json.loads(handle)["pipeline_id"]
    child = int(standin.bridges[pipeline_id][0]["downstream_pipeline"]["id"])
    (gate,) = [j for j in standin.jobs[child] if j["name"] == gate_name("acme/web")]
    standin.protected_environments = {environment_name("acme/web"): False}
    assert _play(standin, int(gate["id"])) == 403
    code, _, err = cli("wait", handle, "--approval-timeout", "3s", "--interval", "1")
    assert code == 5 and "waited for approval longer than 3s" in err
    assert not target.exists()
    code, out, err = cli("cancel", handle)
    assert code == 0 and "canceled" in out, err
    assert not target.exists()


def _play(standin: GitLabStandIn, job_id: int) -> int:
    answer = requests.post(
        f"{standin.base}/api/v4/projects/42/jobs/{job_id}/play",
        headers={"PRIVATE-TOKEN": CANARY_TOKEN},
        timeout=10,
    )
    return answer.status_code


def _plan(standin: GitLabStandIn, job_id: int) -> str:
    with zipfile.ZipFile(io.BytesIO(standin.artifacts[job_id])) as archive:
        return archive.read(".runner-agent/plan.md").decode()


def test_a_pipeline_run_by_hand_with_plan_first_waits_for_approval(
    standin: GitLabStandIn, tmp_path: Path
) -> None:
    """Build > Pipelines > Run pipeline with the inputs task_file and plan_first: no bundle, so
    only the input asks for the gate."""
    target = tmp_path / "web.json"
    task = {
        "identity": "acme/web",
        "agent": "kv_file",
        "config": {"path": str(target), "values": {"a": 1}},
    }
    repo = standin.project_repo
    (repo / "tasks").mkdir()
    (repo / "tasks" / "web.yml").write_text(yaml.safe_dump(task))
    subprocess.run([*GIT, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*GIT, "commit", "-qm", "a task"], cwd=repo, check=True)
    api = f"{standin.base}/api/v4/projects/42"
    headers = {"PRIVATE-TOKEN": CANARY_TOKEN}
    inputs = {"task_file": "tasks/web.yml", "plan_first": True}
    created = requests.post(
        f"{api}/pipeline", json={"ref": "main", "inputs": inputs}, headers=headers, timeout=10
    )
    assert created.status_code == 201, created.text
    pipeline_id = created.json()["id"]

    def bridge() -> Any:
        found = requests.get(f"{api}/pipelines/{pipeline_id}/bridges", headers=headers, timeout=10)
        return (found.json() or [None])[0]

    waiting = until(
        lambda: (b := bridge()) and b["downstream_pipeline"]["status"] == "manual" and b, "blocked"
    )
    assert waiting["status"] == "running" and not target.exists()
    child = int(waiting["downstream_pipeline"]["id"])
    (gate,) = [j for j in standin.jobs[child] if j["name"] == gate_name("acme/web")]
    assert _play(standin, int(gate["id"])) == 200
    until(lambda: standin.pipelines[pipeline_id]["status"] == "success", "applied", limit=180)
    assert json.loads(target.read_text()) == {"a": 1}
