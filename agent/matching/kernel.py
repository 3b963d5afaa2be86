"""The candidate search, once: which RPIs of which keys were observed.

Above the crypto seam (:func:`agent.crypto.rpis_into`, native or pure): for each key,
only the intervals that can match are computed. An RPI of interval j can only match a
sighting that began within +-12 intervals of j (the evaluation's time window), and j
must lie in the key's rolling period; so with the intervals in which sightings began
(``sighted``), a key needs the intervals of ``[start, start + period)`` that lie within
12 of one of them. A device that saw others on 3 of 14 days computes a fraction of the
144 RPIs per key (``scripts/bench`` reports the blocks per key).

Then a prefilter (:class:`Prefilter`: a bit table for numpy, a blocked Bloom filter for
the native call) and an exact check against the observed RPIs sorted as two 64-bit
halves. The pure backend does both with numpy over a chunk of ~150k RPIs; the native
one does both inside its crypto call, while a key's RPIs are still in the L1 cache, and
returns only the observed ones (:func:`agent.crypto.batch_match`; the tests check both
paths give the same candidates).
Every finder of this package runs this code: in this process, in threads (native
backend: it releases the GIL), or in worker processes (pure backend).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from agent import crypto
from agent.constants import MATCH_TOLERANCE_INTERVALS, RPI_LENGTH, TEK_LENGTH, TEK_ROLLING_PERIOD

if TYPE_CHECKING:  # agent.matching imports this module; only the alias is needed here
    from agent.matching.core import Candidate

CHUNK_BLOCKS = 1024 * TEK_ROLLING_PERIOD
"""RPIs per prefilter pass: a 2.4 MB buffer (stays in L2/L3)."""

Ints = npt.NDArray[np.integer[Any]]


# --- which intervals can match ----------------------------------------------------------------


_REACH_STEP = 1 << 16
"""Keys per step of :meth:`Windows.unreached`."""


@dataclass(frozen=True, slots=True)
class Windows:
    """The intervals within +-12 of a sighting, as sorted disjoint ranges [low, high)."""

    low: npt.NDArray[np.int64]
    high: npt.NDArray[np.int64]

    @classmethod
    def around(cls, sighted: Sequence[int] | npt.NDArray[np.integer[Any]]) -> Windows:
        """From the intervals in which sightings began (any order, repeats allowed)."""
        points = np.unique(np.asarray(sighted, dtype=np.int64))
        if not len(points):
            return cls(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64))
        low = points - MATCH_TOLERANCE_INTERVALS
        high = points + MATCH_TOLERANCE_INTERVALS + 1
        starts = np.concatenate(([True], low[1:] > high[:-1]))  # a gap: a new range
        ends = np.concatenate((starts[1:], [True]))
        return cls(low[starts], high[ends])

    @classmethod
    def everything(cls) -> Windows:
        """No sighting restriction: every interval of every key's period."""
        return cls(np.array([0], dtype=np.int64), np.array([1 << 40], dtype=np.int64))

    def reaches(self, rolling_start: Ints, rolling_period: Ints) -> npt.NDArray[np.bool_]:
        """Which keys have an interval of their rolling period inside one of the ranges
        (the others cannot match any sighting)."""
        start = np.asarray(rolling_start, dtype=np.int64)
        stop = start + np.asarray(rolling_period, dtype=np.int64)
        at = np.searchsorted(self.high, start, side="right")  # first range ending after start
        inside = at < len(self.low)
        inside[inside] = self.low[at[inside]] < stop[inside]
        return inside

    def unreached(
        self,
        rolling_start: Ints,
        rolling_period: Ints,
        skip: npt.NDArray[np.bool_] | None = None,
    ) -> int:
        """How many keys (other than those marked in ``skip``) no range reaches: none of
        their RPIs can match. Counted in steps, so 3 M keys need no 3 M-row temporaries."""
        count = 0
        for begin in range(0, len(rolling_start), _REACH_STEP):
            part = slice(begin, begin + _REACH_STEP)
            outside = ~self.reaches(rolling_start[part], rolling_period[part])
            if skip is not None:
                outside &= ~skip[part]
            count += int(np.count_nonzero(outside))
        return count

    def to_bytes(self) -> bytes:
        return np.stack((self.low, self.high)).astype("<i8").tobytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> Windows:
        pair = np.frombuffer(data, dtype="<i8").reshape(2, -1)
        return cls(pair[0].astype(np.int64), pair[1].astype(np.int64))


