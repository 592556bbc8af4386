"""A real redis-server (Debian's package) on 127.0.0.1, with a password and a free port."""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from endpoints import free_port

__all__ = ["RedisServer", "start_redis"]


@dataclass
class RedisServer:
    process: subprocess.Popen[bytes]
    port: int
    password: str
    folder: Path

    @property
    def url(self) -> str:
        return f"redis://:{self.password}@127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def _ping(port: int, password: str) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(f"AUTH {password}\r\nPING\r\n".encode())
            data = b""
            while b"PONG" not in data and len(data) < 200:
                chunk = sock.recv(100)
                if not chunk:
                    break
                data += chunk
            return b"+OK" in data and b"+PONG" in data
    except OSError:
        return False


def start_redis(timeout: float = 20) -> RedisServer:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed: run `make setup`")
    folder = Path(tempfile.mkdtemp(prefix="ra-redis-"))
    password = secrets.token_hex(16)
    port = free_port()
    process = subprocess.Popen(
        [
            binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--requirepass",
            password,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(folder),
            "--protected-mode",
            "yes",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = RedisServer(process, port, password, folder)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _ping(port, password):
            return server
        if process.poll() is not None:
            break
        time.sleep(0.05)
    server.stop()
    raise RuntimeError(f"redis-server did not start on port {port}")
