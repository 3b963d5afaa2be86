"""PNG plots of a field report, with matplotlib's Agg canvas (the optional ``field`` extra).

matplotlib is imported only inside :func:`write_plots`, and pyplot is never used (no
global figure state, no display needed). Each plot has a fixed pixel size.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from agent.errors import AgentError
from agent.field.report import Direction, FieldReport

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_LOGGER = logging.getLogger(__name__)

DPI = 100
TIMELINE_SIZE_PX = (1200, 700)
HISTOGRAM_SIZE_PX = (1200, 500)
TIMELINE_FILE = "timeline.png"
HISTOGRAM_FILE = "histogram.png"
MISSING_NOTE = (
    "matplotlib is not installed, so this report has no plots; "
    "install it with pip install 'contact-agent[field]' (or apt install python3-matplotlib)"
)
_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown")


def matplotlib_available() -> bool:
    """True when matplotlib can be imported (the ``field`` extra is installed)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def write_plots(report: FieldReport, out_dir: Path) -> dict[str, Path]:
    """Write ``timeline.png`` and ``histogram.png`` into ``out_dir``; returns name -> path.

    Raises :class:`AgentError` when matplotlib is missing (check
    :func:`matplotlib_available` first) or a file cannot be written.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise AgentError(MISSING_NOTE) from exc

    def new_figure(size_px: tuple[int, int]) -> Figure:
        figure = Figure(figsize=(size_px[0] / DPI, size_px[1] / DPI), dpi=DPI)
        FigureCanvasAgg(figure)
        return figure

    timeline = new_figure(TIMELINE_SIZE_PX)
    _draw_timeline(report, timeline)
    hist = new_figure(HISTOGRAM_SIZE_PX)
    _draw_histograms(report, hist)
    paths = {"timeline": out_dir / TIMELINE_FILE, "histogram": out_dir / HISTOGRAM_FILE}
    try:
        timeline.savefig(paths["timeline"], dpi=DPI, format="png")
        hist.savefig(paths["histogram"], dpi=DPI, format="png")
    except OSError as exc:
        raise AgentError(f"cannot write the plots into {out_dir}: {exc.strerror}") from exc
    _LOGGER.debug("plots written to %s", out_dir)
    return paths


def _minutes(report: FieldReport, t: float) -> float:
    return (t - report.start) / 60.0


def _draw_marks(report: FieldReport, ax: Axes, label: bool) -> None:
    for mark in report.marks:
        x = _minutes(report, mark.time)
        ax.axvline(x, color="grey", linestyle="--", linewidth=1)
        if label:
            ax.annotate(
                mark.label,
                xy=(x, 1.0),
                xycoords=("data", "axes fraction"),
                xytext=(3, -12),
                textcoords="offset points",
                fontsize=8,
                color="dimgrey",
            )


def _draw_timeline(report: FieldReport, figure: Figure) -> None:
    rssi_ax, att_ax = figure.subplots(2, 1, sharex=True)
    for colour, direction in zip(_COLOURS, report.directions, strict=False):
        xs = [_minutes(report, o.time) for o in direction.observations]
        rssi_ax.scatter(xs, [o.rssi for o in direction.observations], s=6, color=colour,
                        label=direction.label)
        att_ax.scatter(xs, [o.attenuation_db for o in direction.observations], s=6,
                       color=colour, label=direction.label)
        for stats in direction.segments:
            for gap in stats.gaps:
                att_ax.axvspan(_minutes(report, gap.start), _minutes(report, gap.end),
                               color=colour, alpha=0.12, linewidth=0)
    _draw_marks(report, rssi_ax, label=True)
    _draw_marks(report, att_ax, label=False)
    rssi_ax.set_ylabel("calibrated RSSI (dBm)")
    att_ax.set_ylabel("attenuation (dB)")
    att_ax.invert_yaxis()
    att_ax.set_xlabel("minutes since the first record (shaded: gaps)")
    rssi_ax.set_title("RSSI and attenuation over time; dashed lines are the marks")
    rssi_ax.legend(loc="lower right", fontsize=8)
    for ax in (rssi_ax, att_ax):
        ax.grid(True, alpha=0.3)
    figure.tight_layout()


def _draw_histogram(direction: Direction, ax: Axes) -> None:
    hist = direction.histogram
    labels = list(hist.counts)
    bins = len(hist.edges) - 1
    width = 0.8 / max(len(labels), 1)
    for i, (colour, label) in enumerate(zip(_COLOURS * 4, labels, strict=False)):
        xs = [b + (i - (len(labels) - 1) / 2) * width for b in range(bins)]
        ax.bar(xs, hist.counts[label], width=width, color=colour, label=label)
    ax.set_xticks(range(bins), [hist.bin_label(b) for b in range(bins)], rotation=45, fontsize=7)
    ax.set_title(f"{direction.label}: attenuation per distance", fontsize=10)
    ax.set_xlabel("attenuation (dB)")
    ax.set_ylabel("sightings")
    if labels:
        ax.legend(fontsize=8)


def _draw_histograms(report: FieldReport, figure: Figure) -> None:
    axes = figure.subplots(1, max(len(report.directions), 1), squeeze=False)[0]
    for direction, ax in zip(report.directions, axes, strict=False):
        _draw_histogram(direction, ax)
    figure.tight_layout()
