"""STACKL through the whole product: ``dispatch --from-stackl --wait`` reads the stack instance
from the STACKL stand-in, dispatches to the GitLab stand-in whose gitlab-ci-local jobs write a
real file, and answers with STACKL's result after sending the outputs to STACKL."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "stackl"))

from redis_server import start_redis
from stackl_helpers import core_and_worker, core_invocation, entry
from stackl_standin import StacklStandIn, serve_stackl, stack_instance
from standin import Cli, GitLabStandIn

from runner_agent.gitlab.dispatch import from_environ
from runner_agent.model.agents import default_registry
from runner_agent.stackl import GitLabBackend, StacklClient
from runner_agent.stackl.worker import Service


def test_dispatch_from_stackl_round_trip_answers_as_stackls_agent(
    standin: GitLabStandIn, cli: Cli, tmp_path: Path
) -> None:
    target = tmp_path / "out" / "web.json"
    stackl = StacklStandIn()
    params = {"path": str(target), "values": {"port": 8080}, "machine_names": ["web-01"]}
    stackl.put(stack_instance("shop", {"web": [entry("dc1", params)]}))
    invoc = core_invocation("create", "web_config", "shop", "web", "dc1", ansible_role="kv_file")
    path = tmp_path / "invocation.json"
    path.write_text(json.dumps(invoc))

    with serve_stackl(stackl) as base:
        code, out, err = cli(
            "dispatch",
            "--from-stackl",
            str(path),
            "--stackl",
            base,
            "--wait",
            "--interval",
            "1",
            "-o",
            "json",
        )

    assert code == 0, err
    assert json.loads(out) == {
        **invoc,
        "status": "READY",
        "error_message": "",
        "ignored_parameters": ["machine_names"],
    }
    assert json.loads(target.read_text()) == {"port": 8080}
    (update,) = stackl.outputs_posted()
    assert update["infrastructure_target"] == "dc1" and update["outputs"]["path"] == str(target)


def test_the_worker_round_trip_answers_stackl_core_through_gitlab(
    standin: GitLabStandIn, cli: Cli, tmp_path: Path
) -> None:
    """``stackl serve``'s worker, STACKL core enqueuing on a real Redis, the pipeline run by
    gitlab-ci-local: READY for one target, FAILED for the other, the file of the first written."""
    target = tmp_path / "out" / "web.json"
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, so no folder can be made under it")
    stackl = StacklStandIn()
    stackl.put(
        stack_instance(
            "shop",
            {
                "web": [
                    entry("dc1", {"path": str(target), "values": {"port": 8080}}),
                    entry("dc2", {"path": str(blocker / "web.json"), "values": {"port": 8080}}),
                ]
            },
        )
    )
    invocations = [
        core_invocation("create", "web_config", "shop", "web", dc, ansible_role="kv_file")
        for dc in ("dc1", "dc2")
    ]
    redis = start_redis()
    try:
        with serve_stackl(stackl) as base:
            dispatcher = from_environ(os.environ, project="acme/agents")
            service = Service(
                StacklClient(base),
                GitLabBackend(dispatcher, interval=1, max_interval=2),
                default_registry(),
                job_timeout=600,
            )
            ready, failed = asyncio.run(
                core_and_worker(redis, "gitlab-agents", service, invocations)
            )
    finally:
        redis.stop()

    assert ready == {**invocations[0], "status": "READY", "error_message": ""}
    assert failed["status"] == "FAILED" and failed["infrastructure_target"] == "dc2"
    assert json.loads(target.read_text()) == {"port": 8080}
    assert len(standin.created_pipelines()) == 2