@dataclass(frozen=True, slots=True)
class Plan:
    """What to compute: one row per (key, range of intervals)."""

    rows: npt.NDArray[np.intp]
    """The key of each range (index into the keys searched)."""
    firsts: npt.NDArray[np.uint32]
    """First interval of each range."""
    counts: npt.NDArray[np.uint32]
    """Intervals in each range (at least 1)."""

    @property
    def blocks(self) -> int:
        """AES blocks (RPIs) to compute."""
        return int(self.counts.sum())


def plan(rolling_start: Ints, rolling_period: Ints, windows: Windows) -> Plan:
    """The ranges of ``[start, start + period)`` of each key that lie in ``windows``.

    Keys share a few (start, period) pairs (one per day), so the ranges are worked out
    per pair and spread to the keys.
    """
    starts = np.asarray(rolling_start, dtype=np.int64)
    periods = np.asarray(rolling_period, dtype=np.int64)
    if not len(starts):
        empty = np.zeros(0, dtype=np.uint32)
        return Plan(np.zeros(0, dtype=np.intp), empty, empty)
    pairs, which = np.unique(starts << 16 | periods, return_inverse=True)
    lows, highs = windows.low, windows.high
    pair_first: list[list[int]] = []
    pair_count: list[list[int]] = []
    for pair in pairs.tolist():
        start, stop = pair >> 16, (pair >> 16) + (pair & 0xFFFF)
        firsts, counts = [], []
        at = int(np.searchsorted(highs, start, side="right"))  # first range ending after start
        while at < len(lows) and lows[at] < stop:
            low, high = max(start, int(lows[at])), min(stop, int(highs[at]))
            if high > low:
                firsts.append(low)
                counts.append(high - low)
            at += 1
        pair_first.append(firsts)
        pair_count.append(counts)
    ranges = np.fromiter((len(f) for f in pair_first), dtype=np.intp, count=len(pairs))
    per_key = ranges[which]
    rows = np.repeat(np.arange(len(starts), dtype=np.intp), per_key)
    if not len(rows):
        empty = np.zeros(0, dtype=np.uint32)
        return Plan(rows, empty, empty)
    if int(ranges.max()) == 1:  # the usual case: one range per key
        flat_first = np.array([f[0] if f else 0 for f in pair_first], dtype=np.uint32)
        flat_count = np.array([c[0] if c else 0 for c in pair_count], dtype=np.uint32)
        chosen = which[rows]
        return Plan(rows, flat_first[chosen], flat_count[chosen])
    # several ranges for some pairs: the k-th range of each key's pair
    offsets = np.concatenate(([0], np.cumsum(ranges)))
    all_first = np.array([v for f in pair_first for v in f], dtype=np.uint32)
    all_count = np.array([v for c in pair_count for v in c], dtype=np.uint32)
    key_offsets = np.concatenate(([0], np.cumsum(per_key)))
    nth = np.arange(len(rows)) - key_offsets[rows]
    index = offsets[which[rows]] + nth
    return Plan(rows, all_first[index], all_count[index])


# --- the observed RPIs ------------------------------------------------------------------------


def bloom_masks(words: npt.NDArray[np.uint32]) -> npt.NDArray[np.uint64]:
    """The three bits of an RPI in its word of the native prefilter, from its first
    little-endian 32-bit word: bits 0-5, 6-11 and 12-17 each pick one of 64."""
    one = np.uint64(1)
    masks: npt.NDArray[np.uint64] = (
        (one << (words & 63).astype(np.uint64))
        | (one << ((words >> 6) & 63).astype(np.uint64))
        | (one << ((words >> 12) & 63).astype(np.uint64))
    )
    return masks


