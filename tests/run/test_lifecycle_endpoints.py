"""The new agents through the job's runtime (ansible-runner, the shipped collection on its
collections path), against real endpoints: secrets come from ${env:} and stay masked, and an
endpoint's refusal is a failed report naming the endpoint, with nothing written."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agents.config_service import ConfigService, config_service
from endpoints import EtcdPrefix, EtcdServer, RedisServer, start_etcd, start_redis

from runner_agent.model.agents import default_registry
from runner_agent.model.state import LocalStateStore
from runner_agent.model.tasks import tasks_from_data
from runner_agent.report.model import Report, Status
from runner_agent.run.runtime import RunContext, run_tasks

RA_SECRET_REDIS_PASSWORD = "redis-Pa55-word"
ETCD_ROOT = "root-Pa55-word"
WRITER = "writer-Pa55-word"
TOKEN = "http-t0ken-value"


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    server = start_redis(RA_SECRET_REDIS_PASSWORD)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def auth_etcd() -> Iterator[EtcdServer]:
    server = start_etcd()
    server.add_user("writer", WRITER, "app-writer")
    server.grant("app-writer", "/app/", "READWRITE")
    server.enable_auth(ETCD_ROOT)
    yield server
    server.stop()


def _run(tmp_path: Path, environ: dict[str, str], *items: dict[str, Any]) -> list[Report]:
    ctx = RunContext(
        registry=default_registry(), store=LocalStateStore(tmp_path / "state"), environ=environ
    )
    return run_tasks(tasks_from_data(items, registry=ctx.registry), ctx)


def test_kv_redis_installs_with_its_password_from_the_environment(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    key = f"acme:{uuid.uuid4().hex[:8]}"
    task = {
        "identity": "acme/cache",
        "agent": "kv_redis",
        "config": {
            "url": redis_server.url,
            "key": key,
            "password": "${env:RA_SECRET_REDIS_PASSWORD}",
            "values": {"port": 8080, "db": {"pool": 10}},
        },
    }
    (report,) = _run(tmp_path, {"RA_SECRET_REDIS_PASSWORD": RA_SECRET_REDIS_PASSWORD}, task)
    assert report.status is Status.SUCCESS, report.error
    assert report.outputs["key"] == key and report.outputs["keys"] == 2
    assert redis_server.client().hgetall(key) == {"port": "8080", "db/pool": "10"}
    assert RA_SECRET_REDIS_PASSWORD not in json.dumps(report.to_dict(results=True))


def test_a_wrong_etcd_password_is_a_failed_report_naming_the_endpoint(
    auth_etcd: EtcdServer, tmp_path: Path
) -> None:
    scoped = EtcdPrefix(auth_etcd.endpoint)
    scoped.prefix = "/app" + scoped.prefix
    task = {
        "identity": "acme/etcd",
        "agent": "kv_etcd",
        "config": {
            "endpoint": auth_etcd.endpoint,
            "prefix": scoped.prefix,
            "user": "writer",
            "password": "${env:RA_SECRET_ETCD_PASSWORD}",
            "values": {"port": 8080},
        },
    }
    (report,) = _run(tmp_path, {"RA_SECRET_ETCD_PASSWORD": "not-the-password"}, task)
    assert report.status is Status.FAILED
    text = json.dumps(report.to_dict(results=True))
    assert f"etcd {auth_etcd.endpoint} refused user 'writer'" in text
    assert "not-the-password" not in text and scoped.get() == {}


def test_a_concurrent_edit_of_a_document_is_a_failed_report(tmp_path: Path) -> None:
    service: ConfigService
    with config_service(TOKEN) as service:
        service.documents["/web"] = {"port": 1}
        service.edit_after_get["/web"] = {"port": 1, "edited": True}
        task = {
            "identity": "acme/doc",
            "agent": "kv_http",
            "config": {
                "url": service.base + "/web",
                "token": "${env:RA_SECRET_CONFIG_TOKEN}",
                "values": {"port": 2},
            },
        }
        (report,) = _run(tmp_path, {"RA_SECRET_CONFIG_TOKEN": TOKEN}, task)
        assert report.status is Status.FAILED
        text = json.dumps(report.to_dict(results=True))
        assert "conflict" in text and service.base + "/web" in text and TOKEN not in text
        assert service.documents["/web"] == {"port": 1, "edited": True}
