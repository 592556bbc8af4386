"""`make demo`: the agent job on the examples, locally, against real endpoints.

Starts etcd on 127.0.0.1:23790 (the endpoint examples/db.yml names), writes files under
/tmp/runner-agent-demo, and runs the tasks in examples/ with `runner-agent run --local`:
first run (install + update), second run (nothing to change), a hand edit on both endpoints,
then `cycle`, which reports the drift without changing anything. Every step prints the report
table; etcd is stopped at the end.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from endpoints import etcd_get_prefix, etcd_put, start_etcd  # noqa: E402

DEMO = Path("/tmp/runner-agent-demo")
ETCD_PORT = 23790
RUNNER_AGENT = str(Path(sys.executable).parent / "runner-agent")
EXAMPLES = ["examples/web.yml", "examples/db.yml", "examples/web-env.yml"]


def step(title: str) -> None:
    print(f"\n\033[1m== {title}\033[0m" if sys.stdout.isatty() else f"\n== {title}")


def runner_agent(*args: str, env: dict[str, str]) -> int:
    shown = " ".join(shlex.quote(a) for a in args)
    print(f"$ runner-agent {shown}")
    return subprocess.run([RUNNER_AGENT, *args], env=env, cwd=ROOT, check=False).returncode


def main() -> int:
    shutil.rmtree(DEMO, ignore_errors=True)
    (DEMO / "acme").mkdir(parents=True)
    state = ["--local", "--state-dir", str(DEMO / "state")]
    env = {**os.environ, "RA_SECRET_ACME_DB_PASSWORD": f"demo-{secrets.token_hex(8)}"}
    server = start_etcd(client_port=ETCD_PORT)
    try:
        step("the agents this installation has")
        runner_agent("agents", env=env)

        step("validate the example tasks (nothing runs)")
        runner_agent("validate", *EXAMPLES, env=env)

        step("first run: new identities are installed, then updated")
        codes = [
            runner_agent(
                "run", *EXAMPLES, *state, "--report", str(DEMO / "reports" / "first.json"), env=env
            )
        ]

        step("second run: same version, nothing to change")
        codes.append(runner_agent("run", *EXAMPLES[:2], *state, env=env))

        step("someone edits the endpoints by hand")
        web = DEMO / "acme" / "web.json"
        data = json.loads(web.read_text())
        data["port"] = 9999
        web.write_text(json.dumps(data))
        etcd_put(server.endpoint, "/acme/db/host", "rogue.example")
        print(f"edited {web}: port=9999; etcd /acme/db/host=rogue.example")

        step("cycle: drift is reported, nothing is changed")
        drift_page = DEMO / "reports" / "drift.html"
        runner_agent(
            "run", *EXAMPLES[:2], *state, "--command", "cycle", "--html", str(drift_page), env=env
        )
        print(f"{web} still has port {json.loads(web.read_text())['port']}")

        step("what the endpoints hold now")
        print((DEMO / "acme" / "web.env").read_text(), end="")
        stored = etcd_get_prefix(server.endpoint, "/acme/db/")
        shown = {k: ("********" if k.endswith("password") else v) for k, v in stored.items()}
        print(json.dumps(shown, indent=2, sort_keys=True))

        step("the state runner-agent keeps for acme/web")
        kept = json.loads((DEMO / "state" / "acme" / "web.json").read_text())
        print(
            f"installed {kept['installed_version']}, last {kept['last_command']} "
            f"({kept['last_status']}), outputs {json.dumps(kept['outputs'], sort_keys=True)}"
        )
        for entry in kept["history"]:
            print(
                f"  {entry['started'][:19]}  {','.join(entry['commands']):15s} "
                f"{entry['status']:8s} changed={entry['changed']} drift={entry['drift']}"
            )
        print(f"\nreports: {DEMO / 'reports'}; open {drift_page} in a browser")
    finally:
        server.stop()
    return 0 if all(code == 0 for code in codes) else 1


if __name__ == "__main__":
    sys.exit(main())
