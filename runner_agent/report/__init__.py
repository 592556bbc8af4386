"""Reports: what a task's run did, as JSON, JUnit XML, dotenv, a table and an HTML page.

No GitLab client, no ansible-runner.
"""
