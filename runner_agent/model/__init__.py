"""The task model: task files, tasks and their validation, the identity rule, agents, the digest
policy, placeholders, state documents.

Pure data and rules; no GitLab client, no ansible-runner.
"""
