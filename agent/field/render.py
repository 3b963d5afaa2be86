"""The field report as Markdown, HTML and JSON.

Markdown and HTML are rendered from one list of blocks (:func:`build_document`), so both
always say the same; numbers are formatted once, here.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agent.field.marks import format_time
from agent.field.report import Direction, FieldReport, SegmentStats


@dataclass(frozen=True, slots=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True, slots=True)
class Paragraph:
    text: str


@dataclass(frozen=True, slots=True)
class Bullets:
    items: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Table:
    headers: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True, slots=True)
class Image:
    alt: str
    src: str


@dataclass(frozen=True, slots=True)
class Links:
    """A list of links: (text, Markdown target, HTML target) each, so that each format
    links to the other documents in its own format."""

    items: tuple[tuple[str, str, str], ...]


Block = Heading | Paragraph | Bullets | Table | Image | Links


def seconds_text(value: float | None) -> str:
    return "not seen" if value is None else f"{value:.1f} s"


def number_text(value: float | None, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _settings_block(report: FieldReport) -> Bullets:
    s = report.settings
    items = [
        f"logs from {format_time(report.start)} to {format_time(report.end)}",
        f"gap threshold {s.gap_seconds:g} s; histogram bins {s.bin_db} dB; "
        f"scan instances of {s.scan_period_seconds:g} s",
        f"clock offset applied to log {s.names[1]}: {s.offset_b_seconds:+.3f} s",
        f"risk: thresholds {list(s.risk.attenuation_thresholds_db)} dB, weights "
        f"{list(s.risk.attenuation_weights)}, notify at {s.risk.notify_threshold_minutes:g} "
        "weighted minutes a day",
    ]
    return Bullets(tuple(items))


def _marks_table(report: FieldReport) -> Table:
    rows = []
    for number, mark in enumerate(report.marks, start=1):
        rows.append(
            (
                str(number),
                format_time(mark.time),
                "end" if mark.is_end else f"{mark.distance_m:g}",
                "yes" if mark.wall else "no",
                mark.note,
            )
        )
    return Table(("#", "time (UTC)", "distance (m)", "wall", "note"), tuple(rows))


def _range_text(low: int | None, high: int | None) -> str:
    return "-" if low is None else f"{low}-{high}"


def _segment_row(stats: SegmentStats) -> tuple[str, ...]:
    seg = stats.segment
    longest = max((g.duration for g in stats.gaps), default=0.0)
    return (
        str(seg.number),
        seg.mark.label,
        f"{seg.duration / 60:.1f}",
        str(stats.count),
        seconds_text(stats.latency_seconds),
        str(len(stats.gaps)),
        f"{stats.gap_seconds_total:.0f}",
        f"{longest:.0f}",
        str(stats.seen_minutes),
        number_text(stats.rssi_median),
        number_text(stats.attenuation_median),
        _range_text(stats.attenuation_min, stats.attenuation_max),
    )


_SEGMENT_HEADERS = (
    "mark",
    "distance",
    "minutes",
    "sightings",
    "detection latency",
    "gaps",
    "gap s",
    "longest gap s",
    "minutes seen",
    "median RSSI",
    "median attenuation",
    "attenuation range",
)


def _direction_blocks(direction: Direction) -> list[Block]:
    blocks: list[Block] = [
        Heading(2, direction.label),
        Bullets(
            (
                f"{direction.total_sightings} sightings in the log, "
                f"{direction.foreign_sightings} of other devices left out",
                f"TX power: {direction.tx_source}",
            )
        ),
        Heading(3, "Per mark"),
        Table(_SEGMENT_HEADERS, tuple(_segment_row(s) for s in direction.segments)),
    ]
    gaps = [g for s in direction.segments for g in s.gaps]
    if gaps:
        blocks.append(Heading(3, "Gaps"))
        blocks.append(
            Table(
                ("mark", "from (UTC)", "to (UTC)", "seconds"),
                tuple(
                    (str(g.segment), format_time(g.start), format_time(g.end), f"{g.duration:.0f}")
                    for g in gaps
                ),
            )
        )
    hist = direction.histogram
    labels = list(hist.counts)
    if labels:
        blocks.append(Heading(3, "Attenuation histogram (sightings per bin)"))
        rows = tuple(
            (f"{hist.bin_label(i)} dB", *(str(hist.counts[lab][i]) for lab in labels))
            for i in range(len(hist.edges) - 1)
        )
        blocks.append(Table(("attenuation", *labels), rows))
    blocks.extend(_exposure_blocks(direction))
    return blocks


def _exposure_blocks(direction: Direction) -> list[Block]:
    exp = direction.exposure
    verdict = "yes" if exp.would_notify else "no"
    source = (
        f"{exp.matched_keys} peer key(s) matched"
        if exp.matched_keys
        else "scored under a stand-in key (no peer key matched or none given)"
    )
    blocks: list[Block] = [
        Heading(3, "Exposure windows the agent would compute"),
        Paragraph(
            f"{len(exp.windows)} window(s), {exp.scan_instances} scan instance(s); {source}. "
            f"Weighted minutes: {sum(w.weighted_duration_seconds for w in exp.windows) / 60:.1f}"
            f" (the logs have sightings in {exp.seen_minutes} distinct minutes). "
            f"Would notify: {verdict}."
        ),
    ]
    if exp.windows:
        rows = tuple(
            (
                format_time(w.start),
                str(w.duration_seconds),
                str(len(w.scan_instances)),
                str(w.min_attenuation_db),
                str(w.typical_attenuation_db),
                f"{w.weighted_duration_seconds:.0f}",
                f"{w.score:.1f}",
            )
            for w in exp.windows
        )
        headers = ("start (UTC)", "duration s", "scans", "min att.", "typical att.",
                   "weighted s", "score")
        blocks.append(Table(headers, rows))
    for day in exp.daily:
        blocks.append(
            Paragraph(
                f"Day {format_time(day.day)[:10]}: score sum {day.score_sum:.1f}, maximum "
                f"{day.maximum_score:.1f}, weighted minutes {day.weighted_duration_sum / 60:.1f}."
            )
        )
    return blocks


def build_document(
    report: FieldReport,
    plots: Mapping[str, str],
    extra_notes: Sequence[str] = (),
) -> list[Block]:
    """The report's blocks; ``plots`` maps plot names to file names beside the report."""
    blocks: list[Block] = [Heading(1, "Field test report"), _settings_block(report)]
    notes = (*report.notes, *extra_notes)
    if notes:
        blocks += [Heading(2, "Notes"), Bullets(tuple(notes))]
    blocks += [Heading(2, "Marks"), _marks_table(report)]
    if "timeline" in plots:
        blocks.append(Image("RSSI and attenuation over time", plots["timeline"]))
    for direction in report.directions:
        blocks.extend(_direction_blocks(direction))
    if "histogram" in plots:
        blocks += [Heading(2, "Histograms"), Image("Attenuation per distance", plots["histogram"])]
    return blocks


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def to_markdown(blocks: Sequence[Block]) -> str:
    out: list[str] = []
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"{'#' * block.level} {block.text}")
        elif isinstance(block, Paragraph):
            out.append(block.text)
        elif isinstance(block, Bullets):
            out.append("\n".join(f"- {item}" for item in block.items))
        elif isinstance(block, Table):
            lines = ["| " + " | ".join(_md_cell(h) for h in block.headers) + " |"]
            lines.append("|" + "---|" * len(block.headers))
            lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
            out.append("\n".join(lines))
        elif isinstance(block, Links):
            out.append("\n".join(f"- [{text}]({target})" for text, target, _ in block.items))
        else:
            out.append(f"![{block.alt}]({block.src})")
    return "\n\n".join(out) + "\n"


