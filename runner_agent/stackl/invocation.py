"""A STACKL invocation, as STACKL core builds it, and the task it asks for.

The shape is STACKL's own (github.com/stacklio/stackl, Apache-2.0):

- ``stackl/core/core/agent_broker/agent_task_broker.py`` (``create_service``) builds a plain dict
  ``invoc`` with ``action`` (create, update, delete), ``functional_requirement``, ``image``,
  ``before_command``, ``infrastructure_target``, ``stack_instance``, ``tool``; for
  ``tool == "ansible"`` optionally ``playbook_path``, ``serial``, ``ansible_role``,
  ``connection``, ``wait_for_connection``, ``become``, and always ``gather_facts``; then
  ``service`` and ``hosts`` (the service entry's host list, possibly empty or None). There are
  no provisioning parameters in it.
- ``stackl/agent/agent/main.py`` reads it into ``Invocation`` (the same keys; defaults
  ``gather_facts=True``, ``connection="ssh"``, ``become=False``, ``wait_for_connection=False``,
  ``serial=10``).
- ``stackl/agent/agent/kubernetes/handlers/base_handler.py`` (``provisioning_parameters``) and
  ``.../secrets/base_secret_handler.py`` (``secrets``) take the parameters and secrets from the
  entry of ``stack_instance.services[service]`` whose ``infrastructure_target`` matches.
- ``stackl/agent/agent/kubernetes/handlers/ansible_handler.py``: the role is ``ansible_role``
  when given, else the functional requirement's name; ``update`` runs like ``create``
  (``state=present``), ``delete`` with ``state=absent``; with no hosts the play targets
  ``<service>_<index>`` (index: the entry's position in ``services[service]``), a host the
  inventory plugin (``ansible_plugins/inventory.py``) adds to group ``<service>``.

Every name here is STACKL's data: any ``${env:...}`` or ``${outputs:...}`` text in it is
escaped, so it reaches the agent as written and never reads the job's environment.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runner_agent.core.errors import InvalidInput, Problem
from runner_agent.model.agents import AgentRegistry
from runner_agent.model.digest import candidates
from runner_agent.model.tasks import DEFAULT_TIMEOUT, MAX_TIMEOUT, Task, tasks_from_data

__all__ = [
    "ACTIONS",
    "SECRET_PREFIX",
    "Invocation",
    "Mapped",
    "StacklInvalid",
    "escape",
    "identity_for",
    "map_invocation",
    "parse_invocation",
    "secret_env_name",
    "service_entry",
]

SOURCE = "<stackl>"
# action -> the task's command; None is the digest (install when new or the version changed,
# then update). STACKL's Ansible handler runs update as create (state=present).
ACTIONS: dict[str, str | None] = {"create": None, "update": None, "delete": "uninstall"}
# env names the secrets of a STACKL service entry travel under (see docs/stackl.md#secrets)
SECRET_PREFIX = "RA_SECRET_"
_REQUIRED = ("action", "stack_instance", "service", "functional_requirement", "tool")
_UNSAFE = re.compile(r"[^a-z0-9._-]+")
_ENV_UNSAFE = re.compile(r"[^A-Z0-9_]+")
# a placeholder the runtime would resolve; anything else in ${...} is data already
_PLACEHOLDER = re.compile(r"\$(?=\{(?:env|outputs):[^}]*\})")


class StacklInvalid(InvalidInput):
    """The invocation, or the stack instance it names, cannot become a task."""


def _problem(message: str, fld: str = "") -> StacklInvalid:
    return StacklInvalid(Problem(SOURCE, message, field=fld))


@dataclass(frozen=True)
class Invocation:
    """The keys of STACKL's invocation this worker reads (``stackl/agent/agent/main.py``).

    ``raw`` is the dict as it arrived: the result STACKL core reads back is that dict plus
    ``status`` and ``error_message`` (``invoke_automation`` in the same file).
    """

    action: str
    stack_instance: str
    service: str
    functional_requirement: str
    infrastructure_target: str
    tool: str
    hosts: tuple[str, ...] = ()
    ansible_role: str | None = None
    playbook_path: str | None = None
    connection: str = "ssh"
    raw: Mapping[str, Any] = field(default_factory=dict)

    @property
    def agent(self) -> str:
        """``ansible_role``, else the functional requirement's name (ansible_handler.py)."""
        return self.ansible_role or self.functional_requirement


