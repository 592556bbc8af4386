"""The GitLab side: the seam the dispatch logic uses (``port``), the API layer (``api``, the
only importer of python-gitlab), retries, dispatch and following a dispatch, the in-flight
ledger, bundles and the job side, schedules, the state store in GitLab.
"""