def to_html(blocks: Sequence[Block], title: str = "Field test report") -> str:
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{e(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:80em}"
        "table{border-collapse:collapse;margin:0.5em 0}"
        "td,th{border:1px solid #bbb;padding:2px 6px;text-align:left;"
        "font-variant-numeric:tabular-nums}"
        "th{background:#eee}img{max-width:100%}</style></head><body>",
    ]
    for block in blocks:
        if isinstance(block, Heading):
            out.append(f"<h{block.level}>{e(block.text)}</h{block.level}>")
        elif isinstance(block, Paragraph):
            out.append(f"<p>{e(block.text)}</p>")
        elif isinstance(block, Bullets):
            out.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in block.items) + "</ul>")
        elif isinstance(block, Table):
            head = "".join(f"<th>{e(h)}</th>" for h in block.headers)
            body = "".join(
                "<tr>" + "".join(f"<td>{e(c)}</td>" for c in row) + "</tr>" for row in block.rows
            )
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif isinstance(block, Links):
            items = "".join(
                f'<li><a href="{e(target)}">{e(text)}</a></li>' for text, _, target in block.items
            )
            out.append(f"<ul>{items}</ul>")
        else:
            out.append(f'<p><img src="{e(block.src)}" alt="{e(block.alt)}"></p>')
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def report_json(report: FieldReport) -> dict[str, object]:
    """A machine-readable summary (no identifiers: no RPI, AEM or key)."""
    directions = []
    for d in report.directions:
        directions.append(
            {
                "receiver": d.receiver,
                "transmitter": d.transmitter,
                "sightings": d.total_sightings,
                "foreign_sightings": d.foreign_sightings,
                "tx_source": d.tx_source,
                "segments": [
                    {
                        "mark": s.segment.number,
                        "distance_m": s.segment.mark.distance_m,
                        "wall": s.segment.mark.wall,
                        "start": s.segment.start,
                        "end": s.segment.end,
                        "sightings": s.count,
                        "detection_latency_seconds": s.latency_seconds,
                        "gaps": [{"start": g.start, "end": g.end} for g in s.gaps],
                        "minutes_seen": s.seen_minutes,
                        "rssi_median": s.rssi_median,
                        "attenuation_median": s.attenuation_median,
                        "attenuation_min": s.attenuation_min,
                        "attenuation_max": s.attenuation_max,
                    }
                    for s in d.segments
                ],
                "histogram": {"edges_db": list(d.histogram.edges),
                              "counts": {k: list(v) for k, v in d.histogram.counts.items()}},
                "matched_keys": d.exposure.matched_keys,
                "minutes_seen": d.exposure.seen_minutes,
                "exposure_windows": [
                    {
                        "start": w.start,
                        "duration_seconds": w.duration_seconds,
                        "min_attenuation_db": w.min_attenuation_db,
                        "typical_attenuation_db": w.typical_attenuation_db,
                        "report_type": int(w.report_type),
                        "score": w.score,
                    }
                    for w in d.exposure.windows
                ],
                "would_notify": d.exposure.would_notify,
            }
        )
    return {
        "start": report.start,
        "end": report.end,
        "marks": [m.to_json() for m in report.marks],
        "directions": directions,
        "notes": list(report.notes),
    }
