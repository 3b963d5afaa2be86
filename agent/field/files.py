"""Thin file I/O around the pure field report: read logs and keys, write the results."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from agent.errors import AgentError
from agent.export import PublicKeyRing, load_public_key, read_verified_export
from agent.field import plots
from agent.field.render import build_document, report_json, to_html, to_markdown
from agent.field.report import FieldReport
from agent.interchange import guess_format, parse_sightings
from agent.jsonout import dumps
from agent.matching.core import dedupe_keys
from agent.models import Sighting, TemporaryExposureKey

_LOGGER = logging.getLogger(__name__)

MARKDOWN_FILE = "report.md"
HTML_FILE = "report.html"
JSON_FILE = "report.json"


def _read_bytes(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise AgentError(f"{what} {path} does not exist") from None
    except OSError as exc:
        raise AgentError(f"cannot read {what} {path}: {exc.strerror}") from exc


def load_log(path: Path) -> list[Sighting]:
    """A sightings log in the interchange format (``export sightings``: jsonl or csv)."""
    data = _read_bytes(path, "log")
    try:
        return parse_sightings(data, guess_format(path.name, data))
    except AgentError as exc:
        raise type(exc)(f"{path}: {exc}") from None


def load_keys(exports: Sequence[Path], public_keys: Sequence[Path]) -> list[TemporaryExposureKey]:
    """The keys of the peers' ``keys export-own`` files, each verified by a given public key."""
    if exports and not public_keys:
        raise AgentError("--keys needs --public-key: a peer's export is used only once verified")
    ring = PublicKeyRing()
    for pem in public_keys:
        try:
            ring.add(None, None, load_public_key(_read_bytes(pem, "public key")))  # the key alone
        except AgentError as exc:
            raise type(exc)(f"{pem}: {exc}") from None
    keys: list[TemporaryExposureKey] = []
    for path in exports:
        try:
            export = read_verified_export(_read_bytes(path, "key export"), ring)
        except AgentError as exc:
            raise type(exc)(f"{path}: {exc}") from None
        keys.extend(export.keys)
    unique, _ = dedupe_keys(keys)
    return unique


@dataclass(frozen=True, slots=True)
class ReportFiles:
    markdown: Path
    html: Path
    json: Path
    plots: dict[str, Path] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


def write_report(report: FieldReport, out_dir: Path, *, with_plots: bool = True) -> ReportFiles:
    """Write Markdown, HTML, JSON and (when matplotlib is there) the PNG plots."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise AgentError(f"cannot create {out_dir}: {exc.strerror}") from exc
    notes: list[str] = []
    written: dict[str, Path] = {}
    if not with_plots:
        notes.append("plots switched off (--no-plots)")
    elif plots.matplotlib_available():
        written = plots.write_plots(report, out_dir)
    else:
        notes.append(plots.MISSING_NOTE)
    blocks = build_document(report, {k: p.name for k, p in written.items()}, notes)
    files = ReportFiles(
        out_dir / MARKDOWN_FILE, out_dir / HTML_FILE, out_dir / JSON_FILE, written, tuple(notes)
    )
    document = report_json(report)
    document["notes"] = [*report.notes, *notes]
    document["plots"] = {k: p.name for k, p in written.items()}
    try:
        files.markdown.write_text(to_markdown(blocks), encoding="utf-8")
        files.html.write_text(to_html(blocks), encoding="utf-8")
        files.json.write_text(dumps(document, indent=1) + "\n", encoding="utf-8")
    except OSError as exc:
        raise AgentError(f"cannot write the report into {out_dir}: {exc.strerror}") from exc
    _LOGGER.debug("field report written to %s", out_dir)
    return files
