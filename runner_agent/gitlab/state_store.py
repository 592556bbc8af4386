"""State documents in the project's generic package registry, for runs inside GitLab jobs.

``runner-agent-state/<identity>/state.json``, the identity's ``/`` written as ``+`` (a package
version may not hold ``/``; ``+`` is allowed there and never appears in an identity, so the
mapping is one to one). Each write adds a file; GitLab serves the latest one, and the older
ones are the history an operator can browse (a cleanup policy keeps it bounded).

The job token may read and write generic packages of its own project, so jobs need no other
credential. There is no lock here: ``resource_group`` runs one job per identity at a time.
"""

from __future__ import annotations

import hashlib
import json

from runner_agent.gitlab.port import GitLab, NotFound
from runner_agent.model.state import State, StateStore, parse_state

__all__ = ["STATE_FILE", "STATE_PACKAGE", "GitLabStateStore", "state_version"]

STATE_PACKAGE = "runner-agent-state"
STATE_FILE = "state.json"
_MAX_VERSION = 200


def state_version(identity: str) -> str:
    """The package version holding an identity's state: readable, one to one, always valid."""
    version = identity.replace("/", "+")
    if len(version) > _MAX_VERSION:  # GitLab caps versions; keep a readable head, then a hash
        digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
        version = f"{version[: _MAX_VERSION - 17]}+{digest}"
    return version


class GitLabStateStore(StateStore):
    """A :class:`StateStore` in the generic package registry of ``api``'s project."""

    def __init__(self, api: GitLab) -> None:
        self.api = api

    def read(self, identity: str) -> State | None:
        """The identity's latest state, or None. Raises GitLabError when GitLab cannot answer,
        UnreadableState when the stored document is not the identity's state document (the
        same check as a local one: model/schemas/state.schema.json)."""
        version = state_version(identity)
        try:
            data = self.api.get_package_file(STATE_PACKAGE, version, STATE_FILE)
        except NotFound:
            return None
        where = f"package registry {STATE_PACKAGE}/{version}/{STATE_FILE}"
        return parse_state(data, identity, where)

    def write(self, state: State) -> None:
        """Store a new state document. Raises GitLabError when the upload fails after retries."""
        data = json.dumps(state.to_dict(), sort_keys=True, default=str).encode()
        self.api.put_package_file(STATE_PACKAGE, state_version(state.identity), STATE_FILE, data)
