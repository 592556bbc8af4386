"""The kv_http agent: its pure functions; the module against json-server (a real REST server
from the npm registry) and against the tests' own config service (ETags enforced, a bearer
token, concurrent edits, error answers); the role run by ansible-playbook."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from agents.ansible_run import load_library, run_module, run_role
from agents.config_service import ConfigService, config_service
from endpoints import JsonServer, start_json_server

kv = load_library("kv_http", "kv_http")
TOKEN = "bearer-S3cret-token"


@pytest.fixture(scope="module")
def json_server() -> Iterator[JsonServer]:
    server = start_json_server({"configs": [{"id": "seed", "port": 1}]})
    yield server
    server.stop()


@pytest.fixture
def service() -> Iterator[ConfigService]:
    with config_service(TOKEN) as running:
        yield running


def _module(args: dict[str, Any], tmp_path: Path, **kw: Any) -> dict[str, Any]:
    return run_module("kv_http", "kv_http", args, tmp_path, **kw)


# ---------------------------------------------------------------- pure functions


def test_put_plan_replaces_the_document_keeping_server_keys() -> None:
    body, drift = kv.plan({"id": "w", "a": 1, "old": 2}, {"a": 1, "b": {"c": 3}}, "PUT", {"id"})
    assert body == {"id": "w", "a": 1, "b": {"c": 3}}
    assert drift == [{"key": "b/c", "change": "added"}, {"key": "old", "change": "removed"}]


def test_patch_plan_sends_only_differing_top_level_keys() -> None:
    document = {"a": 1, "b": {"c": 3, "d": 4}, "other": "kept"}
    body, drift = kv.plan(document, {"a": 1, "b": {"c": 5, "d": 4}}, "PATCH", set())
    assert body == {"b": {"c": 5, "d": 4}}
    assert drift == [{"key": "b/c", "change": "changed"}]


def test_an_equal_document_needs_no_request() -> None:
    assert kv.plan({"a": [1, 2]}, {"a": [1, 2]}, "PUT", set()) == (None, [])


# ---------------------------------------------------------------- json-server


def test_put_writes_the_document_to_json_server(json_server: JsonServer, tmp_path: Path) -> None:
    json_server.post("/configs", {"id": "web", "port": 1, "stale": True})
    args = {"url": f"{json_server.base}/configs/web", "values": {"port": 8080}, "ignore": ["id"]}
    result = _module(args, tmp_path)
    assert result["changed"] is True and result["requests"] == 2, result
    assert json_server.get("/configs/web") == {"id": "web", "port": 8080}


def test_an_equal_document_is_not_written_again(json_server: JsonServer, tmp_path: Path) -> None:
    json_server.post("/configs", {"id": "same", "port": 8080})
    args = {"url": f"{json_server.base}/configs/same", "values": {"port": 8080}, "ignore": ["id"]}
    result = _module(args, tmp_path)
    assert result["changed"] is False and result["drift"] == [] and result["requests"] == 1


def test_patch_leaves_other_keys_alone(json_server: JsonServer, tmp_path: Path) -> None:
    json_server.post("/configs", {"id": "patched", "port": 1, "owner": "ops"})
    args = {
        "url": f"{json_server.base}/configs/patched",
        "values": {"port": 2},
        "method": "PATCH",
        "ignore": ["id"],
    }
    assert _module(args, tmp_path)["changed"] is True
    assert json_server.get("/configs/patched") == {"id": "patched", "port": 2, "owner": "ops"}


def test_patch_keeps_nested_keys_the_values_do_not_name(
    json_server: JsonServer, tmp_path: Path
) -> None:
    """json-server replaces the top-level values a PATCH carries: the module sends each one
    merged with what the document holds, so the document and the changes agree."""
    json_server.post("/configs", {"id": "nested", "db": {"host": "a", "pool": 5}, "x": {"y": 1}})
    args = {
        "url": f"{json_server.base}/configs/nested",
        "values": {"db": {"host": "b"}, "x": 2},
        "method": "PATCH",
        "ignore": ["id"],
    }
    result = _module(args, tmp_path)
    assert json_server.get("/configs/nested") == {
        "id": "nested",
        "db": {"host": "b", "pool": 5},
        "x": 2,
    }
    assert result["changes"] == [
        {"key": "db/host", "change": "changed", "before": "a", "after": "b"},
        {"key": "x", "change": "added", "after": 2},
        {"key": "x/y", "change": "removed", "before": 1},
    ]


def test_check_mode_reports_the_changes_and_writes_nothing(
    json_server: JsonServer, tmp_path: Path
) -> None:
    json_server.post("/configs", {"id": "dry", "port": 1, "db": {"host": "a"}, "gone": [1]})
    before = json_server.stored()
    args = {
        "url": f"{json_server.base}/configs/dry",
        "values": {"port": 2, "db": {"host": "a", "pool": 5}},
        "ignore": ["id"],
    }
    result = _module(args, tmp_path, check=True)
    assert result["drift"] == [
        {"key": "db/pool", "change": "added"},
        {"key": "gone", "change": "removed"},
        {"key": "port", "change": "changed"},
    ]
    assert result["changes"] == [
        {"key": "db/pool", "change": "added", "after": 5},
        {"key": "gone", "change": "removed", "before": [1]},
        {"key": "port", "change": "changed", "before": 1, "after": 2},
    ]
    assert json_server.get("/configs/dry") == {
        "id": "dry", "port": 1, "db": {"host": "a"}, "gone": [1]
    }  # fmt: skip
    assert json_server.stored() == before  # json-server's whole store, byte for byte


def test_check_mode_of_remove_lists_the_document_and_deletes_nothing(
    json_server: JsonServer, tmp_path: Path
) -> None:
    json_server.post("/configs", {"id": "dry-rm", "port": 1, "db": {"host": "a"}})
    before = json_server.stored()
    url = f"{json_server.base}/configs/dry-rm"
    result = _module({"url": url, "operation": "remove", "ignore": ["id"]}, tmp_path, check=True)
    assert result["changed"] is True
    assert result["changes"] == [  # the server's own "id" (ignore) is not the packet's
        {"key": "db/host", "change": "removed", "before": "a"},
        {"key": "port", "change": "removed", "before": 1},
    ]
    assert json_server.stored() == before


def test_patch_lists_only_the_keys_it_sets(json_server: JsonServer, tmp_path: Path) -> None:
    json_server.post("/configs", {"id": "p2", "port": 1, "owner": "ops"})
    args = {
        "url": f"{json_server.base}/configs/p2",
        "values": {"port": 2, "new": True},
        "method": "PATCH",
        "ignore": ["id"],
    }
    result = _module(args, tmp_path)
    assert result["changes"] == [
        {"key": "new", "change": "added", "after": True},
        {"key": "port", "change": "changed", "before": 1, "after": 2},
    ]
    assert json_server.get("/configs/p2") == {"id": "p2", "port": 2, "owner": "ops", "new": True}


def test_remove_deletes_the_document(json_server: JsonServer, tmp_path: Path) -> None:
    json_server.post("/configs", {"id": "gone", "port": 1})
    url = f"{json_server.base}/configs/gone"
    removed = _module({"url": url, "operation": "remove"}, tmp_path)
    assert removed["changed"] is True
    assert removed["changes"] == [
        {"key": "id", "change": "removed", "before": "gone"},
        {"key": "port", "change": "removed", "before": 1},
    ]
    assert json_server.get("/configs/gone") is None
    again = _module({"url": url, "operation": "remove"}, tmp_path)
    assert again["changed"] is False and again["changes"] == []


def test_a_missing_document_for_patch_is_a_clear_failure(
    json_server: JsonServer, tmp_path: Path
) -> None:
    url = f"{json_server.base}/configs/absent"
    result = _module({"url": url, "values": {"a": 1}, "method": "PATCH"}, tmp_path)
    assert result["failed"] is True
    assert result["msg"] == f"GET {url} answered 404: there is no document at this URL"


# ---------------------------------------------------------------- the tests' config service


def _doc(service: ConfigService, path: str, **extra: Any) -> dict[str, Any]:
    return {"url": service.base + path, "token": TOKEN, **extra}


def test_the_write_carries_if_match_with_the_etag_read(
    service: ConfigService, tmp_path: Path
) -> None:
    service.documents["/web"] = {"port": 1}
    result = _module(_doc(service, "/web", values={"port": 2}), tmp_path)
    assert result["changed"] is True, result
    assert service.documents["/web"] == {"port": 2}
    (put,) = [headers for method, _, headers in service.requests if method == "PUT"]
    assert put["If-Match"] == result["etag"] and put["Authorization"] == f"Bearer {TOKEN}"


def test_a_concurrent_edit_is_a_conflict_not_a_lost_update(
    service: ConfigService, tmp_path: Path
) -> None:
    service.documents["/web"] = {"port": 1}
    service.edit_after_get["/web"] = {"port": 1, "edited": "by someone else"}
    result = _module(_doc(service, "/web", values={"port": 2}), tmp_path)
    assert result["failed"] is True and result["status"] == 412
    assert "conflict" in result["msg"] and service.base + "/web" in result["msg"]
    assert service.documents["/web"] == {"port": 1, "edited": "by someone else"}


def test_a_conflict_answer_fails_and_writes_nothing(service: ConfigService, tmp_path: Path) -> None:
    service.documents["/locked/web"] = {"port": 1}
    result = _module(_doc(service, "/locked/web", values={"port": 2}), tmp_path)
    assert result["failed"] is True and result["status"] == 409
    assert service.documents["/locked/web"] == {"port": 1}


@pytest.mark.parametrize(
    ("path", "status", "message"),
    [
        ("/status/401", 401, "the token is missing or not accepted"),
        ("/status/404", 404, "there is no document at this URL"),
        ("/status/500", 500, "Internal Server Error"),
    ],
)
def test_error_answers_fail_naming_the_url_and_the_status(
    service: ConfigService, tmp_path: Path, path: str, status: int, message: str
) -> None:
    result = _module(_doc(service, path, values={"a": 1}, method="PATCH"), tmp_path)
    assert result["failed"] is True and result["status"] == status
    assert result["msg"] == f"GET {service.base}{path} answered {status}: {message}"


def test_a_body_that_is_not_json_is_a_clear_failure(service: ConfigService, tmp_path: Path) -> None:
    result = _module(_doc(service, "/not-json", values={"a": 1}), tmp_path)
    assert result["failed"] is True
    assert result["msg"] == f"GET {service.base}/not-json answered 200 with a body that is not JSON"


def test_a_redirect_is_not_followed(service: ConfigService, tmp_path: Path) -> None:
    service.documents["/web"] = {"port": 1}
    result = _module(_doc(service, "/moved", values={"port": 2}), tmp_path)
    assert result["failed"] is True and result["status"] == 302
    assert [path for _, path, _ in service.requests] == ["/moved"]
    assert service.documents["/web"] == {"port": 1}


def test_a_wrong_token_fails_and_is_never_shown(service: ConfigService, tmp_path: Path) -> None:
    service.documents["/web"] = {"port": 1}
    result = _module(_doc(service, "/web", values={"port": 2}, token="wrong-token"), tmp_path)
    assert result["failed"] is True and result["status"] == 401
    assert "wrong-token" not in json.dumps(result) and service.documents["/web"] == {"port": 1}


def test_an_authorization_header_is_refused(service: ConfigService, tmp_path: Path) -> None:
    args = _doc(service, "/web", values={"a": 1}, headers={"authorization": "Bearer x"})
    result = _module(args, tmp_path)
    assert result["failed"] is True and "give the secret as token" in result["msg"]
    assert service.requests == []


def test_role_lifecycle_keeps_the_token_out_of_results(
    service: ConfigService, tmp_path: Path
) -> None:
    service.documents["/svc"] = {"port": 1}
    config = {"url": service.base + "/svc", "token": TOKEN, "values": {"port": 2}}
    update = run_role("kv_http", "update", config, tmp_path / "update")
    assert service.documents["/svc"] == {"port": 2}
    assert update.custom["runner_agent_changes"] == {
        "localhost": [{"key": "port", "change": "changed", "before": 1, "after": 2}]
    }
    service.documents["/svc"] = {"port": 3}
    cycle = run_role("kv_http", "cycle", config, tmp_path / "cycle", check=True, diff=True)
    assert cycle.custom["runner_agent_drift"] == {
        "localhost": [{"key": "port", "change": "changed", "before": 3, "after": 2}]
    }
    export = run_role("kv_http", "export", config, tmp_path / "export")
    assert export.custom["values"] == {"port": 3}
    gone = run_role("kv_http", "uninstall", config, tmp_path / "uninstall")
    assert gone.custom["runner_agent_changes"] == {
        "localhost": [{"key": "port", "change": "removed", "before": 3}]
    }
    assert "/svc" not in service.documents
    for run in (update, cycle, export):
        assert TOKEN not in run.output + json.dumps(run.results) + json.dumps(run.custom)


def test_a_url_with_credentials_fails_without_showing_them(
    service: ConfigService, tmp_path: Path
) -> None:
    url = (service.base + "/web").replace("://", "://user:CRED-canary@")
    result = _module({"url": url, "values": {"a": 1}}, tmp_path)
    assert result["failed"] is True and "must not hold credentials" in result["msg"]
    assert "CRED-canary" not in json.dumps({k: v for k, v in result.items() if k != "invocation"})
    assert service.requests == []


@pytest.mark.parametrize(
    "field", [{"headers": {"X-A": "v\r\nX-Injected: 1"}}, {"headers": {"X-A\nB": "v"}},
              {"token": "tok\r\nX-Injected: 1"}],
)  # fmt: skip
def test_a_cr_or_lf_in_a_header_fails_without_quoting_it(
    service: ConfigService, tmp_path: Path, field: dict[str, Any]
) -> None:
    result = _module({**_doc(service, "/web", values={"a": 1}), **field}, tmp_path)
    assert result["failed"] is True and "control character" in result["msg"]
    assert "Injected" not in result["msg"] and service.requests == []


@pytest.mark.parametrize("url", ["http://127.0.0.1:1/a doc", "http://[::1/doc"])
def test_a_url_that_is_not_one_is_a_clear_failure(url: str, tmp_path: Path) -> None:
    result = _module({"url": url, "values": {"a": 1}}, tmp_path)
    assert result["failed"] is True and result["msg"].startswith("url ")
