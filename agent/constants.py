"""Protocol constants and tuning numbers, each with its source or its arithmetic.

Sources: the Exposure Notification Cryptography Specification v1.2 ("crypto spec"), the
Exposure Notification Bluetooth Specification v1.2 ("Bluetooth spec"), Google's device-side
reference code (``google/exposure-notifications-internals``) and key server
(``google/exposure-notifications-server``). ``ARCHITECTURE.md`` maps each rule to its code.
"""

from __future__ import annotations

from typing import Final

# --- Cryptography (crypto spec v1.2) ------------------------------------------------------------
EN_INTERVAL_SECONDS: Final = 600
"""One ENIntervalNumber is ten minutes: ``ENIN(t) = floor(t / 600)``."""

TEK_ROLLING_PERIOD: Final = 144
"""Intervals per Temporary Exposure Key (24 h = 144 x 10 min); starts on UTC midnight."""

TEK_LENGTH: Final = 16
RPIK_INFO: Final = b"EN-RPIK"
AEMK_INFO: Final = b"EN-AEMK"
RPI_PADDING_PREFIX: Final = b"EN-RPI" + bytes(6)
"""First 12 bytes of PaddedData; the last four are the little-endian ENIN."""

RPI_LENGTH: Final = 16
AEM_LENGTH: Final = 4
METADATA_LENGTH: Final = 4
SERVICE_DATA_LENGTH: Final = RPI_LENGTH + AEM_LENGTH  # 20

# --- Metadata byte 0 (Bluetooth spec v1.2) ------------------------------------------------
METADATA_VERSION_1_0: Final = 0x40
METADATA_VERSION_1_1: Final = 0x50
METADATA_MAJOR_MASK: Final = 0xC0
METADATA_MAJOR_1: Final = 0x40
METADATA_CONFIDENCE_MASK: Final = 0x0C
METADATA_CONFIDENCE_SHIFT: Final = 2

# --- Bluetooth (Bluetooth spec v1.2) -----------------------------------------------------
EN_SERVICE_UUID16: Final = 0xFD6F
EN_SERVICE_UUID: Final = "0000fd6f-0000-1000-8000-00805f9b34fb"
LEGACY_ADV_MAX_BYTES: Final = 31
ADV_MIN_INTERVAL_MS: Final = 200
ADV_MAX_INTERVAL_MS: Final = 270
"""Spec recommendation 200-270 ms (HCI units 0x0140..0x01B0 of 0.625 ms)."""

ROTATION_MIN_SECONDS: Final = 10 * 60
ROTATION_MAX_SECONDS: Final = 20 * 60
"""Address+RPI rotate at a uniformly random time in (10 min, 20 min) (Bluetooth spec v1.2)."""

ROTATION_GAP_SECONDS: Final = 1.0
"""Silence between unregistering the old and registering the new advertisement (or the address
links two RPIs)."""

MAX_RPI_AIRTIME_SECONDS: Final = 20 * 60
"""Android drops sightings of one RPI more than 2 x 10 min after its first (Google's
ExposureMatchingTracer)."""

RSSI_MIN_DBM: Final = -127
RSSI_MAX_DBM: Final = 20
"""Raw RSSI outside this is 'not available' (127) or absurd: dropped (bad-input case 6)."""
CALIBRATED_RSSI_MIN: Final = -127
CALIBRATED_RSSI_MAX: Final = 126

# --- Matching (docs/matching.md) ---------------------------------------------------------
MATCH_TOLERANCE_INTERVALS: Final = 12
"""A sighting of RPI_j is valid iff ENIN(t) in [j - 12, j + 12]: +-2 h clock drift."""

REPLAY_WINDOW_SECONDS: Final = 2 * EN_INTERVAL_SECONDS
"""Sightings of one RPI more than 20 min after its first are dropped as replays."""

TX_POWER_MIN_DBM: Final = -50
TX_POWER_MAX_DBM: Final = 20
"""Decrypted TX power outside [-50, +20] dBm marks a tampered or bogus AEM."""

SCAN_INSTANCE_GAP_SECONDS: Final = 25.5
"""1.5 x (4 s scan + 13 s extension): sightings closer than this share a scan instance."""

EXPOSURE_WINDOW_MAX_SECONDS: Final = 30 * 60
SECONDS_SINCE_LAST_SCAN_CAP: Final = 300
SECONDS_SINCE_LAST_SCAN_UNKNOWN: Final = 120

# --- Retention (crypto spec v1.2) --------------------------------------------------------
RETENTION_DAYS: Final = 14
RETENTION_SECONDS: Final = RETENTION_DAYS * 86_400
KEY_MAX_AGE_DAYS: Final = 15
"""Diagnosis keys whose start is older than 15 days are invalid (Google's key server)."""

# --- Export format (export.proto) --------------------------------------------------------
EXPORT_HEADER: Final = b"EK Export v1    "
EXPORT_BIN_NAME: Final = "export.bin"
EXPORT_SIG_NAME: Final = "export.sig"
SIGNATURE_ALGORITHM_P256_SHA256: Final = "1.2.840.10045.4.3.2"

# --- Clock (docs/daemon.md, "Clock trust") -----------------------------------------------
CLOCK_STEP_THRESHOLD_SECONDS: Final = 2.0
"""Wall and monotonic clocks diverging by more than this between ticks is a clock step."""
CLOCK_PLAUSIBLE_JUMP_SECONDS: Final = 365 * 86_400
"""A synchronised time more than a year past the persisted lower bound is not trusted."""
MAX_TEKS_PER_START_INTERVAL: Final = 3
"""The key server accepts at most three keys sharing a start interval (same-day release)."""

# --- Radio supervision (agent/ble; docs/bad-input-coverage.md case 50) -----------------
SCAN_INSTANCE_SECONDS: Final = 60.0
"""Continuous scanning is cut into 60 s scan instances, each recorded as a ScanPeriod."""
DUTY_SCAN_JITTER_FRACTION: Final = 0.3
"""Android: next duty scan after 300 - rand[0, 90) s, i.e. period x (1 - U[0, 0.3))."""
BLUEZ_RECOVERY_SECONDS: Final = 10.0
"""Scanning and advertising are back within 10 s of bluetoothd or the adapter returning."""
SCANNER_SILENCE_SECONDS: Final = 300.0
"""A scan that reported nothing for this long is restarted; the limit doubles while
restarts do not help (an empty room), up to SCANNER_SILENCE_MAX_SECONDS."""
SCANNER_SILENCE_MAX_SECONDS: Final = 3600.0
RADIO_BACKOFF_INITIAL_SECONDS: Final = 0.5
RADIO_BACKOFF_MAX_SECONDS: Final = 60.0
"""Repeated radio failures back off 0.5 s, 1 s, 2 s ... up to a minute (+-20 % jitter)."""
DBUS_CALL_TIMEOUT_SECONDS: Final = 10.0
