"""One corpus through both ways text leaves the agent: the log filter and server text.

``agent.logs.redact`` and ``agent.servertext.server_text`` share one detector
(``agent.identifiers``). Every must-elide shape is gone from both outputs; every
must-keep line survives both unchanged (server_text with a limit far above its length).
"""

from __future__ import annotations

import base64
import random

import pytest

from agent.constants import EN_SERVICE_UUID
from agent.identifiers import identifier_spans, looks_random
from agent.logs import REDACTED, redact
from agent.servertext import ELIDED, server_text
from tests.shared import identifier_leaks

KEY = bytes.fromhex("3f9a0c71d2e84b5619ac07fe24d3b880")
"""16 bytes standing for a TEK or an RPI (fixed: the base64 heuristic is not luck)."""
MAC = "C4:7F:0E:91:2A:B3"

ELIDE = {
    "TEK hex": KEY.hex(),
    "TEK HEX": KEY.hex().upper(),
    "8 bytes of hex": KEY[:8].hex(),
    "hex inside a word": f"rpi={KEY.hex()}&x",
    "base64": base64.b64encode(KEY).decode(),
    "base64 unpadded": base64.b64encode(KEY).decode().rstrip("="),
    "base64url": base64.urlsafe_b64encode(KEY).decode(),
    "base64url unpadded": base64.urlsafe_b64encode(KEY).decode().rstrip("="),
    "base64 of 32 bytes": base64.b64encode(KEY + KEY[::-1]).decode(),
    "bytes repr": repr(KEY),
    "bytes repr in SQL parameters": repr(("INSERT INTO own_tek", [(KEY, 2_900_000, 144)])),
    "bytearray repr": repr(bytearray(KEY)),
    "list of byte values": repr(list(KEY)),
    "hex dump with spaces": KEY.hex(" "),
    "hex dump with colons": KEY.hex(":"),
    "HEX dump with dashes": KEY.hex("-").upper(),
    "random UUID": "0123abcd-4567-89ef-0123-456789abcdef",
    "full IPv6 address": "2001:0db8:85a3:0000:0000:8a2e:0370:7334",
    "MAC": MAC,
    "mac lower case": MAC.lower(),
    "MAC with dashes": MAC.replace(":", "-"),
    "mac with dashes": MAC.replace(":", "-").lower(),
    "MAC in a BlueZ device path": "/org/bluez/hci0/dev_" + MAC.replace(":", "_"),
    "MAC all digits": "00:11:22:33:44:55",
}

