"""The ``runner-agent`` command line: parses, calls one library function, maps errors.

Each group of commands lives in its own module; this one wires them together and is the only
place where an exception becomes an exit code.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from runner_agent import __version__
from runner_agent.cli import _common
from runner_agent.errors import EXIT_FAILED, InvalidInput, RunnerAgentError

__all__ = ["cli", "main"]

EPILOG = """\b
Exit codes: 0 success, 1 a task failed, 2 invalid input, 3 locked,
            4 GitLab unreachable or refused, 5 timed out.
\b
Start with:   runner-agent agents
              runner-agent validate examples/*.yml
              runner-agent run examples/web.yml --local
"""


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="runner-agent")
def cli() -> None:
    """Ephemeral agents that live only as GitLab pipeline jobs.

    A task names an identity, an agent (an Ansible role), a command and a key/value config.
    runner-agent validates tasks, runs them here with --local, or renders them into GitLab CI
    jobs where each job is the agent for one task.
    """


def _register() -> None:
    from runner_agent.cli import run_cmd, tasks_cmds

    for module in (tasks_cmds, run_cmd):
        for command in module.COMMANDS:
            cli.add_command(command)
    try:
        import importlib

        render_cmd = importlib.import_module("runner_agent.cli.render_cmd")
    except ImportError:  # pragma: no cover - while the module is being written
        return
    for command in render_cmd.COMMANDS:
        cli.add_command(command)


_register()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return (and exit with) the exit code."""
    try:
        rv = cli.main(args=list(argv) if argv is not None else None, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        code = EXIT_FAILED
    except click.ClickException as exc:  # usage errors are invalid input
        exc.show()
        code = 2
    except InvalidInput as exc:
        _common.print_problems(exc)
        code = exc.exit_code
    except RunnerAgentError as exc:
        click.echo(f"error: {_common.redact(str(exc))}", err=True)
        code = exc.exit_code
    else:
        code = rv if isinstance(rv, int) else 0
    if argv is None:
        sys.exit(code)
    return code
