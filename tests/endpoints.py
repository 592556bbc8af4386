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
import ssl
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
    "Certificates",
    "EtcdPrefix",
    "EtcdServer",
    "JsonServer",
    "RedisServer",
    "etcd_binary",
    "etcd_call",
    "etcd_delete_prefix",
    "etcd_get_prefix",
    "etcd_put",
    "etcd_revision",
    "free_port",
    "make_certificates",
    "start_etcd",
    "start_json_server",
    "start_redis",
]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(process: subprocess.Popen[Any], folder: Path) -> None:
    """End a server the tests started (TERM, then KILL after 10 s) and remove its folder."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    shutil.rmtree(folder, ignore_errors=True)


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


# The TLS context and the auth token the helpers use for an endpoint (set by start_etcd and
# EtcdServer.enable_auth), so EtcdPrefix and the etcd_* helpers work on every kind of server.
_ACCESS: dict[str, tuple[ssl.SSLContext | None, str | None]] = {}


def etcd_call(endpoint: str, path: str, body: dict[str, Any], timeout: float = 5) -> Any:
    """POST a JSON body to the v3 gateway; the decoded answer."""
    context, token = _ACCESS.get(endpoint.rstrip("/"), (None, None))
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = token
    request = urllib.request.Request(
        endpoint.rstrip("/") + path, data=json.dumps(body).encode(), headers=headers
    )
    with urllib.request.urlopen(request, timeout=timeout, context=context) as response:
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
        stop_process(self.process, self.data_dir)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def enable_auth(self, root_password: str) -> None:
        """Create user root (role root) and turn authentication on; the helpers then log in
        as root. etcd's order: the root user must exist before `auth enable`."""
        self.add_user("root", root_password, "root")
        etcd_call(self.endpoint, "/v3/auth/enable", {})
        answer = etcd_call(
            self.endpoint, "/v3/auth/authenticate", {"name": "root", "password": root_password}
        )
        context, _ = _ACCESS.get(self.endpoint, (None, None))
        _ACCESS[self.endpoint] = (context, str(answer["token"]))

    def add_user(self, name: str, password: str, role: str) -> None:
        etcd_call(self.endpoint, "/v3/auth/user/add", {"name": name, "password": password})
        if role != "root":
            etcd_call(self.endpoint, "/v3/auth/role/add", {"name": role})
        else:
            with contextlib.suppress(urllib.error.HTTPError):  # exists after the first call
                etcd_call(self.endpoint, "/v3/auth/role/add", {"name": role})
        etcd_call(self.endpoint, "/v3/auth/user/grant", {"user": name, "role": role})

    def grant(self, role: str, prefix: str, perm: str) -> None:
        """Give ``role`` READ, WRITE or READWRITE on every key under ``prefix``."""
        etcd_call(
            self.endpoint,
            "/v3/auth/role/grant",
            {
                "name": role,
                "perm": {
                    "key": _b64(prefix),
                    "range_end": _b64(_prefix_end(prefix)),
                    "permType": perm,
                },
            },
        )


@dataclass(frozen=True)
class Certificates:
    """A test CA, a server certificate for 127.0.0.1 signed by it, a client certificate, and
    a second CA that signed nothing here (the "wrong CA")."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path

    def context(self) -> ssl.SSLContext:
        """A client context trusting the CA and presenting the client certificate."""
        context = ssl.create_default_context(cafile=str(self.ca))
        context.load_cert_chain(str(self.client_cert), str(self.client_key))
        return context


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certificates(folder: Path, client_name: str = "root") -> Certificates:
    """Certificates made with openssl (EC P-256, valid 2 days) in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca in ("ca", "other-ca"):
        _openssl("req", "-x509", *key, "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "2",
                 "-subj", f"/CN=runner-agent test {ca}", cwd=folder)  # fmt: skip
    # etcd's gateway dials its own gRPC server with the server certificate: it needs both uses
    leaves = {
        "server": (
            "etcd-server",
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth",
        ),
        "client": (client_name, "extendedKeyUsage=clientAuth"),
    }
    for leaf, (name, extensions) in leaves.items():
        (folder / f"{leaf}.ext").write_text(extensions + "\n")
        _openssl("req", *key, "-keyout", f"{leaf}.key", "-out", f"{leaf}.csr",
                 "-subj", f"/CN={name}", cwd=folder)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{leaf}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{leaf}.pem", "-days", "2",
                 "-extfile", f"{leaf}.ext", cwd=folder)  # fmt: skip
    return Certificates(
        ca=folder / "ca.pem",
        server_cert=folder / "server.pem",
        server_key=folder / "server.key",
        client_cert=folder / "client.pem",
        client_key=folder / "client.key",
        other_ca=folder / "other-ca.pem",
    )


