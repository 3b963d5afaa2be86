"""The ``contact-agent`` command line: parse, build the config, call the core; no logic.

Start-up is lazy: ``COMMANDS`` names each command, the module of this package that
defines it and its one-line help, so ``contact-agent --help`` imports no command module
and ``contact-agent status`` imports only :mod:`agent.cli.daemon`. Command modules
import heavy parts (numpy, aiohttp, the pipeline, the demo) inside the command functions
that use them. A new command is one line in ``COMMANDS`` plus the click command in its
module; ``tests/unit/test_cli_startup.py`` checks that both agree.

Exit statuses (one contract for every command): 0 ok, 1 failed, 2 usage (unknown option,
bad option value), 78 configuration. Every expected failure is an
:class:`~agent.errors.AgentError` and becomes one line on stderr with its exit status;
so does an operating-system error a user can cause (missing file, read-only or full
disk, permission denied). A reader that closes the pipe (``| head``) ends the command
quietly. A traceback appears only with ``--debug``.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from agent import __version__
from agent.config import Config, load_config
from agent.errors import EXIT_FAILURE, AgentError, ConfigError
from agent.hardening import forbid_core_dumps
from agent.logs import configure_logging
from agent.paths import default_config_path, default_data_dir

COMMANDS: dict[str, tuple[str, str]] = {
    # name: (module in agent.cli, one-line help shown by `contact-agent --help`)
    "config": ("config", "Check a configuration file and show where each setting comes from."),
    "demo": (
        "demo",
        "The whole story on this machine, no Bluetooth needed: B is notified, C is not.",
    ),
    "disable": (
        "daemon",
        "Withdraw consent: no advertising and no scanning within 2 s (data is kept).",
    ),
    "enable": ("daemon", "Consent to contact detection: advertise and scan."),
    "export": ("data", "Write stored sightings or exposures as jsonl or csv (never own keys)."),
    "fetch": (
        "match",
        "Download new diagnosis keys from the configured sources, verify and match them now.",
    ),
    "field": ("field", "Field tests between two devices: preflight, time server, report."),
    "forget": (
        "data",
        "Delete every own key, sighting, downloaded-key record and result, provably.",
    ),
    "import": ("data", "Load data from files."),
    "keys": ("keys", "Work with Temporary Exposure Keys and diagnosis-key exports."),
    "keyserver": (
        "report",
        "Run the local test key server (verification + publish + signed exports).",
    ),
    "mark": ("field", 'Append a ground-truth mark ("from now on the devices are D m apart").'),
    "match": (
        "match",
        "Verify diagnosis-key exports, then match them against the local sightings.",
    ),
    "network-log": (
        "netlog",
        "What left this device: every network contact (time, host, purpose, bytes, result).",
    ),
    "purge": ("data", "Apply the 14-day retention now (the daemon also does it daily)."),
    "report": (
        "report",
        "Self-report after a positive test: code -> certificate -> publish your keys.",
    ),
    "run": ("daemon", "Run the agent in the foreground (systemd runs this)."),
    "simulate": (
        "demo",
        "Simulate a field of agents from a scenario file: precision and recall of detection.",
    ),
    "status": ("daemon", "State of the running daemon, or of the data directory when none runs."),
}
"""Every command: the module that defines it (its ``COMMANDS`` list) and its help line."""

_USER_OS_ERRORS = frozenset(
    {
        errno.ENOENT,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EEXIST,
        errno.ENAMETOOLONG,
    }
)
"""OS errors a user causes (a path, a disk, a permission): one line, exit 1."""


@dataclass
class CliContext:
    """What every command gets: where the data and config are, and whether to debug."""

    data_dir: Path
    config_path: Path
    debug: bool
    data_dir_explicit: bool = False
    """``--data-dir`` or ``CONTACT_AGENT_DATA_DIR`` was given: no system daemon look-up."""
    _config: Config | None = None

    @property
    def config(self) -> Config:
        """The validated config, loaded on first use (exit 78 on error)."""
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config

    def socket_paths(self) -> list[Path]:
        """Where to look for a running daemon: the system daemon first unless a data
        directory was given (and only where this user may talk to it)."""
        from agent.control import client_socket_paths

        return client_socket_paths(self.data_dir, prefer_system=not self.data_dir_explicit)


def _quiet_broken_pipe() -> None:
    """The reader went away: discard what is still buffered and end without a word."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    sys.exit(EXIT_FAILURE)


class AgentGroup(click.Group):
    """The main group: commands loaded on use, errors turned into one line and a status."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands or cmd_name not in COMMANDS:
            return self.commands.get(cmd_name)
        module = importlib.import_module(f"{__name__}.{COMMANDS[cmd_name][0]}")
        commands: list[click.Command] = getattr(module, "COMMANDS", [])
        for command in commands:
            if command.name == cmd_name:
                self.add_command(command)
                return command
        raise RuntimeError(f"agent.cli.{COMMANDS[cmd_name][0]} does not define {cmd_name!r}")

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from ``COMMANDS``, without importing any command module."""
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            command = self.commands.get(name) or click.Command(name, help=COMMANDS[name][1])
            rows.append((name, command.get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AgentError as exc:
            if _debug_requested():
                raise
            click.echo(f"contact-agent: {exc}", err=True)
            sys.exit(exc.exit_code)
        except click.UsageError as exc:
            # A bad option value or argument of a command: one line, exit status 2.
            where = exc.ctx.command_path if exc.ctx is not None else "contact-agent"
            click.echo(f"contact-agent: {exc.format_message()} (see: {where} --help)", err=True)
            sys.exit(exc.exit_code)
        except (click.ClickException, click.exceptions.Exit, click.Abort, SystemExit):
            raise
        except KeyboardInterrupt:
            click.echo("contact-agent: interrupted", err=True)
            sys.exit(130)
        except BrokenPipeError:
            _quiet_broken_pipe()
        except Exception as exc:
            if _debug_requested():
                raise
            if isinstance(exc, OSError) and exc.errno in _USER_OS_ERRORS:
                where = f"{exc.filename}: " if exc.filename is not None else ""
                click.echo(f"contact-agent: {where}{exc.strerror or exc}", err=True)
                sys.exit(EXIT_FAILURE)
            click.echo(
                f"contact-agent: internal error: {type(exc).__name__}: {exc} "
                "(run with --debug for details)",
                err=True,
            )
            sys.exit(EXIT_FAILURE)

    def main(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().main(*args, **kwargs)
        except BrokenPipeError:  # raised while click itself writes (help, usage)
            _quiet_broken_pipe()


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
    help="Configuration file (TOML); it must exist when given.",
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
    # A config file asked for by name must exist; the default location may be absent.
    config_explicit = config_path is not None or bool(os.environ.get("CONTACT_AGENT_CONFIG"))
    config_path = config_path or default_config_path()
    if config_explicit and not config_path.exists():
        raise ConfigError(f"config: {config_path} does not exist")
    ctx.obj = CliContext(
        data_dir=data_dir or default_data_dir(),
        config_path=config_path,
        debug=debug,
        data_dir_explicit=data_dir is not None or bool(os.environ.get("CONTACT_AGENT_DATA_DIR")),
    )