class Prefilter:
    """Observed RPIs in a prefilter, confirmed exactly against the RPIs sorted as two
    64-bit halves (16 bytes per RPI; a set of bytes takes ~100).

    The prefilter has two forms, one per search path, built when first used (with the
    native one's :attr:`buckets`):
    :attr:`table` (numpy's: one byte per bit, indexed by an RPI's first 32 bits) and
    :attr:`bloom` (the native call's: a blocked Bloom filter, 3 bits of one 64-bit word
    per RPI, ~21 bits per observed RPI, so it stays in the L2 cache where a bit table
    as selective would not)."""

    def __init__(self, rpi_blob: bytes) -> None:
        count = len(rpi_blob) // RPI_LENGTH
        self.count = count
        self._blob = rpi_blob
        self.bits = min(24, max(20, math.ceil(math.log2(max(count, 1))) + 6))
        self.shift = 32 - self.bits
        """The bit table: ``2**bits`` entries, an RPI's entry is its first word >> shift."""
        self.bloom_shift = 32 - max(6, min(20, math.ceil(math.log2(max(count, 1) / 4))))
        """The Bloom filter: ``2**(32 - bloom_shift)`` words (about one per four observed
        RPIs), an RPI's word is its second little-endian 32-bit word >> bloom_shift."""
        halves = np.frombuffer(rpi_blob, dtype="<u8").reshape(count, 2).astype(np.uint64)
        order = np.lexsort((halves[:, 1], halves[:, 0]))
        self.high = np.ascontiguousarray(halves[order, 0])
        self.low = np.ascontiguousarray(halves[order, 1])
        """The observed RPIs as their two little-endian 64-bit words, sorted by (high,
        low): the exact check's (here and in the native backend's fused call)."""
        self._exact: frozenset[bytes] | None = None
        if count > 1 and bool(np.any(self.high[1:] == self.high[:-1])):
            # two RPIs alike in 64 bits (~1e-10 for 50k): a lookup by halves could miss one
            self._exact = frozenset(
                rpi_blob[i : i + RPI_LENGTH] for i in range(0, len(rpi_blob), RPI_LENGTH)
            )

    @functools.cached_property
    def table(self) -> npt.NDArray[np.bool_]:
        """The bit table (numpy's probe): entry ``first word >> shift`` of each RPI set."""
        table = np.zeros(1 << self.bits, dtype=bool)
        table[self._words(0) >> self.shift] = True
        return table

    @functools.cached_property
    def bloom(self) -> npt.NDArray[np.uint64]:
        """The blocked Bloom filter (the native probe): :func:`bloom_masks` of each RPI
        ORed into its word."""
        bloom = np.zeros(1 << (32 - self.bloom_shift), dtype=np.uint64)
        np.bitwise_or.at(bloom, self._words(1) >> self.bloom_shift, bloom_masks(self._words(0)))
        return bloom

    @functools.cached_property
    def buckets(self) -> npt.NDArray[np.uint32]:
        """The first row of each value of ``high``'s top bits, then the number of rows:
        where the native check starts its search. About 16 rows a bucket (two cache
        lines of ``high``): a smaller table stays in the cache, which measured faster
        than one row a bucket."""
        top = max(1, min(16, math.ceil(math.log2(max(self.count, 2))) - 4))
        buckets: npt.NDArray[np.uint32] = np.searchsorted(
            self.high >> np.uint64(64 - top), np.arange((1 << top) + 1, dtype=np.uint64)
        ).astype(np.uint32)
        return buckets

    def _words(self, which: int) -> npt.NDArray[np.uint32]:
        """The observed RPIs' little-endian 32-bit word ``which`` (0: bytes 0-3)."""
        words: npt.NDArray[np.uint32] = np.frombuffer(self._blob, dtype="<u4")[
            which :: RPI_LENGTH // 4
        ].astype(np.uint32)
        return words

    def confirm(
        self, high: npt.NDArray[np.uint64], low: npt.NDArray[np.uint64]
    ) -> npt.NDArray[np.bool_]:
        """Which of the RPIs given by their halves (``<u8`` words 0 and 1) are observed."""
        if self._exact is not None:
            return np.fromiter(
                (
                    int(h).to_bytes(8, "little") + int(lo).to_bytes(8, "little") in self._exact
                    for h, lo in zip(high.tolist(), low.tolist(), strict=True)
                ),
                dtype=bool,
                count=len(high),
            )
        if not len(self.high):
            return np.zeros(len(high), dtype=bool)
        at = np.minimum(np.searchsorted(self.high, high), len(self.high) - 1)
        observed: npt.NDArray[np.bool_] = (self.high[at] == high) & (self.low[at] == low)
        return observed


# --- the search -------------------------------------------------------------------------------


