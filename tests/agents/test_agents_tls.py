"""kv_redis over rediss:// and kv_http over https://, against servers that speak TLS only: the
real redis-server (Debian's build has TLS) with ``tls-port``, and the tests' config service
wrapped in ssl. The certificates are the etcd TLS fixture's (openssl, a CA, a server
certificate for 127.0.0.1, and a second CA that signed nothing here). A good CA writes; a wrong
CA, or the right CA reached under a name the certificate does not hold, fails with a message
naming the endpoint and the certificate check, and nothing is written."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from agents.ansible_run import run_module, run_role
from agents.config_service import ConfigService, config_service
from endpoints import Certificates, RedisServer, make_certificates, start_redis

PASSWORD = "tls-Redis-pa55"
TOKEN = "tls-http-t0ken"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_redis(certs: Certificates) -> Iterator[RedisServer]:
    server = start_redis(PASSWORD, tls=certs)
    yield server
    server.stop()


@pytest.fixture
def tls_service(certs: Certificates) -> Iterator[ConfigService]:
    with config_service(TOKEN, tls=certs) as running:
        yield running


@pytest.fixture
def key() -> str:
    return f"runner-agent-tls:{uuid.uuid4().hex[:12]}"


def _refused_certificate(message: str) -> bool:
    return "certificate" in message and "ca_cert" in message


# ---------------------------------------------------------------- kv_redis, rediss://


def test_redis_over_tls_with_the_right_ca_writes_and_reads(
    tls_redis: RedisServer, certs: Certificates, key: str, tmp_path: Path
) -> None:
    assert tls_redis.url.startswith("rediss://")
    args = {"url": tls_redis.url, "key": key, "password": PASSWORD, "ca_cert": str(certs.ca)}
    result = run_module("kv_redis", "kv_redis", {**args, "values": {"a": {"b": 1}}}, tmp_path)
    assert result["changed"] is True, result
    assert tls_redis.client().hgetall(key) == {"a/b": "1"}
    read = run_module("kv_redis", "kv_redis", {**args, "operation": "read"}, tmp_path)
    assert read["values"] == {"a/b": "1"}


def test_redis_with_a_wrong_ca_fails_clearly_and_writes_nothing(
    tls_redis: RedisServer, certs: Certificates, key: str, tmp_path: Path
) -> None:
    tls_redis.client().hset(key, "kept", "as it was")
    before = tls_redis.snapshot(key)
    args = {"url": tls_redis.url, "key": key, "password": PASSWORD, "values": {"kept": "new"}}
    result = run_module("kv_redis", "kv_redis", {**args, "ca_cert": str(certs.other_ca)}, tmp_path)
    assert result["failed"] is True and tls_redis.url in result["msg"]
    assert _refused_certificate(result["msg"]), result["msg"]
    assert PASSWORD not in json.dumps({k: v for k, v in result.items() if k != "invocation"})
    assert tls_redis.snapshot(key) == before


def test_redis_without_a_ca_does_not_trust_the_test_ca(
    tls_redis: RedisServer, key: str, tmp_path: Path
) -> None:
    """The system's CAs are the default: a private CA must be given as ca_cert."""
    args = {"url": tls_redis.url, "key": key, "password": PASSWORD, "values": {"a": 1}}
    result = run_module("kv_redis", "kv_redis", args, tmp_path)
    assert result["failed"] is True and _refused_certificate(result["msg"]), result["msg"]
    assert tls_redis.client().exists(key) == 0


def test_redis_checks_the_server_name(
    tls_redis: RedisServer, certs: Certificates, key: str, tmp_path: Path
) -> None:
    """The certificate names 127.0.0.1 only: reached as localhost, it is not the server's."""
    url = tls_redis.url.replace("127.0.0.1", "localhost")
    args = {"url": url, "key": key, "password": PASSWORD, "values": {"a": 1}}
    result = run_module("kv_redis", "kv_redis", {**args, "ca_cert": str(certs.ca)}, tmp_path)
    assert result["failed"] is True and url in result["msg"] and "localhost" in result["msg"]
    assert tls_redis.client().exists(key) == 0


def test_redis_role_over_tls_reports_changes(
    tls_redis: RedisServer, certs: Certificates, key: str, tmp_path: Path
) -> None:
    config = {
        "url": tls_redis.url,
        "key": key,
        "password": PASSWORD,
        "ca_cert": str(certs.ca),
        "values": {"port": 8080},
    }
    install = run_role("kv_redis", "install", config, tmp_path / "install")
    assert install.custom["runner_agent_changes"] == {
        "localhost": [{"key": "port", "change": "added", "after": "8080"}]
    }
    assert tls_redis.client().hgetall(key) == {"port": "8080"}


# ---------------------------------------------------------------- kv_http, https://


def test_http_over_tls_with_the_right_ca_writes_the_document(
    tls_service: ConfigService, certs: Certificates, tmp_path: Path
) -> None:
    assert tls_service.base.startswith("https://")
    tls_service.documents["/web"] = {"port": 1}
    args = {"url": tls_service.base + "/web", "token": TOKEN, "ca_cert": str(certs.ca)}
    result = run_module("kv_http", "kv_http", {**args, "values": {"port": 2}}, tmp_path)
    assert result["changed"] is True, result
    assert result["changes"] == [{"key": "port", "change": "changed", "before": 1, "after": 2}]
    assert tls_service.documents["/web"] == {"port": 2}


def test_http_with_a_wrong_ca_fails_clearly_and_sends_nothing(
    tls_service: ConfigService, certs: Certificates, tmp_path: Path
) -> None:
    tls_service.documents["/web"] = {"port": 1}
    args = {"url": tls_service.base + "/web", "token": TOKEN, "values": {"port": 2}}
    result = run_module("kv_http", "kv_http", {**args, "ca_cert": str(certs.other_ca)}, tmp_path)
    assert result["failed"] is True and tls_service.base + "/web" in result["msg"]
    assert _refused_certificate(result["msg"]), result["msg"]
    assert TOKEN not in json.dumps({k: v for k, v in result.items() if k != "invocation"})
    assert tls_service.requests == []  # not even the GET: the token never left
    assert tls_service.documents["/web"] == {"port": 1}


def test_http_checks_the_server_name(
    tls_service: ConfigService, certs: Certificates, tmp_path: Path
) -> None:
    tls_service.documents["/web"] = {"port": 1}
    url = (tls_service.base + "/web").replace("127.0.0.1", "localhost")
    args = {"url": url, "token": TOKEN, "values": {"port": 2}, "ca_cert": str(certs.ca)}
    result = run_module("kv_http", "kv_http", args, tmp_path)
    assert result["failed"] is True and url in result["msg"]
    assert tls_service.requests == [] and tls_service.documents["/web"] == {"port": 1}
