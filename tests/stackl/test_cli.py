"""The command line's STACKL parts: bad input is exit 2 naming the file and field, nothing sent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from endpoints import free_port
from stackl_helpers import core_invocation
from stackl_standin import StacklStandIn

from runner_agent.cli import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_dispatch_from_stackl_refuses_a_bad_invocation_before_sending_anything(
    stackl: StacklStandIn, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "invocation.json"
    path.write_text(
        json.dumps({**core_invocation("create", "probe", "s", "web", "dc1"), "action": "destroy"})
    )

    code, _, err = run(
        capsys, "dispatch", "--from-stackl", str(path), "--stackl", stackl.base, "-p", "acme/agents"
    )

    assert code == 2
    assert f"invalid: {path} action: 'destroy' is not create, update or delete" in err
    assert stackl.calls == []


def test_dispatch_from_stackl_needs_stackls_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("STACKL_HOST", raising=False)
    path = tmp_path / "invocation.json"
    path.write_text(json.dumps(core_invocation("create", "probe", "s", "web", "dc1")))

    code, _, err = run(capsys, "dispatch", "--from-stackl", str(path), "-p", "acme/agents")

    assert code == 2 and "--stackl" in err


def test_stackl_serve_refuses_a_redis_url_that_is_not_one(
    stackl: StacklStandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        capsys,
        "stackl",
        "serve",
        "--queue",
        "q",
        "--redis",
        "http://x:1",
        "--stackl",
        stackl.base,
        "--local",
    )

    assert code == 2 and "--redis" in err


def test_stackl_serve_says_when_redis_cannot_be_reached(
    stackl: StacklStandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"redis://:pw-CANARY@127.0.0.1:{free_port()}/0"

    code, _, err = run(
        capsys,
        "stackl",
        "serve",
        "--queue",
        "q",
        "--redis",
        url,
        "--stackl",
        stackl.base,
        "--local",
    )

    assert code == 4 and "Redis at 127.0.0.1:" in err and "pw-CANARY" not in err
