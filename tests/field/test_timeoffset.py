"""The NTP-style clock-offset exchange, over real UDP on 127.0.0.1 with injected offsets."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from agent.errors import MalformedInputError, NetworkError
from agent.field.timeoffset import (
    OffsetSample,
    TimeServer,
    best_sample,
    measure_offset,
    offset_and_delay,
    parse_peer,
)


@contextmanager
def running_server(offset: float) -> Iterator[TimeServer]:
    """A time server on 127.0.0.1 whose clock is ``offset`` seconds ahead of ours."""
    server = TimeServer("127.0.0.1", 0, now=lambda: time.time() + offset)
    thread = threading.Thread(target=server.serve, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop()
        thread.join(5)
        server.close()


def test_offset_and_delay_follow_the_ntp_formulas() -> None:
    # Server 5 s ahead; 0.5 s on the way there, 0.1 s processing, 0.1 s back.
    sample = offset_and_delay(t1=10.0, t2=15.5, t3=15.6, t4=10.7)
    assert sample.offset == pytest.approx(5.2)
    assert sample.delay == pytest.approx(0.6)
    # The error is at most delay / 2: the true offset 5.0 is within 5.2 +- 0.3.
    assert abs(sample.offset - 5.0) <= sample.delay / 2


def test_best_sample_takes_the_smallest_delay_and_refuses_nonsense() -> None:
    chosen = best_sample([OffsetSample(1.0, 0.5), OffsetSample(2.0, 0.01), OffsetSample(9, -1)])
    assert chosen == OffsetSample(2.0, 0.01)
    with pytest.raises(NetworkError):
        best_sample([OffsetSample(1.0, -0.1)])


@pytest.mark.parametrize("injected", [3.25, -120.5, 0.0])
def test_measured_offset_recovers_the_injected_offset_on_loopback(injected: float) -> None:
    with running_server(injected) as server:
        host, port = server.address
        estimate = measure_offset(host, port, samples=5, timeout=2.0)
    assert server.answered == 5  # counted by the server thread, joined on leaving
    assert estimate.samples == 5
    assert estimate.delay_seconds >= 0
    # Both clocks run at the same rate, so the NTP bound holds exactly.
    assert abs(estimate.offset_seconds - injected) <= estimate.error_bound_seconds + 1e-6
    assert estimate.peer == f"127.0.0.1:{port}"


@pytest.mark.slow
def test_server_answers_only_well_formed_requests() -> None:
    with running_server(0.0) as server:
        host, port = server.address
        assert server.handle(b"junk") is None
        assert server.handle(b"XXXX" + bytes(41)) is None
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.settimeout(0.3)
            sock.sendto(b"hello, are you a time server?", (host, port))
            with pytest.raises(TimeoutError):
                sock.recv(256)
        assert server.answered == 0


def _closed_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_no_time_server_gives_a_clear_network_error() -> None:
    with pytest.raises(NetworkError) as info:
        measure_offset("127.0.0.1", _closed_udp_port(), samples=2, timeout=0.2)
    assert "127.0.0.1" in str(info.value)
    assert "\n" not in str(info.value)


def test_port_in_use_is_a_clear_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        with pytest.raises(NetworkError, match="cannot listen"):
            TimeServer("127.0.0.1", port)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pi-b.local", ("pi-b.local", 47_610)),
        ("10.0.0.7:5000", ("10.0.0.7", 5000)),
        ("[fe80::1]:123", ("fe80::1", 123)),
        ("[::1]", ("::1", 47_610)),
        ("fe80::1", ("fe80::1", 47_610)),
    ],
)
def test_parse_peer(text: str, expected: tuple[str, int]) -> None:
    assert parse_peer(text) == expected


@pytest.mark.parametrize("text", ["", ":80", "host:0", "host:99999", "host:x", "[::1"])
def test_parse_peer_rejects_bad_input(text: str) -> None:
    with pytest.raises(MalformedInputError):
        parse_peer(text)


@pytest.mark.slow
def test_preflight_cli_measures_the_peer_offset(tmp_path: object) -> None:
    """``field preflight --peer`` against a real server thread with a +3.25 s clock."""
    with running_server(3.25) as server:
        host, port = server.address
        result = subprocess.run(
            [sys.executable, "-m", "agent", "--data-dir", str(tmp_path), "field", "preflight",
             "--peer", f"{host}:{port}", "--json"],
            capture_output=True, text=True, timeout=60,
        )
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    peer = checks["peer-offset"]
    assert peer["status"] == "fail"  # 3.25 s is beyond the 2 s a report can live with
    offset, delay = peer["details"]["offset_seconds"], peer["details"]["delay_seconds"]
    assert abs(offset - 3.25) <= delay / 2 + 1e-3
    assert "3.2" in peer["summary"]