def _healthy(endpoint: str) -> bool:
    context, _ = _ACCESS.get(endpoint, (None, None))
    try:
        with urllib.request.urlopen(endpoint + "/health", timeout=1, context=context) as response:
            return bool(json.loads(response.read()).get("health") == "true")
    except (OSError, ValueError):
        return False


def start_etcd(
    timeout: float = 20,
    attempts: int = 3,
    client_port: int = 0,
    tls: Certificates | None = None,
) -> EtcdServer:
    """Start etcd on 127.0.0.1 with a fresh data folder; wait until it is healthy.

    The client port is ``client_port``, or a free one when 0 (the demo names a fixed one). With
    ``tls`` the client URL is https and etcd asks for a client certificate signed by the CA
    (etcd's --client-cert-auth); the helpers here present ``tls``'s client certificate.
    """
    binary = etcd_binary()
    last_log = ""
    for _ in range(attempts):
        data_dir = Path(tempfile.mkdtemp(prefix="runner-agent-etcd-"))
        client, peer = client_port or free_port(), free_port()
        endpoint = f"{'https' if tls else 'http'}://127.0.0.1:{client}"
        secure = (
            [
                "--cert-file", str(tls.server_cert),
                "--key-file", str(tls.server_key),
                "--trusted-ca-file", str(tls.ca),
                "--client-cert-auth",
            ]
            if tls
            else []
        )  # fmt: skip
        _ACCESS[endpoint] = (tls.context() if tls else None, None)
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
            *secure,
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


@dataclass
class RedisServer:
    """A running redis-server on 127.0.0.1; ``stop()`` ends it and removes its folder."""

    url: str
    port: int
    password: str | None
    process: subprocess.Popen[bytes]
    folder: Path
    tls: Certificates | None = None

    def client(
        self, user: str | None = None, password: str | None = None, db: int = 0, decode: bool = True
    ) -> Any:
        """A redis-py client (an independent check of what the agent wrote); over TLS, trusting
        the test CA, when the server listens with TLS only."""
        import redis

        return redis.Redis(
            host="127.0.0.1",
            port=self.port,
            db=db,
            username=user,
            password=password if user else (password or self.password),
            decode_responses=decode,
            socket_timeout=5,
            ssl=self.tls is not None,
            ssl_ca_certs=str(self.tls.ca) if self.tls else None,
        )

    def snapshot(self, key: str) -> tuple[Any, ...]:
        """What the server holds under ``key``, byte for byte: DUMP's serialisation, the
        fields as bytes, the type and the time to live. Equal snapshots mean nothing changed."""
        with self.client(decode=False) as plain:
            return plain.dump(key), plain.hgetall(key), plain.type(key), plain.pttl(key)

    def stop(self) -> None:
        stop_process(self.process, self.folder)


