#!/usr/bin/env python3
"""The simulated field's numbers: detection rate against distance and walls, precision/recall.

For every distance (and with 0 or 1 wall in between, and for continuous and duty-cycled
scanning) ``--pairs`` independent pairs stand still for ``--minutes``; the detection rate
is the share of directed links (a hears b, b hears a) whose agent would notify. The
pairs' ground truth is a close contact when they are within 2 m with no wall (and the
contact lasts 15 min or more); precision and recall are taken over all cells of a mode.
Scenario files given as arguments are simulated too (``contact-agent simulate``).

The simulation is the in-process radio of ``agent.lab.demo.simradio`` with the agents' real
key schedule, matcher and risk model. Numbers depend on the radio model and the seed,
not on this machine; nothing here is a timing.

Usage: ``scripts/sim_field.py [--pairs 40] [--minutes 20] [--seed 1] [--json] [SCENARIO...]``
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.lab.demo.fieldtext import ratio_text
from agent.lab.demo.scenario import ScanSettings, load_scenario
from agent.lab.demo.simfield import detection_rate, pair_scenario, simulate

DISTANCES = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.0, 10.0, 15.0)
MODES = ("continuous", "duty")


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("scenarios", nargs="*", type=Path, help="scenario files to simulate too")
    parser.add_argument("--pairs", type=int, default=40, help="pairs per cell")
    parser.add_argument("--minutes", type=float, default=20.0, help="contact length")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser.parse_args(argv)


def rate_table(pairs: int, minutes: float, seed: int) -> dict[str, object]:
    rates: dict[str, dict[str, float]] = {}
    counts = {mode: {"tp": 0, "fp": 0, "fn": 0} for mode in MODES}
    for mode in MODES:
        for walls in (0, 1):
            column = f"{mode}{'+wall' if walls else ''}"
            rates[column] = {}
            for distance in DISTANCES:
                result = simulate(
                    pair_scenario(
                        distance,
                        walls,
                        pairs=pairs,
                        minutes=minutes,
                        scan=ScanSettings(mode=mode),
                        seed=seed,
                    )
                )
                rates[column][f"{distance:g}"] = detection_rate(result)
                counts[mode]["tp"] += result.true_positives
                counts[mode]["fp"] += result.false_positives
                counts[mode]["fn"] += result.false_negatives
    scores = {}
    for mode, c in counts.items():
        found, close = c["tp"] + c["fp"], c["tp"] + c["fn"]
        scores[mode] = {
            **c,
            "precision": c["tp"] / found if found else None,
            "recall": c["tp"] / close if close else None,
        }
    return {"pairs": pairs, "minutes": minutes, "seed": seed, "rates": rates, "scores": scores}


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    table = rate_table(args.pairs, args.minutes, args.seed)
    files = {}
    for path in args.scenarios:
        files[str(path)] = simulate(load_scenario(path)).to_json()
    if args.json:
        print(json.dumps({**table, "scenarios": files}))
        return 0
    rates = table["rates"]
    assert isinstance(rates, dict)
    print(
        f"detection rate of a {args.minutes:g}-minute contact, {args.pairs} pairs per cell, "
        f"seed {args.seed} (default radio model and [risk])"
    )
    columns = list(rates)
    print("distance " + "".join(f"{c:>17}" for c in columns))
    for distance in DISTANCES:
        key = f"{distance:g}"
        print(f"{distance:6g} m " + "".join(f"{rates[c][key]:17.3f}" for c in columns))
    scores = table["scores"]
    assert isinstance(scores, dict)
    print("close contact = within 2 m, no wall; over all cells of a scanning mode:")
    for mode, s in scores.items():
        print(
            f"  {mode:10} precision {ratio_text(s['precision'])}  recall {ratio_text(s['recall'])}"
            f"  (tp {s['tp']}, fp {s['fp']}, fn {s['fn']})"
        )
    for name, result in files.items():
        print(
            f"{name}: {result['agents']} agents, precision {ratio_text(result['precision'])}, "
            f"recall {ratio_text(result['recall'])} (tp {result['true_positives']}, "
            f"fp {result['false_positives']}, fn {result['false_negatives']})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
