"""20 hosts on the local connection: the toolkit's Ansible settings against Ansible's defaults.

The same playbook, inventory and extra vars (kv_file update, one file per host), run by
`ansible-playbook` with the settings `runner_agent.run.ansible_exec.ansible_env` chooses (facts
off, pipelining, forks = hosts, mitogen strategy when installed) and with none. Target: ratio at
most 0.6.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from _bench import clean_env, playbook_command, side_by_side, timed, verdict

from runner_agent.model.agents import default_registry
from runner_agent.run.ansible_exec import PlaybookSpec, ansible_env, write_private_dir

HOSTS = 20
ROUNDS = int(sys.argv[1]) if len(sys.argv) > 1 else 3


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-hosts-"))
    agent = default_registry().get("kv_file")
    hosts = {f"host{i:02d}": {"ansible_connection": "local"} for i in range(HOSTS)}
    spec = PlaybookSpec(
        agent="kv_file",
        roles_path=agent.roles_path,
        command="update",
        extravars={
            "path": str(work / "out" / "app.env"),
            "format": "env",
            "values": {"PORT": 8080, "MODE": "prod"},
            "runner_agent_no_log": False,
        },
        inventory={"all": {"hosts": hosts}},
        timeout=600,
        forks=HOSTS,
    )
    write_private_dir(spec, work / "pdd")
    playbook = playbook_command(work / "pdd")
    roles = {"ANSIBLE_ROLES_PATH": str(agent.roles_path)}
    settings = ansible_env(HOSTS)
    # the same settings without mitogen: what an install without the [fast] extra gets
    linear = {k: v for k, v in settings.items() if not k.startswith("ANSIBLE_STRATEGY")}
    linear.update(roles)
    medians = side_by_side(
        {
            "toolkit settings": lambda: timed(playbook, clean_env({**settings, **roles})),
            "toolkit settings, linear strategy": lambda: timed(playbook, clean_env(linear)),
            "Ansible defaults": lambda: timed(playbook, clean_env(roles)),
        },
        ROUNDS,
    )
    print(f"toolkit settings: {', '.join(f'{k}={v}' for k, v in sorted(settings.items()))}")
    for name, seconds in medians.items():
        print(f"{name:34s} {seconds:6.2f} s for {HOSTS} hosts (median of {ROUNDS})")
    ratio = medians["toolkit settings"] / medians["Ansible defaults"]
    print(f"ratio toolkit / defaults: {ratio:.2f} (target <= 0.6: {verdict(ratio, 0.6)})")
    plain = medians["toolkit settings, linear strategy"] / medians["Ansible defaults"]
    print(f"ratio toolkit without mitogen / defaults: {plain:.2f}")


if __name__ == "__main__":
    main()
