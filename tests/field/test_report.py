"""The pure field-report analysis against the simulated field's ground truth."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.clock import en_interval_number, rolling_start_interval_number
from agent.errors import AgentError, SignatureError
from agent.export import generate_signing_key, public_key_pem, write_export
from agent.field.files import load_keys
from agent.field.marks import Mark, new_mark
from agent.field.report import (
    FieldReport,
    ReportSettings,
    analyse,
    segments_from_marks,
)
from agent.models import ReportType, TemporaryExposureKey
from tests.field import simfield


def test_detection_latency_per_mark_is_the_first_sighting_after_it(
    run: simfield.FieldRun, report: FieldReport
) -> None:
    logs = {"A": run.log_a, "B": run.log_b}
    assert [d.label for d in report.directions] == ["A hears B", "B hears A"]
    for direction in report.directions:
        assert len(direction.segments) == len(simfield.SCHEDULE)
        for stats in direction.segments:
            expected = simfield.expected_latency(
                logs[direction.receiver], stats.segment.mark, stats.segment.end
            )
            assert expected is not None and stats.latency_seconds is not None
            assert stats.latency_seconds == pytest.approx(expected)
            assert 2.0 <= stats.latency_seconds < 27.0  # the simulated settling time


def _gaps(report: FieldReport, receiver: str, segment: int) -> list[tuple[float, float]]:
    direction = next(d for d in report.directions if d.receiver == receiver)
    stats = direction.segments[segment]
    return [(g.start - stats.segment.start, g.end - stats.segment.start) for g in stats.gaps]


def test_gaps_are_found_where_the_receiver_went_deaf(report: FieldReport) -> None:
    for receiver, planted in simfield.GAPS.items():
        for segment, start, length in planted:
            found = _gaps(report, receiver, segment)
            assert any(s <= start and e >= start + length for s, e in found), found
    # At 1 m nothing was planted and 90 % of adverts arrive: no gap of more than 60 s.
    assert _gaps(report, "A", 0) == [] and _gaps(report, "B", 0) == []


def test_segment_counts_and_attenuation_follow_the_logs(
    run: simfield.FieldRun, report: FieldReport
) -> None:
    logs = {"A": run.log_a, "B": run.log_b}
    for direction in report.directions:
        medians: list[float] = []
        for stats in direction.segments:
            seg = stats.segment
            inside = [s for s in logs[direction.receiver] if seg.start <= s.time < seg.end]
            assert stats.count == len(inside)
            atts = [max(-8 - s.rssi, 0) for s in inside]
            assert (stats.attenuation_min, stats.attenuation_max) == (min(atts), max(atts))
            assert stats.attenuation_median is not None
            medians.append(stats.attenuation_median)
        assert medians == sorted(medians)  # farther and behind a wall: more attenuation


def test_histogram_counts_each_sighting_once_per_distance(
    run: simfield.FieldRun, report: FieldReport
) -> None:
    logs = {"A": run.log_a, "B": run.log_b}
    for direction in report.directions:
        hist = direction.histogram
        assert list(hist.counts) == ["1 m", "3 m", "10 m, wall"]
        for stats in direction.segments:
            seg = stats.segment
            expected = [0] * (len(hist.edges) - 1)
            for s in logs[direction.receiver]:
                if seg.start <= s.time < seg.end:
                    att = max(-8 - s.rssi, 0)
                    expected[next(i for i in range(len(expected)) if att < hist.edges[i + 1])] += 1
            assert list(hist.counts[seg.mark.label]) == expected
    # Both directions share one set of bin edges.
    assert report.directions[0].histogram.edges == report.directions[1].histogram.edges


def test_clock_offset_of_b_is_taken_out(run: simfield.FieldRun, report: FieldReport) -> None:
    shifted = [s.__class__(s.time + 4.0, s.rpi, s.aem, s.rssi) for s in run.log_b]
    corrected = analyse(
        run.log_a, shifted, run.marks, ReportSettings(tx_power_dbm=-8, offset_b_seconds=4.0)
    )
    for mine, theirs in zip(corrected.directions[1].segments, report.directions[1].segments,
                            strict=True):
        assert mine.latency_seconds == pytest.approx(theirs.latency_seconds)
        assert mine.count == theirs.count


def _export(tmp_path: Path, name: str, tek: bytes, start: float) -> tuple[Path, Path]:
    signing = generate_signing_key()
    key = TemporaryExposureKey(
        key_data=tek,
        rolling_start_interval_number=rolling_start_interval_number(en_interval_number(start)),
        report_type=ReportType.CONFIRMED_TEST,
    )
    data = write_export([key], signing, start_timestamp=int(start), end_timestamp=int(start) + 1)
    zip_path, pem_path = tmp_path / f"{name}.zip", tmp_path / f"{name}.pem"
    zip_path.write_bytes(data)
    pem_path.write_bytes(public_key_pem(signing))
    return zip_path, pem_path


def test_peer_keys_give_exact_tx_power_and_leave_strangers_out(tmp_path: Path) -> None:
    run = simfield.simulate(seed=11, stranger=True)
    zip_a, pem_a = _export(tmp_path, "a", run.a.tek, simfield.T0)
    zip_b, pem_b = _export(tmp_path, "b", run.b.tek, simfield.T0)
    keys = load_keys([zip_a, zip_b], [pem_a, pem_b])
    assert len(keys) == 2
    settings = ReportSettings(tx_power_dbm=5)  # deliberately wrong: the AEMs must win
    keyed = analyse(run.log_a, run.log_b, run.marks, settings, keys)
    a_hears_b, b_hears_a = keyed.directions
    assert {o.tx_power_dbm for o in a_hears_b.observations} == {run.b.tx_power_dbm}
    assert {o.tx_power_dbm for o in b_hears_a.observations} == {run.a.tx_power_dbm}
    assert all(o.decrypted for o in a_hears_b.observations)
    assert a_hears_b.foreign_sightings == run.stranger_count > 0
    assert b_hears_a.foreign_sightings == 0
    assert a_hears_b.exposure.matched_keys == b_hears_a.exposure.matched_keys == 1
    assert "decrypted" in a_hears_b.tx_source

    # Scoring B's log under the stand-in key with A's true TX power gives the same windows
    # as the agent's matcher with A's real key.
    plain = analyse(run.log_a, run.log_b, run.marks, ReportSettings(tx_power_dbm=-6))
    exact = [(w.start, w.duration_seconds, w.scan_instances, w.score)
             for w in b_hears_a.exposure.windows]
    stand_in = [(w.start, w.duration_seconds, w.scan_instances, w.score)
                for w in plain.directions[1].exposure.windows]
    assert exact and exact == stand_in
    assert plain.directions[1].exposure.matched_keys == 0


def test_exposure_windows_cover_the_test(report: FieldReport) -> None:
    for direction in report.directions:
        exposure = direction.exposure
        assert exposure.windows
        covered = {w.start // 1800 for w in exposure.windows}
        assert len(covered) >= 2  # 32 minutes of test span at least two 30-min windows
        seen = {int(o.time // 60) for o in direction.observations}
        assert exposure.seen_minutes == len(seen)
        assert all(w.score >= 0 for w in exposure.windows)
        assert exposure.scan_instances == sum(len(w.scan_instances) for w in exposure.windows)


def test_keys_must_verify(tmp_path: Path) -> None:
    run = simfield.simulate(seed=3)
    zip_a, _ = _export(tmp_path, "a", run.a.tek, simfield.T0)
    _, other_pem = _export(tmp_path, "other", run.b.tek, simfield.T0)
    with pytest.raises(SignatureError) as info:
        load_keys([zip_a], [other_pem])
    assert str(info.value).startswith(str(zip_a))
    with pytest.raises(AgentError, match="needs --public-key"):
        load_keys([zip_a], [])


def test_segments_end_at_the_next_mark_or_an_end_mark() -> None:
    t = simfield.T0
    marks = [
        new_mark(distance_m=1.0, time=t),
        new_mark(distance_m=None, time=t + 100),
        new_mark(distance_m=2.0, time=t + 300),
    ]
    segments = segments_from_marks(marks, end_time=t + 1000)
    assert [(s.number, s.start - t, s.end - t) for s in segments] == [(1, 0, 100), (3, 300, 1000)]


def test_an_empty_log_gives_whole_segment_gaps_and_a_note(run: simfield.FieldRun) -> None:
    result = analyse(run.log_a, [], run.marks, ReportSettings())
    b_hears_a = result.directions[1]
    assert b_hears_a.total_sightings == 0
    for stats in b_hears_a.segments:
        assert stats.latency_seconds is None
        assert [(g.start, g.end) for g in stats.gaps] == [(stats.segment.start, stats.segment.end)]
    assert any("log B has no sightings" in note for note in result.notes)
    assert b_hears_a.exposure.windows == ()


def test_no_marks_is_noted() -> None:
    result = analyse([], [], [], ReportSettings())
    assert result.segments == () and any("no marks" in n for n in result.notes)
    assert Mark(time=1.0, distance_m=None).label == "end"