KEEP = (
    f"scanning for {EN_SERVICE_UUID} on hci0",
    f"scanning for {EN_SERVICE_UUID.upper()} on hci0",
    "battery service 0000180f-0000-1000-8000-00805f9b34fb",
    "GET http://127.0.0.1:8080/v1/index.txt answered HTTP 200",
    "GET https://svc.example/version/v1/diagnosis-keys/country/DE/date failed (HTTP 503)",
    "https://keys.example.org/v1/exposureKeyExport-US/1593432000-1593446400-00001.zip",
    "https://svc.example/api/v2/publish?region=DE&since=2020-07-01T00:00:00Z&limit=100",
    "DE/date/2020-07-01/hour/5: ClientConnectorError Cannot connect to host 127.0.0.1:443",
    "connection failed (ClientConnectorError: Cannot connect to host [::1]:8443)",
    "HTTP/1.1 503 Service Unavailable",
    "X-Content-Type-Options: nosniff; Retry-After: 120",
    "the verification code has expired; ask for a new code",
    "database migrated to schema version 4",
    "refusing data file /var/lib/contact-agent/contact-agent.db-wal: it is a symbolic link",
    "BluetoothAccessDeniedError: org.bluez.Error.NotPermitted at 0x7f372bd9ed40",
    "org.bluez.Error.NotReady: Resource Not Ready",
    "org.freedesktop.DBus.Error.ServiceUnknown: The name org.bluez was not provided",
    "adapter /org/bluez/hci0 powered off; /org/bluez/hci1 present",
    "sqlite3.OperationalError: database is locked",
    "sqlite3.IntegrityError: UNIQUE constraint failed: sighting.rpi, sighting.time",
    'File "/usr/lib/python3.11/asyncio/base_events.py", line 1046, in create_connection',
    'File "/opt/contact-agent/.venv/lib/python3.11/site-packages/aiohttp/client_reqrep.py",'
    " line 987, in start",
    "aiohttp.client_exceptions.ClientConnectorCertificateError: Cannot connect to host",
    "ExposureNotificationService ExposureKeyExportIndex TemporaryExposureKeyExport",
    "aiohttp.web_exceptions.HTTPRequestEntityTooLarge: Request Entity Too Large",
    "bless.backends.bluezdbus.service.BlessGATTServiceBlueZDBus: HTTPRequestURITooLong",
    "contact-agent 0.9.3 (Python 3.11.2, BlueZ 5.66, bleak 0.21.1, dbus-fast 2.21.0)",
    "fetched 1234 keys in 12.5 s, 987654321 bytes, next at 2026-12-02T13:07:20+00:00",
    "2026-12-02 13:07:20,123 INFO agent.daemon.service: started",
    "rolling start interval 2690000, 144 intervals, transmission risk 2, RSSI -67 dBm",
    "tests/privacy/test_debug_logs.py::test_a_whole_run_at_debug_level_logs_no_identifier",
    "AgentService._wire_parts: RadioPort started at 12:34:56",
    "user-agent: contact-agent/0.9.3 aiohttp/3.9.1",
    "ValueError: invalid literal for int() with base 10: 'abc'",
)


def _outputs(text: str) -> dict[str, str]:
    return {"redact": redact(text), "server_text": server_text(text, 10 * len(text) + 100)}


@pytest.mark.parametrize("shape", sorted(ELIDE))
def test_every_identifier_shape_is_gone_from_both(shape: str) -> None:
    form = ELIDE[shape]
    line = f"ERROR agent.x: failed on {form} (attempt 2)"
    for name, out in _outputs(line).items():
        assert form not in out, (name, out)
        assert identifier_leaks(out.encode(), [KEY]) == [], (name, out)
        assert out.startswith("ERROR agent.x: failed on "), (name, out)
        assert out.endswith(" (attempt 2)"), (name, out)
        assert (REDACTED if name == "redact" else ELIDED) in out, (name, out)


@pytest.mark.parametrize("line", KEEP)
def test_every_ordinary_line_survives_both(line: str) -> None:
    assert _outputs(line) == {"redact": line, "server_text": line}


def test_the_bluez_device_path_keeps_its_adapter_part() -> None:
    path = "/org/bluez/hci0/dev_" + MAC.replace(":", "_")
    assert redact(path) == f"/org/bluez/hci0/dev_{REDACTED}"


def test_random_keys_look_random() -> None:
    """20,000 random 16-byte values (fixed seed): base64 and URL-safe base64, padded and
    not; the padded forms are all caught, the unpadded miss about 0.07 % (at most 0.2 % here)."""
    rng = random.Random(18)
    missed = {"padded": 0, "unpadded": 0}
    for _ in range(5000):
        raw = rng.randbytes(16)
        for text in (base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode()):
            missed["padded"] += not looks_random(text)
            missed["unpadded"] += not looks_random(text.rstrip("="))
    assert missed["padded"] == 0
    assert missed["unpadded"] <= 20


def test_spans_are_merged_and_sorted() -> None:
    text = f"{KEY.hex()}{KEY.hex(' ')} ok {MAC}"
    spans = identifier_spans(text)
    assert spans == [(0, 32 + 47), (len(text) - len(MAC), len(text))]


def test_a_long_line_of_hex_is_one_run() -> None:
    """A library may log a whole payload on one line; the detector scans it once (a
    pattern that restarted inside the run took minutes here)."""
    line = "payload " + "ab" * 100_000 + " end"
    assert redact(line) == f"payload {REDACTED} end"
    assert server_text(line, 1000) == f"payload {ELIDED} end"
