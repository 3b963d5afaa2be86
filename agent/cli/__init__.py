"""The ``contact-agent`` command line: parse, build the config, call the core; no logic.

Command groups live in the modules of this package; each module exports ``COMMANDS``, a
list of click commands added to the main group. Every expected failure is an
:class:`~agent.errors.AgentError` and becomes one line on stderr with its exit status;
a traceback appears only with ``--debug``.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from agent import __version__
from agent.config import Config, load_config
from agent.errors import EXIT_FAILURE, AgentError
from agent.hardening import forbid_core_dumps
from agent.logs import configure_logging
from agent.paths import default_config_path, default_data_dir


@dataclass
class CliContext:
    """What every command gets: where the data and config are, and whether to debug."""

    data_dir: Path
    config_path: Path
    debug: bool
    _config: Config | None = None

    @property
    def config(self) -> Config:
        """The validated config, loaded on first use (exit 78 on error)."""
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config


class AgentGroup(click.Group):
    """A click group that turns agent errors into one clear line and an exit status."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AgentError as exc:
            if _debug_requested():
                raise
            click.echo(f"contact-agent: {exc}", err=True)
            sys.exit(exc.exit_code)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            click.echo("contact-agent: interrupted", err=True)
            sys.exit(130)
        except Exception as exc:
            if _debug_requested():
                raise
            click.echo(
                f"contact-agent: internal error: {type(exc).__name__}: {exc} "
                "(run with --debug for details)",
                err=True,
            )
            sys.exit(EXIT_FAILURE)


def _debug_requested() -> bool:
    return "--debug" in sys.argv[1:]


pass_cli = click.make_pass_decorator(CliContext)

_VERBOSE_COMMANDS = frozenset({"run", "keyserver", "demo", "simulate"})


@click.group(cls=AgentGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="contact-agent")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="State directory (database, own keys, control socket).",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Configuration file (TOML).",
)
@click.option("--debug", is_flag=True, help="Verbose logging and tracebacks.")
@click.pass_context
def main(ctx: click.Context, data_dir: Path | None, config_path: Path | None, debug: bool) -> None:
    """Bluetooth LE Exposure Notification agent."""
    # The daemon reports what it does at INFO; one-shot commands speak through their
    # output and keep the log for warnings.
    quiet = ctx.invoked_subcommand not in _VERBOSE_COMMANDS
    configure_logging(logging.DEBUG if debug else (logging.WARNING if quiet else logging.INFO))
    forbid_core_dumps()  # before any command can read a key
    ctx.obj = CliContext(
        data_dir=data_dir or default_data_dir(),
        config_path=config_path or default_config_path(),
        debug=debug,
    )


def _register_commands() -> None:
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for command in getattr(module, "COMMANDS", ()):
            main.add_command(command)


_register_commands()
