"""STACKL through the whole product: ``dispatch --from-stackl --wait`` reads the stack instance
from the STACKL stand-in, dispatches to the GitLab stand-in whose gitlab-ci-local jobs write a
real file, and answers with STACKL's result after sending the outputs to STACKL."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "stackl"))

from stackl_helpers import core_invocation, entry
from stackl_standin import StacklStandIn, serve_stackl, stack_instance
from standin import Cli, GitLabStandIn


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
