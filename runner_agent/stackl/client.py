"""STACKL's REST API, the two calls an agent makes.

- ``GET /stack_instances/{name}``: the stack instance (``stack_instances_router.py``; 404 with
  ``{"detail": "Stack instance not found"}``), read by STACKL's agent through
  ``stackl_client.StackInstancesApi.get_stack_instance`` (``handlers/base_handler.py``).
- ``POST /outputs`` with an ``OutputsUpdate`` body (``outputs_router.py``,
  ``manager/stack_manager.py``), sent by STACKL's Ansible callback plugin through
  ``stackl_client.OutputsApi.add_outputs`` (``ansible_plugins/callback.py``).

STACKL itself asks for no credentials; a STACKL behind a proxy that wants a bearer token gets
the one in ``RUNNER_AGENT_STACKL_TOKEN``. The URL's user and password, if any, are never shown.
"""

from __future__ import annotations

import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import requests

from runner_agent.core.errors import InvalidInput, Problem, RunnerAgentError

__all__ = ["TOKEN_ENV", "StacklClient", "StacklError", "StacklNotFound", "safe_url"]

TOKEN_ENV = "RUNNER_AGENT_STACKL_TOKEN"
TIMEOUT = (10.0, 60.0)  # connect, read: seconds


class StacklError(RunnerAgentError):
    """STACKL could not be reached, or refused the request."""

    exit_code = 4


class StacklNotFound(StacklError):
    """STACKL has no such document."""


def safe_url(url: str) -> str:
    """The URL without user and password, for messages."""
    parts = urllib.parse.urlsplit(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


@dataclass
class StacklClient:
    """STACKL core's REST API at ``url``; one ``requests`` session."""

    url: str
    token: str | None = None
    session: requests.Session = field(default_factory=requests.Session, repr=False)

    def __post_init__(self) -> None:
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InvalidInput(Problem("--stackl", f"{safe_url(self.url)!r} is not an http(s) URL"))
        self.url = self.url.rstrip("/")
        if self.token:
            self.session.headers["Authorization"] = f"Bearer {self.token}"

    @classmethod
    def from_environ(cls, url: str, environ: Mapping[str, str] | None = None) -> StacklClient:
        env = os.environ if environ is None else environ
        return cls(url, token=env.get(TOKEN_ENV) or None)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        where = f"{method} {safe_url(self.url)}{path}"
        try:
            answer = self.session.request(method, self.url + path, timeout=TIMEOUT, **kwargs)
        except requests.RequestException as exc:
            raise StacklError(f"STACKL unreachable ({where}): {type(exc).__name__}") from None
        if answer.status_code == 404:
            raise StacklNotFound(f"{where}: 404 {_detail(answer)}")
        if answer.status_code >= 400:
            raise StacklError(f"{where}: {answer.status_code} {_detail(answer)}")
        try:
            return answer.json()
        except ValueError:
            raise StacklError(f"{where}: the answer is not JSON") from None

    def get_stack_instance(self, name: str) -> dict[str, Any]:
        """The stack instance ``name``. Raises StacklNotFound, StacklError."""
        quoted = urllib.parse.quote(name, safe="")
        data = self._call("GET", f"/stack_instances/{quoted}")
        if not isinstance(data, dict):
            raise StacklError(f"stack instance {name!r}: the answer is not an object")
        return data

    def add_outputs(self, update: Mapping[str, Any]) -> None:
        """Send an OutputsUpdate. Raises StacklError."""
        self._call("POST", "/outputs", json=dict(update))


def _detail(answer: requests.Response) -> str:
    try:
        detail = answer.json().get("detail", "")
    except (ValueError, AttributeError):
        detail = ""
    text = detail if isinstance(detail, str) else str(detail)
    return text[:300]
