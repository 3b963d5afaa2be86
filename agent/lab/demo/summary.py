"""The demo's outcome for people (a few lines) and for machines (one JSON object)."""

from __future__ import annotations

from typing import Any

from agent.lab.demo.story import StoryResult


def verdict_line(result: StoryResult) -> str:
    """The last line: who was notified, or which step failed and why."""
    if result.failure is not None:
        return f"the demo FAILED at step '{result.failure.step}': {result.failure.reason}"
    notified = " and ".join(result.notified) or "nobody"
    others = ", ".join(result.not_notified)
    tail = (
        f" and {others} {'was' if len(result.not_notified) == 1 else 'were'} not" if others else ""
    )
    held = "the story held" if result.ok else "the story did NOT hold"
    return f"{notified} was notified{tail}: {held} ({result.real_seconds:.1f} s)"


def summary_lines(result: StoryResult) -> list[str]:
    """Links and risk figures, for the terminal after the time line."""
    obs = result.observation
    if obs is None:
        return []
    lines = ["", "What each agent heard (whole story; attenuation = TX power - RSSI):"]
    for link in obs.links:
        if not link.sightings:
            lines.append(f"  {link.receiver} hears {link.transmitter}: nothing")
            continue
        lines.append(
            f"  {link.receiver} hears {link.transmitter}: {link.sightings} sightings, "
            f"median RSSI {link.rssi_median:g} dBm, attenuation {link.attenuation_median:g} dB "
            f"({link.attenuation_min}..{link.attenuation_max})"
        )
    lines.append(
        "Exposure windows after the download (notify: >= "
        f"{_threshold(result):g} weighted minutes a day):"
    )
    for name in result.names[1:]:
        found = obs.agents[name]
        scores = ", ".join(f"{w.score:g}" for w in found.windows) or "-"
        verdict = "notified" if name in result.notified else "not notified"
        lines.append(
            f"  {name}: {len(found.windows)} window(s), scores {scores}, "
            f"{found.weighted_minutes:.1f} weighted minutes -> {verdict}"
        )
    return lines


def _threshold(result: StoryResult) -> float:
    obs = result.observation
    if obs is None or not obs.agents:
        return 15.0
    return next(iter(obs.agents.values())).threshold_minutes


def result_json(result: StoryResult, report_files: dict[str, str] | None = None) -> dict[str, Any]:
    """``demo --json``: ok, notified, not_notified, and everything behind them."""
    obs = result.observation
    opts = result.options
    return {
        "ok": result.ok,
        "notified": list(result.notified),
        "not_notified": list(result.not_notified),
        "expected_notified": list(result.expected_notified),
        "failed_step": result.failure.step if result.failure else None,
        "reason": result.failure.reason if result.failure else None,
        "agents": list(result.names),
        "reporter": result.names[0],
        "speed": opts.speed,
        "contact_minutes": opts.contact_minutes,
        "distance_m": opts.distance_m,
        "seed": opts.seed,
        "contact": list(result.contact) if result.contact else None,
        "published_keys": result.published_keys,
        "real_seconds": round(result.real_seconds, 3),
        "links": [k.to_json() for k in obs.links] if obs else [],
        "results": {n: f.to_json() for n, f in obs.agents.items()} if obs else {},
        "timeline": [e.to_json() for e in result.events],
        "warnings": list(result.warnings),
        "kept": str(result.work_dir) if result.work_dir else None,
        "report": report_files or {},
    }
