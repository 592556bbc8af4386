"""A STACKL core stand-in on 127.0.0.1: the two REST calls an agent makes, checked with the
models of STACKL's own client package (``stackl-client`` on PyPI, generated from core's
OpenAPI document).

- ``GET /stack_instances/{name}``: the stored stack instance; 404 ``{"detail": "Stack instance
  not found"}`` as ``stack_instances_router.py`` answers. Documents are validated as
  ``StackInstance`` when stored, so the stand-in serves only what STACKL's client accepts.
- ``POST /outputs``: the body must be an ``OutputsUpdate`` (422 otherwise, as FastAPI answers a
  body its model refuses); the outputs are merged as ``StackHandler.add_outputs`` does
  (``stackl/core/core/handler/stack_handler.py``): into ``instance_outputs``, into the service
  entry on the infrastructure target, and into every entry's ``provisioning_parameters``.
  An unknown stack instance or service is a 500 there (``None.instance_outputs``, KeyError).
"""

from __future__ import annotations

import copy
import json
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import stackl_client
from stackl_client.model.outputs_update import OutputsUpdate
from stackl_client.model.stack_instance import StackInstance
from stackl_client.model_utils import validate_and_convert_types

__all__ = ["StacklStandIn", "serve_stackl", "stack_instance"]


def _validate(data: Any, model: type) -> Any:
    """The data as STACKL's client model reads it. Raises (TypeError, ApiTypeError, ...)."""
    return validate_and_convert_types(
        copy.deepcopy(data),
        (model,),
        ["received_data"],
        True,
        True,
        configuration=stackl_client.Configuration(),
    )


def stack_instance(name: str, services: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """A stack instance document as core stores it (``models/items/stack_instance_model.py``)."""
    return {
        "name": name,
        "type": "stack_instance",
        "category": "items",
        "stack_infrastructure_template": "sit",
        "stack_application_template": "sat",
        "groups": {},
        "instance_params": {},
        "service_params": {},
        "service_secrets": {},
        "instance_secrets": {},
        "instance_outputs": {},
        "services": services,
        "status": [],
        "stages": [],
    }


@dataclass
class StacklStandIn:
    instances: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, str, Any]] = field(default_factory=list)  # method, path, body
    token: str | None = None  # when set, requests must carry "Authorization: Bearer <token>"
    base: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def put(self, document: dict[str, Any]) -> None:
        _validate(document, StackInstance)
        with self.lock:
            self.instances[document["name"]] = copy.deepcopy(document)

    def outputs_posted(self) -> list[dict[str, Any]]:
        return [body for method, path, body in self.calls if (method, path) == ("POST", "/outputs")]

    def handle(
        self, method: str, path: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, Any]:
        body = json.loads(raw) if raw else None
        with self.lock:
            self.calls.append((method, path, body))
        if self.token and headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {"detail": "Not authenticated"}
        if method == "GET" and path.startswith("/stack_instances/"):
            name = urllib.parse.unquote(path.removeprefix("/stack_instances/"))
            with self.lock:
                found = self.instances.get(name)
            if found is None:
                return 404, {"detail": "Stack instance not found"}
            return 200, found
        if method == "POST" and path == "/outputs":
            try:
                _validate(body, OutputsUpdate)
            except Exception as exc:
                return 422, {"detail": [{"msg": str(exc), "type": type(exc).__name__}]}
            return self._add_outputs(body)
        return 404, {"detail": "Not Found"}

    def _add_outputs(self, update: dict[str, Any]) -> tuple[int, Any]:
        with self.lock:
            instance = self.instances.get(update["stack_instance"])
            if instance is None or update["service"] not in instance["services"]:
                return 500, "Internal Server Error"
            instance["instance_outputs"] = {**instance["instance_outputs"], **update["outputs"]}
            for entry in instance["services"][update["service"]]:
                if entry.get("infrastructure_target") == update["infrastructure_target"]:
                    entry["outputs"] = {**entry.get("outputs", {}), **update["outputs"]}
                    break
            for entries in instance["services"].values():
                for entry in entries:
                    entry["provisioning_parameters"] = {
                        **entry.get("provisioning_parameters", {}),
                        **instance["instance_outputs"],
                        **entry.get("outputs", {}),
                    }
            return 200, copy.deepcopy(instance)


@contextmanager
def serve_stackl(standin: StacklStandIn) -> Iterator[str]:
    """Serve the stand-in over HTTP on 127.0.0.1; yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            status, data = standin.handle(self.command, self.path, dict(self.headers), raw)
            payload = json.dumps(data).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        do_GET = do_POST = _any

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    standin.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield standin.base
    finally:
        server.shutdown()
        server.server_close()
