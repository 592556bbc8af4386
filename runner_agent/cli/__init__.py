"""The ``runner-agent`` command line: parses, calls one library function, maps errors.

Each group of commands lives in its own module; this one wires them together and is the only
place where an exception becomes an exit code.
"""

from __future__ import annotations

import importlib
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

import click

from runner_agent import __version__
from runner_agent.cli import _common
from runner_agent.errors import InvalidInput, RunnerAgentError

__all__ = ["EXIT_INTERRUPTED", "cli", "main"]

EXIT_INTERRUPTED = 130  # as a shell reports a command ended by a signal

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


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; return (and exit with) the exit code."""
    previous = _on_sigterm_interrupt()
    try:
        rv = cli.main(args=list(argv) if argv is not None else None, standalone_mode=False)
    except click.exceptions.Abort:
        # Ctrl-C, or SIGTERM (GitLab cancelling the job): the run cleaned up on its way out
        click.echo("interrupted: no state was written for the task that was running", err=True)
        code = EXIT_INTERRUPTED
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
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if argv is None:
        sys.exit(code)
    return code


def _interrupt(signum: int, frame: object) -> None:
    # stopping already: a second Ctrl-C or SIGTERM must not cut the clean-up and the last
    # report short (both are bounded: a few seconds)
    for held in _STOP_SIGNALS:
        signal.signal(held, signal.SIG_IGN)
    raise KeyboardInterrupt


def _on_sigterm_interrupt() -> dict[int, Any]:
    """Make SIGTERM unwind like Ctrl-C, so temporary folders and Ansible processes are cleaned
    up; returns the handlers to restore (none off the main thread, where none can be set)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {signum: signal.signal(signum, _interrupt) for signum in _STOP_SIGNALS}


_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
