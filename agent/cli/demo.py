"""``contact-agent demo`` (the whole story, real radio code) and ``contact-agent simulate``."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import click

from agent.cli import CliContext, pass_cli
from agent.cli._common import TerminalProgress
from agent.errors import EXIT_FAILURE, AgentError
from agent.field.plots import matplotlib_available
from agent.jsonout import dumps
from agent.lab.demo.fieldtext import field_lines
from agent.lab.demo.layout import MAX_AGENTS, MIN_AGENTS
from agent.lab.demo.report import write_demo_report
from agent.lab.demo.scenario import load_scenario
from agent.lab.demo.simfield import simulate as simulate_field
from agent.lab.demo.steps import Event, event_line
from agent.lab.demo.story import StoryOptions, StoryResult, run_story
from agent.lab.demo.summary import result_json, summary_lines, verdict_line


def report_lines(files: dict[str, str]) -> list[str]:
    """Where the report is, as a path and a URL to open; a note when it has no plots."""
    lines = []
    if not matplotlib_available():
        lines.append(
            "plots: not drawn, matplotlib is missing "
            "(bash scripts/setup.sh, or .venv/bin/pip install -e '.[field]')"
        )
    html = Path(files["html"])
    lines.append(f"report: {files['markdown']} (and {html.name}; open {html.resolve().as_uri()})")
    return lines


async def _story(options: StoryOptions, show: Callable[[Event], None] | None) -> StoryResult:
    """The story; SIGTERM cancels it like Ctrl-C, so that it still stops what it started."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await run_story(options, show)


def _quiet_stderr_logging(debug: bool) -> None:
    """The agents' log goes to the demo's log file; the terminal shows the time line."""
    if debug:
        return
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(
            handler, logging.FileHandler
        ):
            handler.setLevel(logging.CRITICAL)


@click.command("demo")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@click.option(
    "--agents",
    default=3,
    show_default=True,
    type=click.IntRange(MIN_AGENTS, MAX_AGENTS),
    help="Agents: A reports, B meets A, the others stay far away.",
)
@click.option(
    "--speed",
    default=60.0,
    show_default=True,
    type=click.FloatRange(1.0, 600.0),
    help="Simulated seconds per real second.",
)
@click.option(
    "--keep",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the agents' data, configs, log and the report in this folder.",
)
@click.option(
    "--report",
    "report_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write the report (Markdown, HTML, JSON, plots) into this folder.",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the RSSI noise.")
@pass_cli
def demo(
    cli: CliContext,
    as_json: bool,
    agents: int,
    speed: float,
    keep: Path | None,
    report_dir: Path | None,
    seed: int,
) -> None:
    """The whole story on this machine, no Bluetooth needed: B is notified, C is not."""
    _quiet_stderr_logging(cli.debug)
    options = StoryOptions(agents=agents, speed=speed, seed=seed, keep=keep)

    def show(event: Event) -> None:
        click.echo(event_line(event))

    try:
        result = asyncio.run(_story(options, None if as_json else show))
    except (KeyboardInterrupt, asyncio.CancelledError):
        click.echo("contact-agent: demo interrupted; everything it started was stopped", err=True)
        sys.exit(130)
    if report_dir is None and keep is not None:
        report_dir = keep / "report"
    files: dict[str, str] = {}
    report_error = None
    if report_dir is not None:
        try:
            files = write_demo_report(result, report_dir)
        except AgentError as exc:
            report_error = str(exc)
    if as_json:
        document = result_json(result, files)
        if report_error:
            document["report_error"] = report_error
        click.echo(dumps(document, ensure_ascii=False))
    else:
        for line in summary_lines(result):
            click.echo(line)
        if files:
            for line in report_lines(files):
                click.echo(line)
        elif report_dir is None:
            click.echo("(--report DIR writes this as Markdown and HTML, with plots per pair)")
        if result.work_dir is not None:
            click.echo(f"data kept in {result.work_dir}")
        click.echo(verdict_line(result))
    if result.failure is not None:
        click.echo(f"contact-agent: {result.failure}", err=True)
        for line in result.warnings:
            click.echo(f"contact-agent:   {line}", err=True)
    if report_error:
        click.echo(f"contact-agent: {report_error}", err=True)
    sys.exit(0 if result.ok and not report_error else EXIT_FAILURE)


@click.command("simulate")
@click.argument("scenario_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
@click.option("--seed", default=None, type=int, help="Use this seed instead of the scenario's.")
def simulate(scenario_file: Path, as_json: bool, seed: int | None) -> None:
    """Simulate a field of agents from a scenario file: precision and recall of detection.

    Also the relay guard's figures against the scenario's attackers (relayed exposures
    caught, honest sightings flagged).
    """
    progress = TerminalProgress() if TerminalProgress.wanted() and not as_json else None
    try:
        result = simulate_field(load_scenario(scenario_file, seed), progress)
    finally:
        if progress is not None:
            progress.close()
    if as_json:
        click.echo(dumps(result.to_json()))
        return
    for line in field_lines(result):
        click.echo(line)
    click.echo(f"reproduce: contact-agent simulate {scenario_file} --seed {result.scenario.seed}")


COMMANDS = [demo, simulate]
