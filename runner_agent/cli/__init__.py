"""The ``runner-agent`` command line: parses, calls one library function, maps errors.

Each group of commands lives in its own module; this one wires them together and is the only
place where an exception becomes an exit code.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

import click

from runner_agent import __version__
from runner_agent.cli import _common
from runner_agent.core import redact, signals
from runner_agent.core.errors import EXIT_INTERRUPTED, EXIT_INVALID, InvalidInput, RunnerAgentError

__all__ = ["EXIT_INTERRUPTED", "cli", "main"]

EPILOG = """\b
Exit codes: 0 success, 1 a task failed, 2 invalid input, 3 locked,
            4 GitLab unreachable or refused, 5 timed out.
\b
Start with:   runner-agent agents
              runner-agent validate examples/*.yml
              runner-agent run examples/web.yml --local
"""


# name -> "module:attribute": a command's module is imported only when it is used, so the
# agent job (`run`) does not pay for the GitLab client or the pipeline renderer at start-up.
COMMANDS = {
    "agents": "runner_agent.cli.tasks_cmds:agents",
    "validate": "runner_agent.cli.tasks_cmds:validate",
    "run": "runner_agent.cli.run_cmd:run",
    "collect": "runner_agent.cli.run_cmd:collect",
    "job": "runner_agent.cli.run_cmd:job_cmd",
    "render": "runner_agent.cli.render_cmd:render",
    "plan": "runner_agent.cli.render_cmd:plan_cmd",
    "dotenv": "runner_agent.cli.render_cmd:dotenv_cmd",
    "dispatch": "runner_agent.cli.dispatch_cmd:dispatch",
    "status": "runner_agent.cli.dispatch_cmd:status",
    "wait": "runner_agent.cli.dispatch_cmd:wait",
    "reports": "runner_agent.cli.dispatch_cmd:reports",
    "cancel": "runner_agent.cli.dispatch_cmd:cancel",
    "schedule": "runner_agent.cli.schedule_cmd:schedule",
    "state": "runner_agent.cli.schedule_cmd:state",
    "summarize": "runner_agent.cli.dispatch_cmd:summarize_cmd",
    "stackl": "runner_agent.cli.stackl_cmd:stackl",
    "history": "runner_agent.cli.history_cmd:history",
    "rollback": "runner_agent.cli.history_cmd:rollback_cmd",
}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands or cmd_name not in COMMANDS:
            return self.commands.get(cmd_name)
        module, _, attribute = COMMANDS[cmd_name].partition(":")
        command: click.Command = getattr(importlib.import_module(module), attribute)
        self.add_command(command, cmd_name)
        return command


@click.group(
    cls=_LazyGroup, epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]}
)
@click.version_option(__version__, prog_name="runner-agent")
def cli() -> None:
    """Ephemeral agents that live only as GitLab pipeline jobs.

    A task names an identity, an agent (an Ansible role), a command and a key/value config.
    runner-agent validates tasks, runs them here with --local, or renders them into GitLab CI
    jobs where each job is the agent for one task.
    """


def main(argv: Sequence[str] | None = None, *, seams: _common.Seams | None = None) -> int:
    """Run the CLI; return (and exit with) the exit code. ``seams``: the clock and sleep the
    commands use (tests pass their own; see :class:`runner_agent.cli._common.Seams`)."""
    redact.forget()  # the secrets of an earlier call in this process are not this one's
    with signals.installed():  # SIGTERM unwinds like Ctrl-C; see runner_agent.core.signals
        code = _run(argv, seams or _common.Seams())
    if argv is None:
        sys.exit(code)
    return code


def _run(argv: Sequence[str] | None, seams: _common.Seams) -> int:
    try:
        args = list(argv) if argv is not None else None
        rv = cli.main(args=args, standalone_mode=False, obj=seams)
    except click.exceptions.Abort:
        # Ctrl-C, or SIGTERM (GitLab stopping the job): the run cleaned up on its way out,
        # and `run` wrote what each task did (its report) before this
        click.echo("interrupted (SIGTERM or Ctrl-C)", err=True)
        return EXIT_INTERRUPTED
    except click.ClickException as exc:  # usage errors are invalid input
        exc.show()
        return EXIT_INVALID
    except InvalidInput as exc:
        _common.print_problems(exc)
        return exc.exit_code
    except RunnerAgentError as exc:
        click.echo(f"error: {_common.redact(str(exc))}", err=True)
        return exc.exit_code
    except OSError as exc:  # a file or folder the command was pointed at cannot be used
        where = f"{exc.filename}: " if exc.filename else ""
        click.echo(f"invalid: {_common.redact(where + (exc.strerror or str(exc)))}", err=True)
        return EXIT_INVALID
    return rv if isinstance(rv, int) else 0
