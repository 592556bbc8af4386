"""The worker as STACKL core meets it: real Redis, real arq, the STACKL stand-in, tasks run
here (--local) against real files and a real etcd."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from endpoints import EtcdPrefix
from redis_server import RedisServer
from stackl_helpers import core_and_worker, core_invocation, entry, local_service
from stackl_standin import StacklStandIn, stack_instance

from runner_agent.model.agents import AgentRegistry

CORE_KEYS = {
    "action",
    "functional_requirement",
    "image",
    "before_command",
    "infrastructure_target",
    "stack_instance",
    "tool",
    "gather_facts",
    "service",
    "hosts",
}


def run(
    redis: RedisServer,
    queue: str,
    stackl: StacklStandIn,
    registry: AgentRegistry,
    tmp_path: Path,
    invocations: list[dict[str, Any]],
    job_timeout: float = 300,
) -> list[Any]:
    service = local_service(stackl, registry, tmp_path / "state", job_timeout)
    return asyncio.run(core_and_worker(redis, queue, service, invocations))


def test_a_create_writes_the_file_and_answers_the_invocation_ready(
    redis_server: RedisServer,
    queue: str,
    stackl: StacklStandIn,
    registry: AgentRegistry,
    tmp_path: Path,
) -> None:
    target = tmp_path / "web.json"
    params = {"path": str(target), "values": {"port": 8080}}
    stackl.put(stack_instance("shop", {"web": [entry("vsphere.brussels.dc1", params)]}))
    invoc = core_invocation(
        "create", "config_file", "shop", "web", "vsphere.brussels.dc1", ansible_role="kv_file"
    )

    (result,) = run(redis_server, queue, stackl, registry, tmp_path, [invoc])

    assert result == {**invoc, "status": "READY", "error_message": ""}
    assert json.loads(target.read_text()) == {"port": 8080}


def test_two_infrastructure_targets_are_two_identities_run_side_by_side(
    redis_server: RedisServer,
    queue: str,
    stackl: StacklStandIn,
    registry: AgentRegistry,
    tmp_path: Path,
    etcd: EtcdPrefix,
) -> None:
    entries = [
        entry(
            f"dc{i}",
            {
                "endpoint": etcd.endpoint,
                "prefix": f"{etcd.prefix}dc{i}/",
                "values": {"dc": f"dc{i}"},
            },
        )
        for i in (1, 2)
    ]
    stackl.put(stack_instance("shop", {"web": entries}))
    invocations = [core_invocation("create", "kv_etcd", "shop", "web", f"dc{i}") for i in (1, 2)]

    results = run(redis_server, queue, stackl, registry, tmp_path, invocations)

    assert [r["status"] for r in results] == ["READY", "READY"]
    assert etcd.get() == {"dc1/dc": "dc1", "dc2/dc": "dc2"}
    states = sorted(
        p.relative_to(tmp_path / "state").as_posix() for p in (tmp_path / "state").rglob("*.json")
    )
    assert states == ["shop/web/kv_etcd/dc1.json", "shop/web/kv_etcd/dc2.json"]


def test_a_failed_invocation_answers_failed_beside_a_ready_one(
    redis_server: RedisServer,
    queue: str,
    stackl: StacklStandIn,
    registry: AgentRegistry,
    tmp_path: Path,
) -> None:
    stackl.put(
        stack_instance(
            "shop",
            {
                "web": [
                    entry("dc1", {"fail": True, "message": "disk full"}),
                    entry("dc2", {"fail": False}),
                ]
            },
        )
    )
    bad = core_invocation("create", "probe", "shop", "web", "dc1")
    good = core_invocation("create", "probe", "shop", "web", "dc2")

    failed, ready = run(redis_server, queue, stackl, registry, tmp_path, [bad, good])

    assert failed["status"] == "FAILED" and "probe failed with disk full" in failed["error_message"]
    assert failed.keys() >= CORE_KEYS and failed["infrastructure_target"] == "dc1"
    assert ready["status"] == "READY" and ready["infrastructure_target"] == "dc2"


def test_a_delete_uninstalls_and_sends_no_outputs(
    redis_server: RedisServer,
    queue: str,
    stackl: StacklStandIn,
    registry: AgentRegistry,
    tmp_path: Path,
) -> None:
    target = tmp_path / "web.json"
    params = {"path": str(target), "values": {"port": 8080}}
    stackl.put(stack_instance("shop", {"web": [entry("dc1", params)]}))
    create = core_invocation("create", "kv_file", "shop", "web", "dc1")
    delete = core_invocation("delete", "kv_file", "shop", "web", "dc1")

    (created,) = run(redis_server, queue, stackl, registry, tmp_path, [create])
    posted = len(stackl.outputs_posted())
    (deleted,) = run(redis_server, queue, stackl, registry, tmp_path, [delete])

    assert created["status"] == "READY" and deleted["status"] == "READY"
    assert not target.exists()
    assert len(stackl.outputs_posted()) == posted


def test_outputs_go_to_stackl_as_an_outputs_update(
    redis_server: RedisServer,
    queue: str,
    stackl: StacklStandIn,
    registry: AgentRegistry,
    tmp_path: Path,
) -> None:
    stackl.put(stack_instance("shop", {"web": [entry("dc1", {"message": "hi", "count": 2})]}))
    invoc = core_invocation("create", "probe", "shop", "web", "dc1")

    (result,) = run(redis_server, queue, stackl, registry, tmp_path, [invoc])

    assert result["status"] == "READY"
    (update,) = stackl.outputs_posted()
    assert update["stack_instance"] == "shop" and update["service"] == "web"
    assert update["infrastructure_target"] == "dc1"
    assert update["outputs"]["message"] == "hi"
    stored = stackl.instances["shop"]["services"]["web"][0]
    assert stored["outputs"]["message"] == "hi"


def test_a_timeout_is_a_failed_result_not_an_exception(
    redis_server: RedisServer,
    queue: str,
    stackl: StacklStandIn,
    registry: AgentRegistry,
    tmp_path: Path,
) -> None:
    stackl.put(stack_instance("shop", {"web": [entry("dc1", {"sleep": 60})]}))
    invoc = core_invocation("create", "probe", "shop", "web", "dc1")

    (result,) = run(redis_server, queue, stackl, registry, tmp_path, [invoc], job_timeout=2)

    assert result["status"] == "FAILED"
    assert result["error_message"].startswith("timeout in invoked job")
    assert result.keys() >= CORE_KEYS


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"action": "destroy"}, "'destroy' is not create, update or delete"),
        ({"stack_instance": None}, "stack_instance is required"),
        ({"hosts": "web1"}, "hosts must be a list"),
        ({"tool": "terraform"}, "tool 'terraform' is not supported"),
        ({"stack_instance": "nope"}, "no stack instance 'nope'"),
        ({"infrastructure_target": "dc9"}, "no entry on infrastructure target 'dc9'"),
    ],
)
def test_an_invalid_invocation_is_a_failed_result_keeping_its_keys(
    redis_server: RedisServer,
    queue: str,
    stackl: StacklStandIn,
    registry: AgentRegistry,
    tmp_path: Path,
    change: dict[str, Any],
    words: str,
) -> None:
    stackl.put(stack_instance("shop", {"web": [entry("dc1", {})]}))
    invoc = {**core_invocation("create", "probe", "shop", "web", "dc1"), **change}

    (result,) = run(redis_server, queue, stackl, registry, tmp_path, [invoc])

    assert result == {**invoc, "status": "FAILED", "error_message": result["error_message"]}
    assert words in result["error_message"]


def test_an_unknown_agent_is_a_failed_result_naming_it(
    redis_server: RedisServer,
    queue: str,
    stackl: StacklStandIn,
    registry: AgentRegistry,
    tmp_path: Path,
) -> None:
    stackl.put(stack_instance("shop", {"web": [entry("dc1", {})]}))
    invoc = core_invocation(
        "create", "loadbalancer", "shop", "web", "dc1", ansible_role="haproxy_cfg"
    )

    (result,) = run(redis_server, queue, stackl, registry, tmp_path, [invoc])

    assert result["status"] == "FAILED"
    assert "unknown agent 'haproxy_cfg'" in result["error_message"]


def test_parameters_the_agent_does_not_declare_are_ignored_and_listed(
    redis_server: RedisServer,
    queue: str,
    stackl: StacklStandIn,
    registry: AgentRegistry,
    tmp_path: Path,
) -> None:
    params = {"message": "hi", "machine_names": ["web-01"], "vm_size": "large"}
    stackl.put(stack_instance("shop", {"web": [entry("dc1", params)]}))
    invoc = core_invocation("create", "probe", "shop", "web", "dc1")

    (result,) = run(redis_server, queue, stackl, registry, tmp_path, [invoc])

    assert result["status"] == "READY"
    assert result["ignored_parameters"] == ["machine_names", "vm_size"]


def test_placeholder_text_in_stackl_parameters_stays_data(
    redis_server: RedisServer,
    queue: str,
    stackl: StacklStandIn,
    registry: AgentRegistry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RA_SECRET_LEAK", "worker-environment-CANARY")
    text = "${env:RA_SECRET_LEAK} and ${outputs:shop/db:password}"
    stackl.put(stack_instance("shop", {"web": [entry("dc1", {"message": text})]}))
    invoc = core_invocation("create", "probe", "shop", "web", "dc1")

    (result,) = run(redis_server, queue, stackl, registry, tmp_path, [invoc])

    assert result["status"] == "READY"
    (update,) = stackl.outputs_posted()
    assert update["outputs"]["message"] == text


def test_secrets_reach_the_run_but_never_the_result_outputs_state_or_log(
    redis_server: RedisServer,
    queue: str,
    stackl: StacklStandIn,
    registry: AgentRegistry,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = "s3cr3t-STACKL-CANARY"
    encoded = base64.b64encode(secret.encode()).decode()
    stackl.put(
        stack_instance(
            "shop",
            {
                "web": [
                    entry("dc1", {"count": 1}, secrets={"message": encoded}),
                ]
            },
        )
    )
    invoc = core_invocation("create", "probe", "shop", "web", "dc1")
    caplog.set_level(logging.DEBUG)

    (result,) = run(redis_server, queue, stackl, registry, tmp_path, [invoc])

    assert result["status"] == "READY"
    (update,) = stackl.outputs_posted()
    assert update["outputs"]["message"] == "********"  # it was there, redacted
    for place in [json.dumps(result), json.dumps(update), caplog.text]:
        assert secret not in place and encoded not in place
    for path in (tmp_path / "state").rglob("*"):
        if path.is_file():
            assert secret not in path.read_text()
