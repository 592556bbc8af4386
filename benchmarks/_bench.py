"""Shared by the benchmarks: timing side by side, in one run, on this machine."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "tests"))  # endpoints.py: the etcd the tests use

ANSIBLE_KEYS = ("ANSIBLE_", "RUNNER_AGENT_")


# the private data dir writer adds this interpreter to hosts on the local connection
LOCALHOST = {"all": {"hosts": {"localhost": {"ansible_connection": "local"}}}}


def playbook_command(private_dir: Path) -> list[str]:
    """Bare ansible-playbook on a private data dir laid out by ``write_private_dir`` (each
    play reads its values from its own vars file, named in the playbook)."""
    return [
        str(BIN / "ansible-playbook"),
        "-i",
        str(private_dir / "inventory"),
        str(private_dir / "project" / "main.yml"),
    ]


def clean_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment without Ansible settings, plus ``extra``; our venv first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ANSIBLE_KEYS)}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra or {})
    return env


def timed(cmd: list[str], env: Mapping[str, str], cwd: Path | None = None) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=dict(env), cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return elapsed


def side_by_side(runs: Mapping[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    """Median of ``rounds`` alternating runs of each contender (one warm-up each)."""
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for warm_up in runs.values():
        warm_up()
    for _ in range(rounds):
        for name, fn in runs.items():
            samples[name].append(fn())
    return {name: statistics.median(values) for name, values in samples.items()}


def verdict(ratio: float, target: float) -> str:
    return "meets target" if ratio <= target else "MISSES target"
