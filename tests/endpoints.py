"""Real automation endpoints for the tests: an etcd server on 127.0.0.1, and plain HTTP helpers.

Nothing here imports the toolkit or Ansible: the helpers talk to etcd's v3 JSON gateway with
urllib, so the tests check what the agents did independently of the agents' own code.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "EtcdPrefix",
    "EtcdServer",
    "etcd_binary",
    "etcd_call",
    "etcd_delete_prefix",
    "etcd_get_prefix",
    "etcd_put",
    "etcd_revision",
    "free_port",
    "start_etcd",
]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode("ascii")


def _prefix_end(prefix: str) -> bytes:
    end = bytearray(prefix.encode())
    while end and end[-1] == 0xFF:
        end.pop()
    if not end:
        return b"\0"
    end[-1] += 1
    return bytes(end)


def etcd_call(endpoint: str, path: str, body: dict[str, Any], timeout: float = 5) -> Any:
    """POST a JSON body to the v3 gateway; the decoded answer."""
    request = urllib.request.Request(
        endpoint.rstrip("/") + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        return json.loads(response.read() or b"{}")


def etcd_get_prefix(endpoint: str, prefix: str) -> dict[str, str]:
    """Every key under ``prefix`` (full keys) and its value, as text."""
    answer = etcd_call(
        endpoint, "/v3/kv/range", {"key": _b64(prefix), "range_end": _b64(_prefix_end(prefix))}
    )
    return {
        base64.b64decode(kv["key"]).decode(): base64.b64decode(kv.get("value", "")).decode()
        for kv in answer.get("kvs", [])
    }


def etcd_put(endpoint: str, key: str, value: str) -> int:
    """Store one key; the new revision."""
    answer = etcd_call(endpoint, "/v3/kv/put", {"key": _b64(key), "value": _b64(value)})
    return int(answer["header"]["revision"])


def etcd_delete_prefix(endpoint: str, prefix: str) -> int:
    """Delete every key under ``prefix``; how many there were."""
    answer = etcd_call(
        endpoint,
        "/v3/kv/deleterange",
        {"key": _b64(prefix), "range_end": _b64(_prefix_end(prefix))},
    )
    return int(answer.get("deleted", 0))


def etcd_revision(endpoint: str) -> int:
    """The store's current revision (each write transaction adds one)."""
    answer = etcd_call(endpoint, "/v3/kv/range", {"key": _b64("\0"), "count_only": True})
    return int(answer["header"]["revision"])


def etcd_binary() -> str:
    """The etcd server binary: $ETCD_BIN, etcd on PATH, or Debian's /usr/bin/etcd."""
    found = os.environ.get("ETCD_BIN") or shutil.which("etcd") or "/usr/bin/etcd"
    if not Path(found).is_file():
        raise RuntimeError(
            "etcd is not installed: `make setup` installs Debian's etcd-server package"
        )
    return found


@dataclass
class EtcdServer:
    """A running etcd; ``stop()`` ends it and removes its data folder."""

    endpoint: str
    process: subprocess.Popen[bytes]
    data_dir: Path
    log_path: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def _healthy(endpoint: str) -> bool:
    try:
        with urllib.request.urlopen(endpoint + "/health", timeout=1) as response:
            return bool(json.loads(response.read()).get("health") == "true")
    except (OSError, ValueError):
        return False


def start_etcd(timeout: float = 20, attempts: int = 3, client_port: int = 0) -> EtcdServer:
    """Start etcd on 127.0.0.1 with a fresh data folder; wait until it is healthy.

    The client port is ``client_port``, or a free one when 0 (the demo names a fixed one).
    """
    binary = etcd_binary()
    last_log = ""
    for _ in range(attempts):
        data_dir = Path(tempfile.mkdtemp(prefix="runner-agent-etcd-"))
        client, peer = client_port or free_port(), free_port()
        endpoint = f"http://127.0.0.1:{client}"
        log_path = data_dir / "etcd.log"
        command = [
            binary,
            "--name", "test",
            "--data-dir", str(data_dir / "data"),
            "--listen-client-urls", endpoint,
            "--advertise-client-urls", endpoint,
            "--listen-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
            "--initial-cluster", f"test=http://127.0.0.1:{peer}",
            "--initial-cluster-token", f"runner-agent-{uuid.uuid4().hex[:8]}",
            "--logger", "zap",
            "--log-outputs", "stderr",
            "--log-level", "warn",
        ]  # fmt: skip
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        server = EtcdServer(endpoint, process, data_dir, log_path)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and process.poll() is None:
            if _healthy(endpoint):
                return server
            time.sleep(0.1)
        last_log = server.log()
        server.stop()
    raise RuntimeError(f"etcd did not become healthy; its log:\n{last_log[-3000:]}")


@dataclass
class EtcdPrefix:
    """One test's corner of the shared etcd: a unique prefix, and helpers scoped to it."""

    endpoint: str
    prefix: str = field(default_factory=lambda: f"/runner-agent-test/{uuid.uuid4().hex[:12]}/")

    def get(self) -> dict[str, str]:
        """The keys under the prefix, relative to it, and their values."""
        n = len(self.prefix)
        return {k[n:]: v for k, v in etcd_get_prefix(self.endpoint, self.prefix).items()}

    def put(self, key: str, value: str) -> int:
        """Store ``prefix + key``; the new revision."""
        return etcd_put(self.endpoint, self.prefix + key, value)

    def revision(self) -> int:
        return etcd_revision(self.endpoint)

    def clear(self) -> None:
        with contextlib.suppress(OSError):
            etcd_delete_prefix(self.endpoint, self.prefix)
