"""The job's runtime: digest each task against its state, run its commands through
ansible-runner (the only importer of it), keep state; the job (``job``) runs the tasks and
delivers their reports.
"""