class Search:
    """The observed RPIs and the sighted windows, ready to search keys (one per thread)."""

    def __init__(
        self, rpi_blob: bytes, windows: Windows | None = None, backend: str | None = None
    ) -> None:
        self.prefilter = Prefilter(rpi_blob)
        self.windows = windows if windows is not None else Windows.everything()
        self.name, self._rpis_into = crypto.batch_backend(backend)
        self._rpis_match = crypto.batch_match(self.name)
        self.blocks = 0
        """AES blocks computed so far (for the figures)."""

    def find(
        self,
        key_data: bytes | memoryview,
        rolling_start: Ints,
        rolling_period: Ints,
        base_index: int = 0,
    ) -> list[Candidate]:
        """Every (key index + base_index, offset from its rolling start) whose RPI was
        observed, for keys given as 16-byte key data and their rolling start and period."""
        if not self.prefilter.count:
            return []
        work = plan(rolling_start, rolling_period, self.windows)
        if not len(work.rows):
            return []
        keys = np.frombuffer(key_data, dtype=np.uint8).reshape(-1, TEK_LENGTH)
        starts = np.asarray(rolling_start, dtype=np.int64)
        match = self._rpis_match
        # only the buffers of the path that runs are allocated: the fused native call
        # writes hits only, the pure one needs the RPIs and the probe's scratch
        buffer = np.empty(0 if match else CHUNK_BLOCKS * RPI_LENGTH + RPI_LENGTH, np.uint8)
        slots = np.empty(CHUNK_BLOCKS if match else 0, dtype=np.int64)  # C int64_t
        index = np.empty(0 if match else CHUNK_BLOCKS, dtype=np.intp)  # take() wants intp
        probed = np.empty(0 if match else CHUNK_BLOCKS, dtype=bool)
        prefilter = self.prefilter
        shift = prefilter.shift
        ends = np.cumsum(work.counts, dtype=np.int64)
        found: list[Candidate] = []
        first = 0
        while first < len(work.rows):
            # as many ranges as fit in the buffer; a longer range gets a buffer of its own
            done = int(ends[first - 1]) if first else 0
            last = max(first + 1, int(np.searchsorted(ends, done + CHUNK_BLOCKS, side="right")))
            blocks = int(ends[last - 1]) - done
            rows = work.rows[first:last]
            if len(rows) == 1 or bool((np.diff(rows) == 1).all()):  # consecutive: no copy
                teks = keys[int(rows[0]) : int(rows[-1]) + 1]
            else:
                teks = np.ascontiguousarray(keys[rows])
            firsts, counts = work.firsts[first:last], work.counts[first:last]
            self.blocks += blocks
            if match is not None:  # probe and exact check inside the native crypto call
                into = slots if blocks <= CHUNK_BLOCKS else np.empty(blocks, dtype=np.int64)
                count = match(
                    teks.data,
                    firsts.data,
                    counts.data,
                    prefilter.bloom.data,
                    prefilter.bloom_shift,
                    prefilter.high.data,
                    prefilter.low.data,
                    prefilter.buckets.data,
                    into.data,
                )
                hits = into[:count].astype(np.intp)
            else:
                fits = blocks <= CHUNK_BLOCKS
                out = buffer if fits else np.empty(blocks * RPI_LENGTH, np.uint8)
                self._rpis_into(teks.data, firsts.data, counts.data, out.data)
                words = out.view("<u4")[: blocks * 4 : 4]
                if fits:
                    np.right_shift(words, shift, out=index[:blocks])
                    hits = np.flatnonzero(
                        prefilter.table.take(index[:blocks], out=probed[:blocks])
                    )
                else:
                    hits = np.flatnonzero(prefilter.table.take((words >> shift).astype(np.intp)))
                if len(hits):
                    pair = out.view("<u8")
                    hits = hits[prefilter.confirm(pair[2 * hits], pair[2 * hits + 1])]
            if len(hits):
                key_rows, offsets = _locate(work, first, last, done, ends, starts, hits)
                key_rows += base_index
                found.extend(zip(key_rows.tolist(), offsets.tolist(), strict=True))
            first = last
        return found


def _locate(
    work: Plan,
    first: int,
    last: int,
    done: int,
    ends: npt.NDArray[np.int64],
    starts: npt.NDArray[np.int64],
    hits: npt.NDArray[np.intp],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(key rows, offsets from their rolling start) of the RPIs at ``hits`` of the buffer
    that holds ranges ``first..last`` of ``work`` (``done`` blocks before them)."""
    range_ends = ends[first:last] - done
    at = np.searchsorted(range_ends, hits, side="right")
    range_begin = range_ends[at] - work.counts[first:last][at].astype(np.int64)
    key_rows = work.rows[first:last][at].astype(np.int64)
    offsets = work.firsts[first:last][at].astype(np.int64) - starts[key_rows]
    offsets += hits - range_begin
    return key_rows, offsets


def search_columns(
    key_data: bytes | memoryview,
    rolling_start: Ints,
    rolling_period: Ints,
    rpi_blob: bytes,
    sighted: Sequence[int] | npt.NDArray[np.integer[Any]] | None,
    backend: str | None = None,
) -> list[Candidate]:
    """:meth:`Search.find` in this thread, for a one-off search (the reference matcher)."""
    windows = None if sighted is None else Windows.around(sighted)
    return Search(rpi_blob, windows, backend).find(key_data, rolling_start, rolling_period)