def _text(invocation: Mapping[str, Any], key: str, required: bool) -> str:
    value = invocation.get(key)
    if value is None or value == "":
        if required:
            raise _problem(f"{key} is required", key)
        return ""
    if not isinstance(value, str):
        raise _problem(f"{key} must be text, not {type(value).__name__}", key)
    return value


def parse_invocation(invocation: Any) -> Invocation:
    """Read STACKL's invocation dict. Raises StacklInvalid naming the field."""
    if not isinstance(invocation, Mapping):
        raise _problem(f"an invocation is a mapping, not {type(invocation).__name__}")
    values = {key: _text(invocation, key, key in _REQUIRED) for key in _REQUIRED}
    action = values["action"]
    if action not in ACTIONS:
        raise _problem(f"{action!r} is not create, update or delete", "action")
    target = _text(invocation, "infrastructure_target", required=True)
    hosts = invocation.get("hosts")
    if hosts is None:
        hosts = []
    if not isinstance(hosts, list | tuple) or not all(isinstance(h, str) and h for h in hosts):
        raise _problem("hosts must be a list of host names", "hosts")
    return Invocation(
        action=action,
        stack_instance=values["stack_instance"],
        service=values["service"],
        functional_requirement=values["functional_requirement"],
        infrastructure_target=target,
        tool=values["tool"],
        hosts=tuple(hosts),
        ansible_role=_text(invocation, "ansible_role", required=False) or None,
        playbook_path=_text(invocation, "playbook_path", required=False) or None,
        connection=_text(invocation, "connection", required=False) or "ssh",
        raw=dict(invocation),
    )


def _segment(value: str, name: str) -> str:
    """One identity segment: STACKL's name folded into the identity grammar, with a short
    hash of the original when folding changed it (``Shop Prod`` and ``shop-prod`` stay apart)."""
    folded = _UNSAFE.sub("-", value.strip().lower()).strip("-._")
    if not folded:
        raise _problem(f"{value!r} leaves nothing for an identity", name)
    if folded != value:
        folded = f"{folded[:80]}-{hashlib.sha256(value.encode()).hexdigest()[:6]}"
    return folded


def identity_for(invocation: Invocation) -> str:
    """``<stack_instance>/<service>/<functional_requirement>/<infrastructure_target>``: two
    targets of one service are two identities (two states, two locks, run side by side)."""
    return "/".join(
        _segment(getattr(invocation, key), key)
        for key in ("stack_instance", "service", "functional_requirement", "infrastructure_target")
    )


