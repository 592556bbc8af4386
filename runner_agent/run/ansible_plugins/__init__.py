"""Ansible plugins the runtime puts on Ansible's plugin paths (loaded by Ansible, not imported)."""
