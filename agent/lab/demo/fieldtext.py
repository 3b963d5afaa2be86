"""``contact-agent simulate``: the simulated field's result as a few readable lines."""

from __future__ import annotations

from datetime import UTC, datetime

from agent.lab.demo.simfield import FieldResult, PairDay


def ratio_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


ROW_HEADER = (
    f"  {'receiver':>10} <- {'transmitter':<11} {'UTC day':<10}  {'close':>9}  "
    f"{'weighted':>9}  {'closest':>7}"
)
ROW_UNITS = f"  {'':>10}    {'':<11} {'':<10}  {'(min)':>9}  {'(min)':>9}  {'(m)':>7}"


def _row(p: PairDay) -> str:
    day = datetime.fromtimestamp(p.day, UTC).strftime("%Y-%m-%d")
    return (
        f"  {p.receiver:>10} <- {p.transmitter:<11} {day:<10}  {p.close_minutes:9.1f}  "
        f"{p.weighted_minutes:9.1f}  {p.min_distance_m:7.1f}"
    )


def field_lines(result: FieldResult, limit: int = 12) -> list[str]:
    s, gt = result.scenario, result.scenario.ground_truth
    modes = sorted({a.scan.mode for a in s.agents})
    tp, fp = result.true_positives, result.false_positives
    fn, tn = result.false_negatives, result.true_negatives
    lines = [
        f"scenario {s.name}: {len(s.agents)} agents, {s.duration_seconds / 60:g} min, "
        f"{'/'.join(modes)} scanning, seed {s.seed}",
        f"ground truth: at least {gt.minutes:g} min a day within {gt.distance_m:g} m"
        + (" (time through a wall does not count)" if gt.walls_block else ""),
        "detected: the receiver's agent would notify (threshold "
        f"{s.risk.notify_threshold_minutes:g} weighted minutes, attenuation weights "
        f"{list(s.risk.attenuation_weights)})",
        f"{result.total_pair_days} pair-days (receiver <- transmitter, per UTC day); "
        f"{result.sightings} sightings in {result.scans} scans",
        "                 detected  not detected",
        f"  close         {tp:8d}  {fn:12d}",
        f"  not close     {fp:8d}  {tn:12d}",
        f"precision {ratio_text(result.precision)}  recall {ratio_text(result.recall)}",
    ]
    lines += relay_lines(result)
    missed = [p for p in result.pair_days if p.close and not p.detected]
    false = [p for p in result.pair_days if p.detected and not p.close]
    for title, rows in (("missed close contacts", missed), ("false alarms", false)):
        if rows:
            lines.append(
                f"{title} ({len(rows)}{', first ' + str(limit) if len(rows) > limit else ''}):"
            )
            lines += [ROW_HEADER, ROW_UNITS, *(_row(p) for p in rows[:limit])]
    return lines


def _share(part: int, whole: int) -> str:
    return f"{part} of {whole} ({100.0 * part / whole:.3f} %)" if whole else f"{part} of 0"


def relay_lines(result: FieldResult) -> list[str]:
    """The relay guard against the scenario's attackers and on every honest sighting."""
    r = result.relay
    lines = [
        f"relay guard: honest sightings flagged {_share(r.honest_flagged, r.honest_sightings)}"
    ]
    if r.attackers:
        reasons = ", ".join(f"{name} {count}" for name, count in sorted(r.reasons.items()))
        lines += [
            f"relay guard: {r.attackers} attackers; exposure windows with relayed sightings "
            f"caught {_share(r.caught_windows, r.relayed_windows)}"
            + (f" (reasons: {reasons})" if reasons else ""),
            "relay guard: honest sightings of relayed RPIs flagged "
            f"{_share(r.collateral_flagged, r.collateral_sightings)}; windows without "
            f"relayed sightings flagged {_share(r.honest_windows_flagged, r.honest_windows)}",
            f"relay guard: pair-days with relayed windows that notify: "
            f"{r.relayed_notifying_flag} (relay_policy flag), "
            f"{r.relayed_notifying_exclude} (exclude)",
        ]
    return lines
