"""`runner-agent run --local` against bare `ansible-playbook` on the same playbook, one host.

Both run the playbook the toolkit generates (kv_file update on one local file) with the same
inventory, extra vars and Ansible settings, so the ratio is the toolkit's own overhead: Python
start-up, validation, ansible-runner and the report. Bare ansible-playbook with Ansible's
defaults is printed too. Target: ratio at most 1.10.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import yaml
from _bench import BIN, LOCALHOST, clean_env, playbook_command, side_by_side, timed, verdict

from runner_agent.model.agents import default_registry
from runner_agent.run.ansible_exec import PlaybookSpec, ansible_env, write_private_dir

ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 5


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-local-"))
    config = {
        "path": str(work / "out" / "web.json"),
        "format": "json",
        "values": {"port": 8080, "replicas": 3, "features": {"tls": True}},
    }
    task = {"identity": "bench/web", "agent": "kv_file", "command": "update", "config": config}
    (work / "task.yml").write_text(yaml.safe_dump(task))
    agent = default_registry().get("kv_file")
    spec = PlaybookSpec(
        agent="kv_file",
        roles_path=agent.roles_path,
        command="update",
        extravars={
            **config,
            "runner_agent_identity": "bench/web",
            "runner_agent_command": "update",
            "runner_agent_version": agent.version,
            "runner_agent_no_log": False,
        },
        inventory=LOCALHOST,
        timeout=600,
        validated=True,  # as the runtime writes it: the argument spec is checked before
    )
    bare = work / "bare"
    write_private_dir(spec, bare)
    playbook = playbook_command(bare)
    tuned = clean_env({**ansible_env(1), "ANSIBLE_ROLES_PATH": str(agent.roles_path)})
    defaults = clean_env({"ANSIBLE_ROLES_PATH": str(agent.roles_path)})
    toolkit = [
        str(BIN / "runner-agent"),
        "run",
        str(work / "task.yml"),
        "--local",
        "--state-dir",
        str(work / "state"),
    ]
    medians = side_by_side(
        {
            "runner-agent run --local": lambda: timed(toolkit, clean_env()),
            "ansible-playbook, same settings": lambda: timed(playbook, tuned),
            "ansible-playbook, Ansible defaults": lambda: timed(playbook, defaults),
        },
        ROUNDS,
    )
    for name, seconds in medians.items():
        print(f"{name:40s} {seconds:6.2f} s (median of {ROUNDS})")
    ratio = medians["runner-agent run --local"] / medians["ansible-playbook, same settings"]
    print(
        f"ratio runner-agent / ansible-playbook (same playbook, same settings): {ratio:.2f} "
        f"(target <= 1.10: {verdict(ratio, 1.10)})"
    )
    ratio_d = medians["runner-agent run --local"] / medians["ansible-playbook, Ansible defaults"]
    print(f"ratio runner-agent / ansible-playbook (Ansible defaults): {ratio_d:.2f}")


if __name__ == "__main__":
    main()
