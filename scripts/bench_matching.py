"""Matching figures for ``scripts/bench``: the per-core kernel and the real pipeline.

* :func:`kernel_slices`: keys/s of the candidate search with each crypto backend
  (native, pure) on one core, as ``ratio_aes`` (keys/s x 144 / AES blocks/s) and
  ``py_calls_per_key``, in short slices alternating with the references; every slice
  checks the planted matches. Every interval of every key is computed there (sightings
  at all hours): the worst case.
* :func:`sparse_blocks`: the AES blocks per key the search computes for a device that
  saw others on 3 of 14 days, 4 hours a day (instead of 144).
* :func:`e2e`: :func:`agent.pipeline.match_exports` (read, verify, parse, validate,
  dedupe, load sightings, match on all cores, store) on signed daily exports in a fresh
  child process: seconds, peak RSS of that process (``ru_maxrss``), peak memory of its
  largest worker and of the whole process tree (PSS, sampled every 20 ms), and the
  event loop's lag meanwhile.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_refs import (
    ROOT,
    LoopLag,
    TreeSampler,
    aes_blocks_per_second,
    python_calls_per_second,
    summary,
)

sys.path.insert(0, str(ROOT))

from agent import crypto
from agent.constants import TEK_LENGTH, TEK_ROLLING_PERIOD
from agent.matching.core import SightingIndex
from agent.matching.kernel import Search, Windows, plan
from tests.matching.dataset import Dataset, make_dataset

E2E_FILES = 14
"""One signed export per day of the 14-day window (a file holds at most 2 M keys)."""
BACKEND_ENV = crypto.BACKEND_ENV


def backends() -> list[str]:
    """The crypto backends this installation has, fastest first."""
    return list(crypto.batch_backends())


def sparse_blocks(keys_per_day: int = 10_000) -> dict[str, Any]:
    """Blocks per key on a sparse device: 14 days of keys; sightings on 3 of the days,
    4 hours each (09:00-13:00 UTC)."""
    day = 2_833_344
    starts = np.repeat(day - TEK_ROLLING_PERIOD * np.arange(14), keys_per_day).astype(np.int32)
    periods = np.full(len(starts), TEK_ROLLING_PERIOD, dtype=np.int32)
    sighted = [day - TEK_ROLLING_PERIOD * d + 54 + j for d in (1, 5, 9) for j in range(24)]
    work = plan(starts, periods, Windows.around(sighted))
    return {
        "keys": len(starts),
        "blocks_per_key": work.blocks / len(starts),
        "keys_computed": len(np.unique(work.rows)),
        "dense_blocks_per_key": TEK_ROLLING_PERIOD,
    }


class Matcher:
    """The search over a rotating window of the dataset, checked against the plants."""

    def __init__(self, data: Dataset, finder: Search) -> None:
        self.data = data
        self.finder = finder
        self.start = 0
        self.batch = 512

    def run(self, count: int) -> float:
        """Search ``count`` keys; keys per second. Exits if a plant is missed."""
        keys = self.data.keys
        start = self.start if self.start + count <= len(keys) else 0
        stop = start + count
        self.start = stop
        began = time.perf_counter()
        found = self.finder.find(
            keys.key_data[TEK_LENGTH * start : TEK_LENGTH * stop],
            keys.rolling_start[start:stop],
            keys.rolling_period[start:stop],
            start,
        )
        elapsed = time.perf_counter() - began
        expected = [p for p in self.data.planted if start <= p[0] < stop]
        if sorted(found) != expected:
            raise SystemExit(f"{self.finder.name}: wrong candidates in keys {start}..{stop}")
        return count / elapsed

    def calibrate(self, seconds: float) -> None:
        self.run(self.batch)
        rate = self.run(self.batch)
        self.batch = max(64, min(len(self.data.keys) // 2, int(rate * seconds)))


def kernel_slices(data: Dataset, backend: str, count: int, seconds: float) -> dict[str, Any]:
    """Median ratio_aes and py_calls_per_key of the search with one crypto backend over
    ``count`` slices (every interval computed: the dense worst case)."""
    matcher = Matcher(data, Search(SightingIndex(data.scans).rpi_blob(), None, backend))
    matcher.calibrate(seconds)
    aes_blocks_per_second(seconds)  # warm-up
    python_calls_per_second(seconds)
    ratio, py_calls, rates = [], [], []
    gc.disable()
    try:
        for _ in range(count):
            aes = aes_blocks_per_second(seconds)
            py = python_calls_per_second(seconds)
            keys_per_second = matcher.run(matcher.batch)
            ratio.append(keys_per_second * TEK_ROLLING_PERIOD / aes)
            py_calls.append(py / keys_per_second)
            rates.append(keys_per_second)
    finally:
        gc.enable()
    return {
        "backend": backend,
        "slices": count,
        "keys_per_slice": matcher.batch,
        "ratio_aes": summary(ratio),
        "py_calls_per_key": summary(py_calls),
        "keys_per_second": summary(rates),
    }


# --- end to end -----------------------------------------------------------------------------


def _inputs(cache: Path, keys: int, sightings: int) -> Path:
    return cache / f"e2e-v2-{keys}-{sightings}-{E2E_FILES}"


def make_inputs(cache: Path, keys: int, sightings: int) -> None:
    """Child: the signed daily exports, the public key and a store with the sightings."""
    from agent.export import generate_signing_key, public_key_pem, write_export
    from agent.models import Sighting
    from agent.store import Store

    base = _inputs(cache, keys, sightings)
    scratch = Path(tempfile.mkdtemp(prefix=".build-", dir=cache))
    data = make_dataset(keys, sightings, planted=30, seed=11)
    signing = generate_signing_key()
    per_file = math.ceil(keys / E2E_FILES)
    for number, first in enumerate(range(0, keys, per_file)):
        part = data.keys.select(np.arange(first, min(keys, first + per_file)))
        zipped = write_export(
            [part[i] for i in range(len(part))],
            signing,
            start_timestamp=int(data.now) - 86_400 * (E2E_FILES - number),
            end_timestamp=int(data.now) - 86_400 * (E2E_FILES - number - 1),
        )
        (scratch / f"export-{number:02d}.zip").write_bytes(zipped)

    async def fill() -> None:
        async with await Store.open(scratch / "data") as store:
            rows = [  # as the scanner stores them: in 60 s scan instances
                Sighting(
                    time=s.first_seen,
                    rpi=s.rpi,
                    aem=s.aem,
                    rssi=round(s.rssi_mean),
                    scan_start=s.first_seen // 60 * 60,
                )
                for s in data.scans
            ]
            for i in range(0, len(rows), 5000):
                await store.add_sightings(rows[i : i + 5000])

    asyncio.run(fill())
    (scratch / "authority.pem").write_bytes(public_key_pem(signing))
    (scratch / "meta.json").write_text(json.dumps({"now": data.now, "planted": 30}))
    os.replace(scratch, base)


def run_e2e(cache: Path, keys: int, sightings: int, workers: int) -> dict[str, Any]:
    """Child: one pipeline run on a fresh copy of the cached store."""
    from agent.config import RiskConfig
    from agent.export import PublicKeyRing
    from agent.memory import freeze_startup_objects
    from agent.pipeline import ExportInput, match_exports
    from agent.store import Store

    freeze_startup_objects()  # as the daemon does once started: its fetch cycle's state

    base = _inputs(cache, keys, sightings)
    meta = json.loads((base / "meta.json").read_text())
    aes_before = aes_blocks_per_second(0.5)
    with tempfile.TemporaryDirectory() as scratch:
        run_dir = Path(scratch) / "data"
        shutil.copytree(base / "data", run_dir)
        ring = functools.partial(
            PublicKeyRing.from_pem, (base / "authority.pem").read_bytes(), "310", "v1"
        )

        stages: dict[str, list[float]] = {}

        def progress(stage: str, done: int, total: int) -> None:
            stages.setdefault(stage, []).append(time.perf_counter())

        async def run() -> tuple[float, Any, dict[str, Any]]:
            exports = [
                ExportInput(path.name, path.read_bytes())
                for path in sorted(base.glob("export-*.zip"))
            ]
            lag = LoopLag()
            lag.start()
            began = time.perf_counter()
            stages["start"] = [began]
            async with await Store.open(run_dir) as store:
                report = await match_exports(
                    store,
                    exports,
                    ring=ring,
                    risk=RiskConfig(),
                    now=meta["now"],
                    workers=workers,
                    progress=progress,
                    consume=True,  # as the daemon's fetch does
                )
            seconds = time.perf_counter() - began
            return seconds, report, await lag.stop()

        with TreeSampler() as sampler:
            seconds, report, lag = asyncio.run(run())
    aes = (aes_before + aes_blocks_per_second(0.5)) / 2
    if report.matched_keys != meta["planted"]:
        raise SystemExit(f"e2e found {report.matched_keys} keys, expected {meta['planted']}")
    return {
        "keys": keys,
        "sightings": sightings,
        "files": len(report.files_processed),
        "verify_seconds": stages["verify"][-1] - stages["start"][0],
        "workers": workers,
        "seconds": seconds,
        "keys_per_second": keys / seconds,
        "ratio_aes_per_worker": keys / seconds * TEK_ROLLING_PERIOD / aes / workers,
        "aes_blocks_per_second": aes,
        "matched_keys": report.matched_keys,
        "peak_rss_main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_pss_worker_mb": sampler.peak_child_mb,
        "peak_pss_tree_mb": sampler.peak_tree_mb,
        "loop_lag": lag,
    }


def e2e(
    cache: Path, keys: int, sightings: int, workers: int, backend: str, *, quiet: bool = False
) -> dict[str, Any]:
    """Build the inputs once (cached), then run the pipeline in a fresh child process."""
    cache.mkdir(parents=True, exist_ok=True)
    me = [sys.executable, str(Path(__file__).resolve())]
    common = [str(cache), str(keys), str(sightings)]
    if not _inputs(cache, keys, sightings).exists():
        if not quiet:
            print(f"  building {E2E_FILES} exports of {keys:,} keys in {cache}", file=sys.stderr)
        subprocess.run([*me, "make", *common], check=True)
    env = dict(os.environ, **{BACKEND_ENV: backend})
    out = subprocess.run(
        [*me, "run", *common, str(workers)], check=True, capture_output=True, text=True, env=env
    ).stdout
    result: dict[str, Any] = json.loads(out)
    result["backend"] = backend
    return result


if __name__ == "__main__":  # the child processes of :func:`e2e`
    command, cache_arg, keys_arg, sightings_arg, *rest = sys.argv[1:]
    if command == "make":
        make_inputs(Path(cache_arg), int(keys_arg), int(sightings_arg))
    else:
        print(json.dumps(run_e2e(Path(cache_arg), int(keys_arg), int(sightings_arg), int(rest[0]))))
