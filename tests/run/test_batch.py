"""Many tasks, one ansible-playbook run: each task still stands alone (issue: throughput, point 1).

Every test runs its tasks as one batch through the real ansible-runner, and counts the
ansible-playbook runs by their recaps in the streamed output.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from runner_agent.model.agents import default_registry
from runner_agent.model.tasks import tasks_from_data
from runner_agent.report.model import Report, Status
from runner_agent.run.batch import batches
from runner_agent.run.runtime import RunContext, run_tasks

FIXTURE_AGENTS = Path(__file__).resolve().parents[1] / "fixtures" / "agents"
SECRET = "canary-Zq9-s3cr3t"  # the ctx fixture's RA_SECRET_CANARY


def probe(identity: str, **fields: Any) -> dict[str, Any]:
    return {"identity": identity, "agent": "probe", "command": "update", **fields}


def run(ctx: RunContext, *items: dict[str, Any]) -> list[Report]:
    return run_tasks(tasks_from_data(items, registry=ctx.registry), ctx)


def ansible_runs(ctx: RunContext) -> int:
    lines: list[str] = ctx.lines  # type: ignore[attr-defined]
    return sum("PLAY RECAP" in line for line in lines)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_failing_host_fails_only_its_own_task(ctx: RunContext) -> None:
    failing, other = run(
        ctx,
        probe("edge/a", config={"fail": True, "message": "boom"}),
        probe("edge/b", config={"message": "fine"}),
    )
    assert ansible_runs(ctx) == 1
    assert failing.status is Status.FAILED
    assert [f.message for f in failing.commands[0].failed_tasks] == ["probe failed with boom"]
    assert failing.commands[0].hosts["localhost"].failed == 1
    assert other.status is Status.SUCCESS and other.outputs["message"] == "fine"
    assert other.commands[0].hosts["localhost"].failed == 0
    assert ctx.store.read("edge/a") is None and ctx.store.read("edge/b") is not None


def test_an_unreachable_host_does_not_stop_the_next_task(ctx: RunContext) -> None:
    # every host of the first play unreachable: Ansible ends its run there; the next play
    # runs all the same (in a further run)
    nowhere = {
        "all": {
            "hosts": {
                "nowhere": {
                    "ansible_host": "127.0.0.1",
                    "ansible_port": closed_port(),
                    "ansible_connection": "ssh",
                    "ansible_user": "nobody",
                }
            }
        }
    }
    lost, reached = run(
        ctx,
        probe("edge/a", hosts=nowhere, config={"ping": True}),
        probe("edge/b", config={"ping": True, "message": "reached"}),
    )
    assert lost.status is Status.FAILED
    assert lost.commands[0].hosts["nowhere"].unreachable == 1
    assert [f.unreachable for f in lost.commands[0].failed_tasks] == [True]
    assert reached.status is Status.SUCCESS and reached.outputs["message"] == "reached"


def test_one_host_unreachable_in_one_task_is_tried_again_by_the_next(ctx: RunContext) -> None:
    port = closed_port()
    inventory = {
        "all": {
            "hosts": {
                "shared": {"ansible_host": "127.0.0.1", "ansible_port": port},
                "localhost": {},
            },
            "vars": {"ansible_connection": "ssh", "ansible_user": "nobody"},
        }
    }
    inventory["all"]["hosts"]["localhost"] = {"ansible_connection": "local"}
    first, second = run(
        ctx,
        probe("edge/a", hosts=inventory, config={"ping": True}),
        probe("edge/b", hosts=inventory, config={"ping": True}),
    )
    assert ansible_runs(ctx) == 1
    for report in (first, second):  # the second task tried the host again, on its own
        assert report.status is Status.FAILED
        assert report.commands[0].hosts["shared"].unreachable == 1
        assert report.commands[0].hosts["localhost"].ok > 0


def make_role(root: Path, name: str, options: str, tasks: str) -> Path:
    """A fixture agent ``name`` under ``root`` with an ``update`` command: its argument spec's
    options (flow YAML) and its tasks (YAML text)."""
    role = root / name
    (role / "tasks").mkdir(parents=True)
    (role / "meta").mkdir()
    (role / "meta" / "main.yml").write_text("galaxy_info: {author: tests}\ndependencies: []\n")
    (role / "meta" / "runner_agent.yml").write_text(f'version: "1.0.0"\ndescription: {name}\n')
    (role / "meta" / "argument_specs.yml").write_text(
        f"argument_specs:\n  update:\n    short_description: {name}.\n    options: {options}\n"
    )
    (role / "tasks" / "update.yml").write_text(tasks)
    return root


def peek_role(root: Path) -> Path:
    """An agent whose update publishes everything its play can see: variables, hostvars."""
    tasks = [
        {  # to a file: what the runtime reports is masked, a file is not
            "name": "Write down what this play sees",
            "ansible.builtin.copy": {
                "content": "{{ hostvars | to_json }} {{ vars | to_json }}",
                "dest": "{{ path }}",
            },
        }
    ]
    return make_role(root, "peek", "{path: {type: str, required: true}}", yaml.safe_dump(tasks))


def test_a_secret_of_one_task_is_not_visible_to_another_tasks_play(
    ctx: RunContext, tmp_path: Path
) -> None:
    ctx.registry = default_registry([FIXTURE_AGENTS, peek_role(tmp_path / "roles")])
    # a failed task leaves its values in Ansible's failed result; another task its config
    failing = probe("edge/a", config={"fail": True, "message": "${env:RA_SECRET_CANARY}"})
    failing_plain = probe("edge/b", config={"fail": True, "message": "plain-marker-b"})
    succeeding = probe("edge/c", config={"message": "${env:RA_SECRET_CANARY}"})
    seen = tmp_path / "seen.json"
    peek = {"identity": "edge/peek", "agent": "peek", "command": "update"}
    reports = run(ctx, failing, failing_plain, succeeding, {**peek, "config": {"path": str(seen)}})
    assert ansible_runs(ctx) == 1
    assert [r.status for r in reports] == [Status.FAILED] * 2 + [Status.SUCCESS] * 2
    text = seen.read_text()
    assert "edge/peek" in text  # it did write down its own play's variables
    assert SECRET not in text and "plain-marker-b" not in text
    assert "edge/a" not in text and "edge/c" not in text


def test_a_task_that_outlives_its_timeout_ends_alone(ctx: RunContext) -> None:
    slow, after = run(
        ctx,
        probe("edge/a", config={"sleep": 60}, timeout="3s"),
        probe("edge/b", config={"message": "after"}),
    )
    assert slow.status is Status.ERROR and slow.timed_out and "timed out" in slow.error
    assert after.status is Status.SUCCESS and after.outputs["message"] == "after"
    assert ctx.store.read("edge/a") is None


def test_a_follower_of_a_failed_task_is_skipped_and_others_run(ctx: RunContext) -> None:
    reports = run(
        ctx,
        probe("edge/a", config={"fail": True}),
        probe("edge/c"),
        probe("edge/a"),  # the same identity: after edge/a, so skipped
        probe(
            "edge/d", config={"message": "${outputs:edge/a:message}"}, outputs_from=["edge/a"]
        ),  # reads edge/a
        probe("edge/e"),
    )
    assert [r.status for r in reports] == [
        Status.FAILED,
        Status.SUCCESS,
        Status.SKIPPED,
        Status.SKIPPED,
        Status.SUCCESS,
    ]
    assert "edge/a failed earlier" in reports[2].error
    assert "edge/a failed earlier" in reports[3].error


def test_batches_keep_an_identity_and_what_reads_its_outputs_apart(ctx: RunContext) -> None:
    tasks = tasks_from_data(
        [
            probe("edge/a"),
            probe("edge/b"),
            probe("edge/a"),
            probe(
                "edge/c", config={"message": "${outputs:edge/b:message}"}, outputs_from=["edge/b"]
            ),
            probe("edge/d"),
        ],
        registry=ctx.registry,
    )
    assert batches(tasks, 100) == [[0, 1], [2, 3, 4]]
    assert batches(tasks, 1) == [[0], [1], [2], [3], [4]]


def test_sigterm_mid_batch_reports_every_task_and_keeps_what_finished(tmp_path: Path) -> None:
    task = tmp_path / "t.yml"
    items = [
        probe("edge/done", config={"message": "first"}),
        probe("edge/slow", config={"sleep": 60, "message": "${env:RA_SECRET_SIG}"}),
        probe("edge/never"),
    ]
    task.write_text(yaml.safe_dump(items))
    report = tmp_path / "out" / "report.json"
    temp = Path(tempfile.mkdtemp(prefix="ra-sig-"))
    env = {**os.environ, "TMPDIR": str(temp), "RA_SECRET_SIG": "sig-canary-5521"}
    cmd = [sys.executable, "-m", "runner_agent", "run", str(task), "--local"]
    cmd += ["--state-dir", str(tmp_path / "state"), "--agents-path", str(FIXTURE_AGENTS)]
    cmd += ["--report", str(report)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    done_state = tmp_path / "state" / "edge" / "done.json"
    deadline = time.monotonic() + 90
    while not done_state.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(2)  # the second play is inside its sleep by now
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert list(temp.iterdir()) == []  # the private data dir (with the secret) is gone
    temp.rmdir()
    summary = json.loads(report.read_text())
    statuses = [(r["identity"], r["status"]) for r in summary["reports"]]
    assert statuses == [("edge/done", "success"), ("edge/slow", "error"), ("edge/never", "skipped")]
    assert "sig-canary-5521" not in out + err + report.read_text()
    assert done_state.exists() and not (tmp_path / "state" / "edge" / "slow.json").exists()


@pytest.mark.parametrize("count", [3])
def test_every_task_of_a_batch_has_its_own_report_and_state(ctx: RunContext, count: int) -> None:
    reports = run(ctx, *(probe(f"edge/t{i}", config={"message": f"m{i}"}) for i in range(count)))
    assert ansible_runs(ctx) == 1
    assert [r.outputs["message"] for r in reports] == [f"m{i}" for i in range(count)]
    for i, r in enumerate(reports):
        assert r.identity == f"edge/t{i}" and list(r.commands[0].hosts) == ["localhost"]
        state = ctx.store.read(f"edge/t{i}")
        assert state is not None and state.outputs["message"] == f"m{i}"


def test_a_resolved_value_that_does_not_fit_the_spec_fails_its_task_before_ansible(
    ctx: RunContext,
) -> None:
    # valid at load (a placeholder stands in for an int), not once resolved
    bad, good = run(
        ctx,
        probe("edge/a", config={"count": "${env:RA_SECRET_CANARY}"}),
        probe("edge/b", config={"message": "fine"}),
    )
    assert bad.status is Status.FAILED and bad.commands == []
    assert "config.count" in bad.error and SECRET not in bad.error
    assert good.status is Status.SUCCESS and good.outputs["message"] == "fine"


def broken_role(root: Path) -> Path:
    """An agent whose entry point names a module that does not exist: Ansible refuses the
    whole playbook that imports it, before any play starts."""
    return make_role(root, "broken", "{}", "- name: No such module\n  no_such.module.here: {}\n")


def stash_role(root: Path) -> Path:
    """An agent whose update keeps its config's message as a cacheable fact: the kind of fact
    that lives in the fact cache, beyond the play, unless the scrub callback drops it."""
    return make_role(
        root,
        "stash",
        "{message: {type: str, required: true}}",
        "- name: Keep the message as a cacheable fact\n"
        "  ansible.builtin.set_fact: {stashed: '{{ message }}', cacheable: true}\n",
    )


def test_a_cacheable_fact_of_one_task_is_not_visible_to_the_next_play(
    ctx: RunContext, tmp_path: Path
) -> None:
    # ansible-runner turns on the jsonfile fact cache by default (config/_base.py,
    # fact_cache_type); the scrub callback must still run at every play, without error
    roles = tmp_path / "roles"
    ctx.registry = default_registry([FIXTURE_AGENTS, stash_role(roles), peek_role(roles)])
    seen = tmp_path / "seen.json"
    reports = run(
        ctx,
        {
            "identity": "edge/s",
            "agent": "stash",
            "command": "update",
            "config": {"message": "${env:RA_SECRET_CANARY}"},
        },
        {"identity": "edge/p", "agent": "peek", "command": "update", "config": {"path": str(seen)}},
    )
    assert [r.status for r in reports] == [Status.SUCCESS] * 2 and ansible_runs(ctx) == 1
    lines: list[str] = ctx.lines  # type: ignore[attr-defined]
    assert not [line for line in lines if "runner_agent_scrub" in line], lines
    text = seen.read_text()
    assert "edge/p" in text and SECRET not in text and "stashed" not in text


def test_a_broken_agent_fails_only_its_own_tasks(ctx: RunContext, tmp_path: Path) -> None:
    ctx.registry = default_registry([FIXTURE_AGENTS, broken_role(tmp_path / "roles")])
    first, broken, last = run(
        ctx,
        probe("edge/a", config={"message": "one"}),
        {"identity": "edge/b", "agent": "broken", "command": "update"},
        probe("edge/c", config={"message": "three"}),
    )
    assert broken.status is Status.FAILED and "no_such.module.here" in broken.error
    assert first.status is Status.SUCCESS and first.outputs["message"] == "one"
    assert last.status is Status.SUCCESS and last.outputs["message"] == "three"


def test_drift_of_each_task_names_its_real_hosts(ctx: RunContext) -> None:
    first, second = run(ctx, probe("edge/a", command="cycle"), probe("edge/b", command="cycle"))
    assert ansible_runs(ctx) == 1
    for report in (first, second):
        assert report.status is Status.SUCCESS and list(report.drift) == ["localhost"]
        assert report.commands[0].check_mode


def test_a_task_locked_elsewhere_is_reported_locked_and_its_batch_runs(ctx: RunContext) -> None:
    with ctx.store.lock("edge/a", "update"):
        locked, other = run(ctx, probe("edge/a"), probe("edge/b", config={"message": "ran"}))
    assert locked.status is Status.LOCKED and locked.commands == []
    assert other.status is Status.SUCCESS and other.outputs["message"] == "ran"
