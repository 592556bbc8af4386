"""The GitLab side: the API layer (the only importer of python-gitlab), retries, dispatch and
following a dispatch, the in-flight ledger, bundles, schedules, the state store in GitLab.
"""
