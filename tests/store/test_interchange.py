"""The sightings interchange format: round trips and line-numbered errors."""

from __future__ import annotations

import io
import json

import pytest

from agent.errors import MalformedInputError
from agent.interchange import (
    SIGHTING_FIELDS,
    RecordWriter,
    guess_format,
    parse_sightings,
    sighting_record,
)
from agent.models import Sighting

RPI = "00112233445566778899aabbccddeeff"
GOOD = {"time": 1700000000.5, "rpi": RPI, "aem": "40080000", "rssi": -61}


def jsonl(*records: object) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records).encode()


def test_records_round_trip_in_both_formats() -> None:
    sightings = [
        Sighting(1700000000.0, bytes.fromhex(RPI), b"\x40\x08\x00\x00", -61),
        Sighting(1700000001.25, b"\xff" * 16, b"\x00\x01\x02\x03", -127),
    ]
    for fmt in ("jsonl", "csv"):
        out = io.StringIO()
        writer = RecordWriter(out, fmt, SIGHTING_FIELDS)
        for s in sightings:
            writer.write(sighting_record(s))
        assert writer.count == 2
        assert parse_sightings(out.getvalue().encode(), fmt) == sightings
    assert sighting_record(sightings[0]) == {
        "time": 1700000000,
        "rpi": RPI,
        "aem": "40080000",
        "rssi": -61,
    }


def test_extra_fields_blank_lines_bom_and_case_are_accepted() -> None:
    data = b"\xef\xbb\xbf" + jsonl({**GOOD, "note": "x", "rpi": RPI.upper()}, "", GOOD)
    assert len(parse_sightings(data, "jsonl")) == 2
    csv_data = b"RSSI,aem,extra,rpi,time\r\n-61,40080000,,%s,1700000000\r\n\r\n" % RPI.encode()
    [only] = parse_sightings(csv_data, "csv")
    assert (only.time, only.rssi) == (1700000000.0, -61)


BAD_JSONL = [
    ({**GOOD, "rpi": "zz" * 16}, "rpi is not hexadecimal"),
    ({**GOOD, "rpi": RPI[:-2]}, "rpi must be 32 hexadecimal digits, got 30"),
    ({**GOOD, "aem": "4008000"}, "aem must be 8 hexadecimal digits"),
    ({k: v for k, v in GOOD.items() if k != "aem"}, "missing field aem"),
    ({**GOOD, "rssi": "-61"}, "rssi must be an integer"),
    ({**GOOD, "rssi": -61.5}, "rssi must be an integer"),
    ({**GOOD, "rssi": 127}, "rssi must be in -127..126"),
    ({**GOOD, "time": True}, "time must be a number"),
    ({**GOOD, "time": "1700000000"}, "time must be a number"),
    ('{"time": NaN, "rpi": "' + RPI + '", "aem": "40080000", "rssi": -1}', "finite number"),
    ({**GOOD, "time": -5}, "time must be Unix seconds"),
    ({**GOOD, "rpi": 12}, "rpi must be a string"),
    ('{"time": 1700000000, "rpi": "' + RPI + '"', "bad JSON"),
    ("[1, 2, 3]", "not a JSON object"),
]


@pytest.mark.parametrize(("record", "message"), BAD_JSONL)
def test_bad_jsonl_line_is_reported_with_its_number(record: object, message: str) -> None:
    data = jsonl(GOOD, GOOD, "", record, GOOD)
    with pytest.raises(MalformedInputError) as info:
        parse_sightings(data, "jsonl")
    assert str(info.value).startswith("line 4: ")
    assert message in str(info.value)
    assert RPI not in str(info.value)  # never echo values


BAD_CSV = [
    (f"1700000000,{RPI[:-1]}g,40080000,-60", "rpi is not hexadecimal"),
    (f"1700000000,{RPI},40080000", "3 fields, the header has 4"),
    (f"1700000000,{RPI},40080000,-60,9", "5 fields, the header has 4"),
    (f"soon,{RPI},40080000,-60", "time must be a number"),
    (f"1700000000,{RPI},40080000,-60.0", "rssi must be an integer"),
    (f"1700000000,{RPI},,-60", "missing field aem"),
    (f'1700000000,"{RPI},40080000,-60', "bad CSV"),
]


@pytest.mark.parametrize(("line", "message"), BAD_CSV)
def test_bad_csv_line_is_reported_with_its_number(line: str, message: str) -> None:
    good = f"1700000000,{RPI},40080000,-60"
    data = f"time,rpi,aem,rssi\n{good}\n{line}\n{good}\n".encode()
    with pytest.raises(MalformedInputError) as info:
        parse_sightings(data, "csv")
    assert str(info.value).startswith("line 3: ")
    assert message in str(info.value)


def test_bad_csv_header_and_bad_utf8_and_count_of_bad_lines() -> None:
    with pytest.raises(MalformedInputError, match=r"^line 1: bad CSV header: header lacks rssi"):
        parse_sightings(b"time,rpi,aem\n1,2,3\n", "csv")
    with pytest.raises(MalformedInputError, match=r"^line 2: not UTF-8 text"):
        parse_sightings(jsonl(GOOD) + b'{"time": "\xff"}\n', "jsonl")
    bad = {**GOOD, "rssi": "x"}
    with pytest.raises(MalformedInputError, match=r"^line 2: .* \(3 bad lines in all\)$"):
        parse_sightings(jsonl(GOOD, bad, bad, GOOD, bad), "jsonl")
    with pytest.raises(MalformedInputError, match="format must be one of"):
        parse_sightings(b"", "xml")


def test_format_guess() -> None:
    assert guess_format("log.CSV", b"{") == "csv"
    assert guess_format("log.jsonl", b"time") == "jsonl"
    assert guess_format("log.txt", b"  \n{") == "jsonl"
    assert guess_format("log.txt", b"time,rpi") == "csv"
