"""Tasks into GitLab CI: rendering, the plan job's files and parts, the pipeline graph, CI
schema checks.

Pure: no network, no GitLab client, no ansible-runner.
"""
