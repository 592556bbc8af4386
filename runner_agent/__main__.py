"""``python -m runner_agent``."""

from runner_agent.cli import main

main()
