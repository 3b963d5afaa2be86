"""The demo report: ``demo.md``/``demo.html``/``demo.json`` plus a field report per pair.

The main document has the verdict, where everybody was, the time line, the RSSI and
attenuation of every link, and the exposure windows and scores of every agent that
downloaded A's keys. For each pair of A and another agent, the field-test kit
(:mod:`agent.field`) writes its own report from the two agents' logs, with the story's
moves as ground-truth marks, and PNG plots when matplotlib is installed.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from agent.config import RiskConfig
from agent.errors import AgentError
from agent.field import files as field_files
from agent.field.files import write_report
from agent.field.marks import Mark
from agent.field.render import (
    Block,
    Bullets,
    Heading,
    Image,
    Links,
    Paragraph,
    Table,
    to_html,
    to_markdown,
)
from agent.field.render import number_text as num
from agent.field.report import ReportSettings, analyse
from agent.lab.demo.geometry import link
from agent.lab.demo.layout import WALLS, Phase
from agent.lab.demo.observe import Observation
from agent.lab.demo.steps import clock_text
from agent.lab.demo.story import StoryResult
from agent.lab.demo.summary import result_json, verdict_line

MARKDOWN_FILE = "demo.md"
HTML_FILE = "demo.html"
JSON_FILE = "demo.json"


def pair_marks(phases: list[Phase], a: str, b: str) -> list[Mark]:
    """Ground-truth marks of the pair (a, b): one per move that changed their distance."""
    marks: list[Mark] = []
    for phase in phases:
        if not phase.places:
            marks.append(Mark(phase.time, None, phase.label))
            continue
        metres, walls = link(phase.places[a], phase.places[b], WALLS)
        if marks and marks[-1].distance_m == round(metres, 2) and marks[-1].wall == bool(walls):
            continue
        marks.append(Mark(phase.time, round(metres, 2), phase.label, bool(walls)))
    return marks


def _time(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


LINK_HEADERS = (
    "receiver",
    "transmitter",
    "sightings",
    "while together",
    "median RSSI (dBm)",
    "median attenuation (dB)",
    "attenuation range (dB)",
)
WINDOW_HEADERS = (
    "start",
    "duration (min)",
    "scan instances",
    "typical attenuation (dB)",
    "min attenuation (dB)",
    "weighted minutes",
    "score",
)


def _places(result: StoryResult) -> list[Block]:
    reporter = result.names[0]
    rows = []
    for phase in result.phases:
        for name, (x, y) in phase.places.items():
            metres, walls = link(phase.places[reporter], (x, y), WALLS)
            distance = "-" if name == reporter else f"{metres:.3g} m"
            rows.append(
                (clock_text(phase.time), phase.label, name, f"({x:g}, {y:g})", distance, str(walls))
            )
    headers = ("from", "phase", "agent", "position (m)", f"distance to {reporter}", "walls")
    return [Heading(2, "Where everybody was"), Table(headers, tuple(rows))] if rows else []


def _timeline(result: StoryResult) -> list[Block]:
    rows = tuple(
        (
            f"{e.real_seconds:.1f}",
            clock_text(e.agent_time),
            f"{e.kind.upper()}: {e.text}" if e.kind in ("ok", "fail") else e.text,
        )
        for e in result.events
    )
    return [Heading(2, "Time line"), Table(("real s", "simulated (UTC)", "what happened"), rows)]


def _links(obs: Observation) -> list[Block]:
    rows = tuple(
        (
            k.receiver,
            k.transmitter,
            str(k.sightings),
            str(k.during_contact),
            num(k.rssi_median),
            num(k.attenuation_median),
            "-" if k.attenuation_min is None else f"{k.attenuation_min}..{k.attenuation_max}",
        )
        for k in obs.links
    )
    return [
        Heading(2, "Links: what each agent heard"),
        Paragraph(
            "Attenuation = the sender's TX power (decrypted from its AEM) - the "
            "receiver's calibrated RSSI; higher is farther."
        ),
        Table(LINK_HEADERS, rows),
    ]


def _windows(result: StoryResult, obs: Observation) -> list[Block]:
    blocks: list[Block] = [Heading(2, "Exposure windows and scores after the download")]
    for name in result.names[1:]:
        found = obs.agents[name]
        verdict = "notified" if name in result.notified else "not notified"
        text = (
            f"{len(found.windows)} window(s); {found.weighted_minutes:.1f} weighted "
            f"minutes on the day (notification at {found.threshold_minutes:g})."
        )
        if found.notifications:
            text += f" Notification: {found.notifications[-1].get('body')}"
        blocks += [Heading(3, f"{name}: {verdict}"), Paragraph(text)]
        rows = tuple(
            (
                _time(w.start),
                f"{w.duration_seconds / 60:.0f}",
                str(len(w.scan_instances)),
                str(w.typical_attenuation_db),
                str(w.min_attenuation_db),
                f"{w.weighted_duration_seconds / 60:.1f}",
                f"{w.score:g}",
            )
            for w in found.windows
        )
        if rows:
            blocks.append(Table(WINDOW_HEADERS, rows))
    return blocks


def build_blocks(
    result: StoryResult, pair_dirs: dict[str, str], plots: dict[str, str]
) -> list[Block]:
    """The whole document, for Markdown and HTML alike."""
    opts = result.options
    blocks: list[Block] = [
        Heading(1, "contact-agent demo"),
        Paragraph(verdict_line(result)),
        Bullets(
            (
                f"{len(result.names)} agents ({', '.join(result.names)}), each the real daemon "
                "(bleak/bless radio on a fake bluetoothd over a private D-Bus, SQLite store, "
                "HTTP to the local test key server)",
                f"simulated time x{opts.speed:g}; {opts.contact_minutes:g} minutes together at "
                f"{opts.distance_m:g} m; RSSI noise seed {opts.seed}",
                f"{result.names[0]} reported a positive test; "
                f"{result.published_keys} key(s) published",
            )
        ),
        *_places(result),
        *_timeline(result),
    ]
    if result.observation is not None:
        blocks += _links(result.observation) + _windows(result, result.observation)
    if pair_dirs:
        blocks.append(Heading(2, "Field reports per pair"))
        blocks.append(
            Links(
                tuple(
                    (
                        f"{pair}: field report",
                        f"{path}/{field_files.MARKDOWN_FILE}",
                        f"{path}/{field_files.HTML_FILE}",
                    )
                    for pair, path in pair_dirs.items()
                )
            )
        )
        blocks += [
            Image(f"{pair}: RSSI and attenuation over time", src) for pair, src in plots.items()
        ]
    return blocks


def write_pair_reports(
    result: StoryResult, out_dir: Path, risk: RiskConfig
) -> tuple[dict[str, str], dict[str, str]]:
    """A field report for A and each other agent; returns their folders and timeline plots."""
    obs = result.observation
    if obs is None:
        return {}, {}
    reporter = result.names[0]
    dirs: dict[str, str] = {}
    plots: dict[str, str] = {}
    for other in result.names[1:]:
        a, b = obs.agents[reporter], obs.agents[other]
        settings = replace(ReportSettings(), names=(reporter, other), risk=risk)
        report = analyse(
            a.log,
            b.log,
            pair_marks(result.phases, reporter, other),
            settings,
            keys=[*a.own_keys, *b.own_keys],
        )
        name = f"{reporter}-{other}"
        files = write_report(report, out_dir / name)
        dirs[name] = name
        if "timeline" in files.plots:
            plots[name] = f"{name}/{files.plots['timeline'].name}"
    return dirs, plots


def write_demo_report(result: StoryResult, out_dir: Path) -> dict[str, str]:
    """Write the report into ``out_dir``; returns what was written (name -> path)."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AgentError(f"cannot create the report folder {out_dir}: {exc.strerror}") from exc
    pair_dirs, plots = write_pair_reports(result, out_dir, RiskConfig())
    blocks = build_blocks(result, pair_dirs, plots)
    files = {
        "markdown": out_dir / MARKDOWN_FILE,
        "html": out_dir / HTML_FILE,
        "json": out_dir / JSON_FILE,
    }
    try:
        files["markdown"].write_text(to_markdown(blocks), encoding="utf-8")
        files["html"].write_text(to_html(blocks, "contact-agent demo"), encoding="utf-8")
        files["json"].write_text(json.dumps(result_json(result), indent=1) + "\n", encoding="utf-8")
    except OSError as exc:
        raise AgentError(f"cannot write the report into {out_dir}: {exc.strerror}") from exc
    written = {k: str(p) for k, p in files.items()}
    written.update({f"pair {k}": str(out_dir / v) for k, v in pair_dirs.items()})
    return written
