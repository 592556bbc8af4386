"""The task model: task files, tasks and their validation, agents, placeholders, state documents.

Pure data and rules; no GitLab client, no ansible-runner.
"""