def escape(value: Any) -> Any:
    """STACKL's data with every ``${env:..}``/``${outputs:..}`` escaped as ``$${``: the task's
    resolver gives back the text as written instead of reading the job's environment."""
    if isinstance(value, str):
        return _PLACEHOLDER.sub("$$", value)
    if isinstance(value, Mapping):
        return {str(k): escape(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [escape(v) for v in value]
    return value


def secret_env_name(key: str) -> str:
    """The environment variable a STACKL secret travels under: ``RA_SECRET_<KEY>``."""
    name = _ENV_UNSAFE.sub("_", key.upper()).strip("_")
    if not name:
        raise _problem(f"secret {key!r} leaves nothing for an environment variable", "secrets")
    return SECRET_PREFIX + name


def service_entry(stack_instance: Mapping[str, Any], invocation: Invocation) -> tuple[int, Any]:
    """The index and entry of ``services[service]`` on the invocation's infrastructure target
    (``Handler.index`` and ``Handler.provisioning_parameters`` in base_handler.py)."""
    services = stack_instance.get("services") or {}
    entries = services.get(invocation.service) if isinstance(services, Mapping) else None
    if not isinstance(entries, list):
        raise _problem(
            f"stack instance {invocation.stack_instance!r} has no service {invocation.service!r}",
            "service",
        )
    for index, entry in enumerate(entries):
        if isinstance(entry, Mapping) and (
            entry.get("infrastructure_target") == invocation.infrastructure_target
        ):
            return index, entry
    raise _problem(
        f"service {invocation.service!r} of stack instance {invocation.stack_instance!r} "
        f"has no entry on infrastructure target {invocation.infrastructure_target!r}",
        "infrastructure_target",
    )


@dataclass(frozen=True)
class Mapped:
    """The task for an invocation, what was left out of its config, and the secret values a
    local run provides under their ``RA_SECRET_`` names (never written anywhere)."""

    task: Task
    ignored: tuple[str, ...]
    secret_env: Mapping[str, str] = field(default_factory=dict, repr=False)


def _declared(registry: AgentRegistry, agent: str, command: str | None) -> set[str]:
    spec = registry.get(agent)
    names = candidates(command)
    return {opt for name in names if name in spec.commands for opt in spec.commands[name].options}


def _hosts(invocation: Invocation, index: int) -> Mapping[str, Any]:
    """The invocation's hosts (on its ``connection``); without hosts, STACKL's own
    ``<service>_<index>`` in group ``<service>``, on the runner itself (a local connection)."""
    if invocation.hosts:
        conn = invocation.connection
        options = {} if conn == "ssh" else {"ansible_connection": conn}
        return {invocation.service: {"hosts": {h: dict(options) for h in invocation.hosts}}}
    name = f"{invocation.service}_{index}"
    return {invocation.service: {"hosts": {name: {"ansible_connection": "local"}}}}


def _decode(key: str, value: Any) -> str:
    """A secret's value as STACKL's base64 secret handler decodes it (``base64.b64decode(secret
    + "===")`` in ``secrets/base64_secret_handler.py``)."""
    if not isinstance(value, str):
        raise _problem(f"secret {key!r} must be base64 text", f"secrets.{key}")
    try:
        return base64.b64decode(value + "===").decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise _problem(f"secret {key!r} is not base64 text: {exc}", f"secrets.{key}") from None


def map_invocation(
    invocation: Invocation,
    stack_instance: Mapping[str, Any],
    *,
    registry: AgentRegistry,
    timeout: int | None = None,
    tags: Sequence[str] = (),
    decode_secrets: bool = False,
) -> Mapped:
    """The task STACKL asks for. Raises StacklInvalid (the invocation or the stack instance
    cannot become a task: unknown agent, a tool other than ansible, a playbook, no entry for
    the target, a config the agent refuses)."""
    if invocation.tool.lower() != "ansible":
        raise _problem(
            f"tool {invocation.tool!r} is not supported: this worker runs Ansible roles", "tool"
        )
    if invocation.playbook_path:
        raise _problem(
            "playbook_path is not supported: this worker runs the agent role named by "
            "ansible_role (or the functional requirement)",
            "playbook_path",
        )
    command = ACTIONS[invocation.action]
    if invocation.agent not in registry:
        known = ", ".join(a.name for a in registry) or "none"
        field_name = "ansible_role" if invocation.ansible_role else "functional_requirement"
        raise _problem(f"unknown agent {invocation.agent!r} (known: {known})", field_name)
    index, entry = service_entry(stack_instance, invocation)
    declared = _declared(registry, invocation.agent, command)
    params = entry.get("provisioning_parameters") or {}
    secrets = entry.get("secrets") or {}
    if not isinstance(params, Mapping) or not isinstance(secrets, Mapping):
        raise _problem("provisioning_parameters and secrets must be mappings", "services")
    config = {k: escape(v) for k, v in params.items() if k in declared}
    secret_env: dict[str, str] = {}
    for key, value in secrets.items():
        if key in declared:
            name = secret_env_name(str(key))
            config[str(key)] = f"${{env:{name}}}"
            if decode_secrets:
                secret_env[name] = _decode(str(key), value)
    ignored = sorted({str(k) for k in (*params, *secrets)} - declared)
    item: dict[str, Any] = {
        "identity": identity_for(invocation),
        "agent": invocation.agent,
        "config": config,
        "hosts": _hosts(invocation, index),
        "timeout": min(timeout or DEFAULT_TIMEOUT, MAX_TIMEOUT),
    }
    if command:
        item["command"] = command
    if tags:
        item["runner"] = {"tags": list(tags)}
    try:
        (task,) = tasks_from_data([item], SOURCE, registry)
    except InvalidInput as exc:
        raise StacklInvalid(exc.problems) from None
    return Mapped(task=task, ignored=tuple(ignored), secret_env=secret_env)
