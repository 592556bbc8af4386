"""kv_etcd against etcd as production runs it: TLS with client certificates (etcd's
--client-cert-auth), and authentication with users and roles (`auth enable`). The servers are
real etcd processes on 127.0.0.1; the certificates are made by openssl for each test session."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agents.ansible_run import load_library, run_module, run_role
from endpoints import Certificates, EtcdPrefix, EtcdServer, make_certificates, start_etcd

kv = load_library("kv_etcd", "kv_etcd")
ROOT_PASSWORD = "root-Pa55 word"
WRITER_PASSWORD = "writer-S3cret"
READER_PASSWORD = "reader-S3cret"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def tls_etcd(certs: Certificates) -> Iterator[EtcdServer]:
    server = start_etcd(tls=certs)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def auth_etcd() -> Iterator[EtcdServer]:
    """etcd with authentication on: root, a writer on /app/ and a reader of /app/."""
    server = start_etcd()
    server.add_user("writer", WRITER_PASSWORD, "app-writer")
    server.grant("app-writer", "/app/", "READWRITE")
    server.add_user("reader", READER_PASSWORD, "app-reader")
    server.grant("app-reader", "/app/", "READ")
    server.enable_auth(ROOT_PASSWORD)
    yield server
    server.stop()


def _tls(certs: Certificates, **override: Any) -> dict[str, Any]:
    return {
        "ca_cert": str(certs.ca),
        "client_cert": str(certs.client_cert),
        "client_key": str(certs.client_key),
        **override,
    }


def _app_prefix(server: EtcdServer) -> EtcdPrefix:
    scoped = EtcdPrefix(server.endpoint)
    scoped.prefix = "/app" + scoped.prefix
    return scoped


# ---------------------------------------------------------------- TLS


def test_tls_with_a_client_certificate_writes_the_values(
    tls_etcd: EtcdServer, certs: Certificates, tmp_path: Path
) -> None:
    scoped = EtcdPrefix(tls_etcd.endpoint)
    args = {"endpoint": tls_etcd.endpoint, "prefix": scoped.prefix, "values": {"a": {"b": 1}}}
    result = run_module("kv_etcd", "kv_etcd", {**args, **_tls(certs)}, tmp_path)
    assert result["changed"] is True, result
    assert scoped.get() == {"a/b": "1"}


def test_a_wrong_ca_fails_naming_the_endpoint_and_writes_nothing(
    tls_etcd: EtcdServer, certs: Certificates, tmp_path: Path
) -> None:
    scoped = EtcdPrefix(tls_etcd.endpoint)
    args = {"endpoint": tls_etcd.endpoint, "prefix": scoped.prefix, "values": {"k": "v"}}
    result = run_module(
        "kv_etcd", "kv_etcd", {**args, **_tls(certs, ca_cert=str(certs.other_ca))}, tmp_path
    )
    assert result["failed"] is True and tls_etcd.endpoint in result["msg"]
    assert "CERTIFICATE_VERIFY_FAILED" in result["msg"] or "certificate" in result["msg"]
    assert scoped.get() == {}


def test_without_a_client_certificate_etcd_refuses_and_nothing_is_written(
    tls_etcd: EtcdServer, certs: Certificates, tmp_path: Path
) -> None:
    scoped = EtcdPrefix(tls_etcd.endpoint)
    args = {"endpoint": tls_etcd.endpoint, "prefix": scoped.prefix, "values": {"k": "v"}}
    result = run_module("kv_etcd", "kv_etcd", {**args, "ca_cert": str(certs.ca)}, tmp_path)
    assert result["failed"] is True and tls_etcd.endpoint in result["msg"]
    assert scoped.get() == {}


def test_the_server_name_is_checked_by_default(
    tls_etcd: EtcdServer, certs: Certificates, tmp_path: Path
) -> None:
    """The certificate names 127.0.0.1 only: reached as localhost, it is not etcd's."""
    scoped = EtcdPrefix(tls_etcd.endpoint)
    as_localhost = tls_etcd.endpoint.replace("127.0.0.1", "localhost")
    args = {"endpoint": as_localhost, "prefix": scoped.prefix, "values": {"k": "v"}}
    result = run_module("kv_etcd", "kv_etcd", {**args, **_tls(certs)}, tmp_path)
    assert result["failed"] is True and as_localhost in result["msg"]
    assert "localhost" in result["msg"] and scoped.get() == {}


