"""A small config service of the tests' own, for what json-server does not do: ETags enforced
on writes (If-Match, RFC 9110 sections 8.8.3 and 13.1.1; 428 Precondition Required when a write
of an existing document lacks it, RFC 6585 section 3), a bearer token, concurrent edits, and
error answers (401, 404, 409, 500, a body that is not JSON, a redirect).

Stricter than most real services on purpose: a module that forgets If-Match fails here.
"""

from __future__ import annotations

import hashlib
import json
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from endpoints import Certificates


@dataclass
class ConfigService:
    base: str
    token: str
    documents: dict[str, dict[str, Any]] = field(default_factory=dict)
    # path -> a document another writer stores right after the next GET (a concurrent edit)
    edit_after_get: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def etag_of(document: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()
    return f'"{digest[:16]}"'


def _handler(service: ConfigService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # quiet
            pass

        def _send(self, status: int, body: bytes = b"", etag: str = "") -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            if etag:
                self.send_header("ETag", etag)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _json(self, status: int, data: Any, etag: str = "") -> None:
            self._send(status, json.dumps(data).encode(), etag)

        def _fixed(self) -> bool:
            """The error answers under /status/<code> and /not-json."""
            if self.path.startswith("/status/"):
                code = int(self.path.rsplit("/", 1)[1])
                self._json(code, {"error": f"fixed answer {code}"})
                return True
            if self.path == "/not-json":
                self._send(200, b"<html>a login page</html>")
                return True
            if self.path == "/moved":  # a redirect that would carry the token elsewhere
                self.send_response(302)
                self.send_header("Location", "/web")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return True
            return False

        def _authorised(self) -> bool:
            if self.headers.get("Authorization") != f"Bearer {service.token}":
                self._json(401, {"error": "unauthorized"})
                return False
            return True

        def _handle(self) -> None:
            with service.lock:
                service.requests.append((self.command, self.path, dict(self.headers.items())))
            if self._fixed() or not self._authorised():
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            with service.lock:
                current = service.documents.get(self.path)
                if self.command == "GET":
                    if current is None:
                        self._json(404, {"error": "not found"})
                        return
                    self._json(200, current, etag_of(current))
                    edit = service.edit_after_get.pop(self.path, None)
                    if edit is not None:
                        service.documents[self.path] = edit
                    return
                if current is not None:
                    given = self.headers.get("If-Match")
                    if given is None:
                        self._json(428, {"error": "If-Match required"})
                        return
                    if given != etag_of(current):
                        self._json(412, {"error": "precondition failed"})
                        return
                if self.path.startswith("/locked/"):
                    self._json(409, {"error": "locked by another deployment"})
                    return
                if self.command == "PUT":
                    service.documents[self.path] = body
                elif self.command == "PATCH":
                    merged = dict(current or {})
                    merged.update(body or {})
                    service.documents[self.path] = merged
                elif self.command == "DELETE":
                    service.documents.pop(self.path, None)
                self._json(200, service.documents.get(self.path) or {})

        do_GET = do_PUT = do_PATCH = do_DELETE = _handle

    return Handler


@contextmanager
def config_service(token: str, tls: Certificates | None = None) -> Iterator[ConfigService]:
    """The service on a free port of 127.0.0.1; with ``tls``, over https only, with the server
    certificate signed by the test CA (no client certificate asked)."""
    service = ConfigService("", token)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(service))
    scheme = "http"
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(tls.server_cert), str(tls.server_key))
        server.socket = context.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    service.base = f"{scheme}://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield service
    finally:
        server.shutdown()
        server.server_close()