def start_redis(
    password: str | None = None,
    users: tuple[str, ...] = (),
    timeout: float = 20,
    tls: Certificates | None = None,
) -> RedisServer:
    """Start Debian's redis-server on a free port with no persistence. ``password`` becomes the
    default user's (requirepass); each of ``users`` is an ACL rule line ("name on >pw ~* +@read",
    https://redis.io/docs/latest/operate/oss_and_stack/management/security/acl/). With ``tls``
    the port speaks TLS only (``port 0``, ``tls-port``; the URL is rediss://) with the server
    certificate signed by the test CA, and clients need no certificate (``tls-auth-clients no``;
    redis.conf's TLS section, https://redis.io/docs/latest/operate/oss_and_stack/management/security/encryption/)."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(binary).is_file():
        raise RuntimeError("redis-server is not installed: `make setup` installs Debian's package")
    folder = Path(tempfile.mkdtemp(prefix="runner-agent-redis-"))
    port = free_port()
    listen = (
        [
            "port 0",
            f"tls-port {port}",
            f"tls-cert-file {tls.server_cert}",
            f"tls-key-file {tls.server_key}",
            f"tls-ca-cert-file {tls.ca}",
            "tls-auth-clients no",
        ]
        if tls
        else [f"port {port}"]
    )
    lines = [
        *listen,
        "bind 127.0.0.1",
        f"dir {folder}",
        'save ""',
        "appendonly no",
        "daemonize no",
        'logfile ""',
    ]
    if password:
        lines.append(f"requirepass {json.dumps(password)}")  # quoted: redis.conf splits on spaces
    lines.extend(f"user {rule}" for rule in users)
    config = folder / "redis.conf"
    config.write_text("\n".join(lines) + "\n")
    with open(folder / "redis.log", "wb") as log:
        process = subprocess.Popen(
            [binary, str(config)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    scheme = "rediss" if tls else "redis"
    server = RedisServer(f"{scheme}://127.0.0.1:{port}/0", port, password, process, folder, tls)
    context = ssl.create_default_context(cafile=str(tls.ca)) if tls else None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            plain = socket.create_connection(("127.0.0.1", port), timeout=1)
            sock = context.wrap_socket(plain, server_hostname="127.0.0.1") if context else plain
            with sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(64).startswith((b"+PONG", b"-NOAUTH")):
                    return server
        except OSError:
            time.sleep(0.05)
    log = (folder / "redis.log").read_text(errors="replace")
    server.stop()
    raise RuntimeError(f"redis-server did not start; its log:\n{log[-3000:]}")


TOOLS_BIN = Path(__file__).resolve().parents[1] / "tools" / "node_modules" / ".bin"


@dataclass
class JsonServer:
    """json-server (npm, typicode/json-server 0.17) on 127.0.0.1: a REST API over db.json, the
    common "config service" shape: GET/PUT/PATCH/DELETE /<collection>/<id>."""

    base: str
    process: subprocess.Popen[bytes]
    folder: Path

    def get(self, path: str) -> Any:
        """The JSON at ``path``, or None when the server answers 404."""
        try:
            with urllib.request.urlopen(self.base + path, timeout=5) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            raise

    def stored(self, timeout: float = 10) -> bytes:
        """db.json byte for byte, once it holds what the server serves (json-server writes it
        after answering): comparing two of these compares the server's whole store."""
        deadline = time.monotonic() + timeout
        while True:
            raw = (self.folder / "db.json").read_bytes()
            with contextlib.suppress(ValueError):
                if json.loads(raw) == self.get("/db"):
                    return raw
            if time.monotonic() > deadline:
                raise AssertionError("json-server's db.json does not match what it serves")
            time.sleep(0.05)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        request = urllib.request.Request(
            self.base + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())

    def stop(self) -> None:
        stop_process(self.process, self.folder)


def start_json_server(db: dict[str, Any], timeout: float = 30) -> JsonServer:
    """Start json-server on a free port over a db.json holding ``db``."""
    binary = TOOLS_BIN / "json-server"
    if not binary.is_file():
        raise RuntimeError("json-server is not installed: `make setup` installs it into tools/")
    folder = Path(tempfile.mkdtemp(prefix="runner-agent-json-server-"))
    (folder / "db.json").write_text(json.dumps(db))
    port = free_port()
    env = {**os.environ, "PATH": f"{TOOLS_BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    with open(folder / "json-server.log", "wb") as log:
        process = subprocess.Popen(
            [str(binary), "--host", "127.0.0.1", "--port", str(port), "--quiet", "db.json"],
            cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    server = JsonServer(f"http://127.0.0.1:{port}", process, folder)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            with urllib.request.urlopen(server.base + "/db", timeout=1):
                return server
        except OSError:
            time.sleep(0.1)
    log_text = (folder / "json-server.log").read_text(errors="replace")
    server.stop()
    raise RuntimeError(f"json-server did not start; its log:\n{log_text[-3000:]}")