# ---------------------------------------------------------------- users and roles


def test_a_user_with_write_permission_writes(auth_etcd: EtcdServer, tmp_path: Path) -> None:
    scoped = _app_prefix(auth_etcd)
    args = {
        "endpoint": auth_etcd.endpoint,
        "prefix": scoped.prefix,
        "values": {"port": 8080},
        "user": "writer",
        "password": WRITER_PASSWORD,
    }
    result = run_module("kv_etcd", "kv_etcd", args, tmp_path)
    assert result["changed"] is True, result
    assert scoped.get() == {"port": "8080"}


def test_a_wrong_password_fails_naming_the_endpoint_and_nothing_is_written(
    auth_etcd: EtcdServer, tmp_path: Path
) -> None:
    scoped = _app_prefix(auth_etcd)
    args = {
        "endpoint": auth_etcd.endpoint,
        "prefix": scoped.prefix,
        "values": {"port": 8080},
        "user": "writer",
        "password": "not-the-password",
    }
    result = run_module("kv_etcd", "kv_etcd", args, tmp_path)
    assert result["failed"] is True
    assert result["msg"].startswith(f"etcd {auth_etcd.endpoint} refused user 'writer'")
    assert "not-the-password" not in json.dumps(result)
    assert scoped.get() == {}


def test_a_user_without_write_permission_fails_and_nothing_is_written(
    auth_etcd: EtcdServer, tmp_path: Path
) -> None:
    scoped = _app_prefix(auth_etcd)
    scoped.put("kept", "as it was")
    args = {
        "endpoint": auth_etcd.endpoint,
        "prefix": scoped.prefix,
        "values": {"port": 8080},
        "user": "reader",
        "password": READER_PASSWORD,
    }
    result = run_module("kv_etcd", "kv_etcd", args, tmp_path)
    assert result["failed"] is True and auth_etcd.endpoint in result["msg"]
    assert "permission denied" in result["msg"]
    assert scoped.get() == {"kept": "as it was"}


def test_a_user_may_read_what_its_role_allows(auth_etcd: EtcdServer, tmp_path: Path) -> None:
    scoped = _app_prefix(auth_etcd)
    scoped.put("port", "8080")
    args = {
        "endpoint": auth_etcd.endpoint,
        "prefix": scoped.prefix,
        "operation": "read",
        "user": "reader",
        "password": READER_PASSWORD,
    }
    result = run_module("kv_etcd", "kv_etcd", args, tmp_path)
    assert result["values"] == {"port": "8080"}


def test_a_token_etcd_no_longer_accepts_is_renewed(auth_etcd: EtcdServer) -> None:
    scoped = _app_prefix(auth_etcd)
    scoped.put("port", "8080")
    client = kv.Client(auth_etcd.endpoint, 5, None, "writer", WRITER_PASSWORD)
    client.read_prefix(scoped.prefix)
    client.token = "revoked"  # etcd answers "invalid auth token", as after --auth-token-ttl
    stored, _ = client.read_prefix(scoped.prefix)
    assert stored == {"port": "8080"} and client.authentications == 2


def test_the_password_never_reaches_the_results(auth_etcd: EtcdServer, tmp_path: Path) -> None:
    scoped = _app_prefix(auth_etcd)
    config = {
        "endpoint": auth_etcd.endpoint,
        "prefix": scoped.prefix,
        "values": {"port": 8080},
        "user": "writer",
        "password": WRITER_PASSWORD,
    }
    run = run_role("kv_etcd", "update", config, tmp_path)
    assert scoped.get() == {"port": "8080"}
    assert WRITER_PASSWORD not in run.output + json.dumps(run.results) + json.dumps(run.custom)
