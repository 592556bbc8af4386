"""The job's runtime: digest each task against its state, run its commands through
ansible-runner (the only importer of it), keep state, write reports.
"""
