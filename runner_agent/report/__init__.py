"""Reports: what a task's run did, as JSON, JUnit XML, dotenv, a table and an HTML page; the
files they are written to; the exit-code policy (``outcome``).

No GitLab client, no ansible-runner.
"""
