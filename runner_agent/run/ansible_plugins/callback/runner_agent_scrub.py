"""Ansible callback: each play starts with no facts or registered results of earlier plays.

Several tasks share one ansible-playbook run, one play each, every play on hosts of its own
(see runner_agent/run/plays.py). What a play registers or sets as a fact stays in Ansible's
variable manager for the rest of the run and other plays could read it through ``hostvars``;
it may hold a task's secrets (a module's arguments in a failed result, say). At the start of
every play this drops them all: no play ever goes back to an earlier play's hosts.

Loaded from ANSIBLE_CALLBACK_PLUGINS by the runtime (CALLBACK_NEEDS_ENABLED is False). The
hooks used are CallbackBase's (ansible-core lib/ansible/plugins/callback/__init__.py) and the
variable manager's caches (lib/ansible/vars/manager.py: ``_fact_cache``,
``_nonpersistent_fact_cache``, ``_inventory``), checked against ansible-core 2.18 and 2.19 by
tests/run/test_batch.py.
"""

from __future__ import annotations

import contextlib
from typing import Any

from ansible.plugins.callback import CallbackBase


class CallbackModule(CallbackBase):  # type: ignore[misc]
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "runner_agent_scrub"
    CALLBACK_NEEDS_ENABLED = False

    def v2_playbook_on_play_start(self, play: Any) -> None:
        manager = play.get_variable_manager()
        if manager is None:
            return
        manager._nonpersistent_fact_cache.clear()
        hosts = set(manager._inventory.hosts) if manager._inventory is not None else set()
        # a file cache without a prefix cannot list its keys (ansible-core 2.19 jsonfile:
        # len(None)); every inventory host is cleared all the same
        with contextlib.suppress(Exception):
            hosts.update(manager._fact_cache.keys())
        for host in hosts:
            manager.clear_facts(host)
