"""The test key server over real HTTP on 127.0.0.1: codes, certificates, publish, exports."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
from pathlib import Path

import aiohttp
import pytest

from agent.clock import FakeClock
from agent.export import PublicKeyRing, read_verified_export
from agent.lab.keyserver import LocalKeyServer
from agent.lab.keyserver.verification import CERTIFICATE_INVALID
from agent.models import ReportType, TemporaryExposureKey
from agent.report.wire import key_to_json
from tests.report.conftest import (
    API_KEY,
    TODAY,
    certificate_for,
    day_keys,
    post,
    publish_body,
    served_exports,
)

ZERO_KEY = base64.b64encode(bytes(16)).decode()


def key_set(keys: list[TemporaryExposureKey]) -> set[tuple[bytes, int, int]]:
    return {(k.key_data, k.rolling_start_interval_number, k.rolling_period) for k in keys}


# --- verification codes -------------------------------------------------------------------


async def test_codes_are_ten_digits_single_use_and_expire(
    server: LocalKeyServer, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    url = f"{server.url}/api/verify"
    code = server.issue_code()
    assert len(code) == 10 and code.isdigit()
    status, answer = await post(http, url, {"code": code})
    assert status == 200 and answer["testtype"] == "confirmed"
    assert isinstance(answer["token"], str) and answer["token"].count(".") == 2
    status, answer = await post(http, url, {"code": code})
    assert (status, answer["errorCode"]) == (400, "code_invalid")
    status, answer = await post(http, url, {"code": "0000000000"})
    assert (status, answer["errorCode"]) == (400, "code_not_found")
    late = server.issue_code()
    clock.advance(3601)
    status, answer = await post(http, url, {"code": late})
    assert (status, answer["errorCode"]) == (400, "code_expired")


async def test_api_key_and_test_type_are_enforced(
    server: LocalKeyServer, http: aiohttp.ClientSession
) -> None:
    url = f"{server.url}/api/verify"
    code = server.issue_code("likely")
    status, _ = await post(http, url, {"code": code}, api_key="wrong")
    assert status == 401
    status, answer = await post(http, url, {"code": code, "accept": ["confirmed"]})
    assert (status, answer["errorCode"]) == (412, "unsupported_test_type")
    # a refused attempt did not use the code up
    status, answer = await post(http, url, {"code": code, "accept": ["confirmed", "likely"]})
    assert status == 200 and answer["testtype"] == "likely"


async def test_admin_endpoint_issues_codes_only_with_the_admin_key(
    server: LocalKeyServer, http: aiohttp.ClientSession
) -> None:
    url = f"{server.url}/api/issue"
    status, _ = await post(http, url, {"testType": "confirmed"}, api_key=API_KEY)
    assert status == 401
    status, answer = await post(http, url, {"testType": "confirmed"}, api_key=server.admin_key)
    assert status == 200
    status, _ = await post(http, f"{server.url}/api/verify", {"code": answer["code"]})
    assert status == 200


async def test_certificate_needs_a_fresh_token_and_a_32_byte_hmac(
    server: LocalKeyServer, http: aiohttp.ClientSession
) -> None:
    _, answer = await post(http, f"{server.url}/api/verify", {"code": server.issue_code()})
    token = answer["token"]
    url = f"{server.url}/api/certificate"
    status, answer = await post(http, url, {"token": token, "ekeyhmac": "AAAA"})
    assert (status, answer["errorCode"]) == (400, "hmac_invalid")
    mac = base64.b64encode(bytes(32)).decode()
    status, answer = await post(http, url, {"token": token + "x", "ekeyhmac": mac})
    assert (status, answer["errorCode"]) == (400, "token_invalid")
    status, answer = await post(http, url, {"token": token, "ekeyhmac": mac})
    assert status == 200 and "certificate" in answer
    status, answer = await post(http, url, {"token": token, "ekeyhmac": mac})
    assert (status, answer["errorCode"]) == (400, "token_invalid")  # single use


# --- publish ------------------------------------------------------------------------------


async def test_publish_serves_exactly_the_keys_in_a_signed_export(
    server: LocalKeyServer, http: aiohttp.ClientSession
) -> None:
    keys = day_keys(14)
    secret = secrets.token_bytes(32)
    certificate = await certificate_for(http, server, keys, secret)
    status, answer = await post(
        http, server.publish_url, publish_body(keys, secret, certificate), api_key=""
    )
    assert status == 200, answer
    assert answer["insertedExposures"] == 14 and answer["revisionToken"]
    exports = await served_exports(http, server)
    assert len(exports) == 1
    assert key_set(exports[0]) == key_set(keys)
    assert {k.report_type for k in exports[0]} == {ReportType.CONFIRMED_TEST}


async def test_publish_with_a_mismatching_hmac_is_refused_and_publishes_nothing(
    server: LocalKeyServer, http: aiohttp.ClientSession
) -> None:
    keys = day_keys(3)
    secret = secrets.token_bytes(32)
    certificate = await certificate_for(http, server, keys, secret)
    other = [*keys[:2], TemporaryExposureKey(b"\x77" * 16, keys[2].rolling_start_interval_number)]
    status, answer = await post(
        http, server.publish_url, publish_body(other, secret, certificate), api_key=""
    )
    # the real key server: 401, one code for certificate and HMAC failures, named "code"
    assert (status, answer["code"]) == (401, CERTIFICATE_INVALID)
    assert "HMAC" in str(answer["error"]) and "errorCode" not in answer
    status, answer = await post(
        http,
        server.publish_url,
        publish_body(keys, secrets.token_bytes(32), certificate),
        api_key="",
    )
    assert (status, answer["code"]) == (401, CERTIFICATE_INVALID)
    assert await served_exports(http, server) == []


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda ks: day_keys(31), "1..30 keys"),
        (lambda ks: [], "1..30 keys"),
        (lambda ks: [TemporaryExposureKey(b"\x01" * 16, TODAY - 16 * 144)], "more than 15 days"),
        (lambda ks: [TemporaryExposureKey(b"\x01" * 16, TODAY + 144)], "in the future"),
        (
            lambda ks: [TemporaryExposureKey(bytes([i]) * 16, TODAY, 36) for i in range(4)],
            "more than 3 keys",
        ),
        (lambda ks: [ks[0], ks[0]], "twice"),
    ],
)
async def test_publish_validation_follows_the_server_rules(
    server: LocalKeyServer, http: aiohttp.ClientSession, mutate: object, reason: str
) -> None:
    assert callable(mutate)
    keys = mutate(day_keys(2))
    secret = secrets.token_bytes(32)
    # the certificate must match, so that only the key rule can be the reason
    mac_keys = keys or day_keys(1)
    certificate = await certificate_for(http, server, mac_keys, secret)
    status, answer = await post(
        http, server.publish_url, publish_body(keys, secret, certificate), api_key=""
    )
    assert status == 400 and reason in str(answer["error"]), answer
    assert await served_exports(http, server) == []


def raw_hmac(secret: bytes, entries: list[dict[str, object]]) -> str:
    """The TEK HMAC over keys exactly as posted (what the real key server recomputes)."""
    text = ",".join(
        sorted(
            f"{e['key']}.{e['rollingStartNumber']}.{e.get('rollingPeriod', 0)}"
            f".{e.get('transmissionRisk', 0)}"
            for e in entries
        )
    )
    return base64.b64encode(hmac.new(secret, text.encode(), hashlib.sha256).digest()).decode()


async def raw_certificate(
    http: aiohttp.ClientSession,
    server: LocalKeyServer,
    secret: bytes,
    entries: list[dict[str, object]],
) -> str:
    _, answer = await post(http, f"{server.url}/api/verify", {"code": server.issue_code()})
    status, answer = await post(
        http,
        f"{server.url}/api/certificate",
        {"token": answer["token"], "ekeyhmac": raw_hmac(secret, entries)},
    )
    assert status == 200, answer
    return str(answer["certificate"])


@pytest.mark.parametrize(
    ("entry", "reason"),
    [
        ({"key": "AAAA", "rollingStartNumber": TODAY, "rollingPeriod": 144}, "16 bytes"),
        (
            {
                "key": ZERO_KEY,
                "rollingStartNumber": TODAY,
                "rollingPeriod": 144,
                "transmissionRisk": 9,
            },
            "0..8",
        ),
        ({"key": ZERO_KEY, "rollingStartNumber": TODAY, "rollingPeriod": 145}, "1..144"),
        ({"key": ZERO_KEY, "rollingStartNumber": TODAY}, "interval count 0"),  # no default
    ],
)
async def test_a_request_whose_only_key_is_bad_is_a_bad_request(
    server: LocalKeyServer, http: aiohttp.ClientSession, entry: dict[str, object], reason: str
) -> None:
    secret = secrets.token_bytes(32)
    certificate = await raw_certificate(http, server, secret, [entry])
    body = {**publish_body([], secret, certificate), "temporaryExposureKeys": [entry]}
    status, answer = await post(http, server.publish_url, body, api_key="")
    assert (status, answer["code"]) == (400, "bad_request") and reason in str(answer["error"])
    assert await served_exports(http, server) == []


async def test_one_bad_key_is_a_partial_failure_and_the_rest_is_published(
    server: LocalKeyServer, http: aiohttp.ClientSession
) -> None:
    keys = day_keys(3)
    entries = [key_to_json(k) for k in keys]
    entries.append({"key": ZERO_KEY, "rollingStartNumber": TODAY - 16 * 144, "rollingPeriod": 144})
    secret = secrets.token_bytes(32)
    certificate = await raw_certificate(http, server, secret, entries)
    body = {**publish_body([], secret, certificate), "temporaryExposureKeys": entries}
    status, answer = await post(http, server.publish_url, body, api_key="")
    assert status == 200
    assert answer["code"] == "partial_failure" and "too old" in str(answer["error"])
    assert answer["insertedExposures"] == 3 and answer["revisionToken"]
    [export] = await served_exports(http, server)
    assert key_set(export) == key_set(keys)


async def test_key_age_counts_from_the_end_of_the_key(
    server: LocalKeyServer, http: aiohttp.ClientSession
) -> None:
    # starts before the 15-day cutoff but is valid for 144 intervals, so it is still
    # valid after it: the real server keeps it (start + period against the maximum age)
    entry = {"key": ZERO_KEY, "rollingStartNumber": TODAY - 15 * 144 + 60, "rollingPeriod": 144}
    secret = secrets.token_bytes(32)
    certificate = await raw_certificate(http, server, secret, [entry])
    body = {**publish_body([], secret, certificate), "temporaryExposureKeys": [entry]}
    status, answer = await post(http, server.publish_url, body, api_key="")
    assert status == 200 and answer["insertedExposures"] == 1, answer


async def test_url_safe_base64_and_missing_risk_are_accepted_like_the_real_server(
    server: LocalKeyServer, http: aiohttp.ClientSession
) -> None:
    key = bytes([0xFB, 0xFF] * 8)  # "+/" in standard base64, "-_" in URL-safe
    entry = {
        "key": base64.urlsafe_b64encode(key).decode().rstrip("="),
        "rollingStartNumber": TODAY - 144,
        "rollingPeriod": 144,
    }
    secret = secrets.token_bytes(32)
    certificate = await raw_certificate(http, server, secret, [entry])
    body = {
        **publish_body([], secret, certificate),
        "temporaryExposureKeys": [entry],
        "hmacKey": base64.urlsafe_b64encode(secret).decode(),
    }
    status, answer = await post(http, server.publish_url, body, api_key="")
    assert status == 200, answer
    [export] = await served_exports(http, server)
    assert [k.key_data for k in export] == [key]
    # no transmission risk sent: 2 for "confirmed"; no onset known: 4 days ago
    assert [k.transmission_risk_level for k in export] == [2]
    assert [k.days_since_onset_of_symptoms for k in export] == [3]


async def test_publish_rejects_bad_fields_with_clear_errors(
    server: LocalKeyServer, http: aiohttp.ClientSession
) -> None:
    keys = day_keys(1)
    secret = secrets.token_bytes(32)
    certificate = await certificate_for(http, server, keys, secret)
    body = publish_body(keys, secret, certificate)
    cases: list[tuple[dict[str, object], int, str, str]] = [
        ({"healthAuthorityID": "someone-else"}, 401, "unknown_health_authority_id", "health"),
        ({"verificationPayload": certificate[:-4] + "AAAA"}, 401, CERTIFICATE_INVALID, "cert"),
        ({"hmacKey": "%%%"}, 401, CERTIFICATE_INVALID, "HMAC"),
        ({"appPackageName": "x"}, 400, "bad_request", 'unknown field "appPackageName"'),
        ({"traveler": "no"}, 400, "bad_request", "traveler"),
    ]
    for change, status_wanted, code, reason in cases:
        status, answer = await post(http, server.publish_url, {**body, **change}, api_key="")
        assert (status, answer["code"]) == (status_wanted, code), (change, answer)
        assert reason in str(answer["error"]), (change, answer)
    async with http.post(
        server.publish_url, data=b"not json", headers={"Content-Type": "application/json"}
    ) as response:
        assert response.status == 400
    async with http.post(server.publish_url, data=json.dumps(body)) as response:  # text/plain
        assert response.status == 415
        assert json.loads(await response.read())["code"] == "bad_request"
    assert await served_exports(http, server) == []


async def test_revision_tokens_follow_the_real_server(
    server: LocalKeyServer, http: aiohttp.ClientSession
) -> None:
    keys = day_keys(2)
    secret = secrets.token_bytes(32)
    certificate = await certificate_for(http, server, keys, secret)
    status, first = await post(http, server.publish_url, publish_body(keys, secret, certificate))
    assert status == 200
    token = str(first["revisionToken"])
    assert base64.b64decode(token, validate=True)  # standard base64, like the real one
    more = [*keys, TemporaryExposureKey(b"\x55" * 16, TODAY - 5 * 144, 144)]
    for extra, wanted in (
        ({}, (400, "missing_revision_token")),
        ({"revisionToken": base64.b64encode(b"forged").decode()}, (400, "invalid_revision_token")),
    ):
        secret = secrets.token_bytes(32)
        certificate = await certificate_for(http, server, more, secret)
        status, answer = await post(
            http, server.publish_url, publish_body(more, secret, certificate, **extra)
        )
        assert (status, answer["code"]) == wanted, answer
    secret = secrets.token_bytes(32)
    certificate = await certificate_for(http, server, more, secret)
    status, answer = await post(
        http, server.publish_url, publish_body(more, secret, certificate, revisionToken=token)
    )
    assert status == 200 and answer["insertedExposures"] == 1, answer  # only the new key


async def test_an_expired_certificate_is_refused(
    server: LocalKeyServer, http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    keys = day_keys(1)
    secret = secrets.token_bytes(32)
    certificate = await certificate_for(http, server, keys, secret)
    clock.advance(16 * 60)
    status, answer = await post(
        http, server.publish_url, publish_body(keys, secret, certificate), api_key=""
    )
    assert (status, answer["code"]) == (401, CERTIFICATE_INVALID)


async def test_a_retry_with_the_same_certificate_inserts_nothing_twice(
    server: LocalKeyServer, http: aiohttp.ClientSession
) -> None:
    keys = day_keys(5)
    secret = secrets.token_bytes(32)
    certificate = await certificate_for(http, server, keys, secret)
    body = publish_body(keys, secret, certificate)
    first = await post(http, server.publish_url, body, api_key="")
    again = await post(http, server.publish_url, body, api_key="")
    assert first[0] == 200
    # as Google's key server: the keys are there, and no revision token came with them
    assert (again[0], again[1]["code"]) == (400, "missing_revision_token")
    with_token = await post(
        http, server.publish_url, {**body, "revisionToken": first[1]["revisionToken"]}, api_key=""
    )
    assert with_token[0] == 200 and with_token[1]["insertedExposures"] == 0
    exports = await served_exports(http, server)
    assert [len(e) for e in exports] == [5]


async def test_likely_codes_publish_clinical_diagnosis_with_days_since_onset(
    server: LocalKeyServer, http: aiohttp.ClientSession
) -> None:
    keys = day_keys(3)
    secret = secrets.token_bytes(32)
    code = server.issue_code("likely", symptom_date="2020-09-12")  # NOW is 2020-09-13
    certificate = await certificate_for(http, server, keys, secret, code=code, accept=["likely"])
    status, _ = await post(http, server.publish_url, publish_body(keys, secret, certificate))
    assert status == 200
    [export] = await served_exports(http, server)
    assert {k.report_type for k in export} == {ReportType.CONFIRMED_CLINICAL_DIAGNOSIS}
    assert sorted(k.days_since_onset_of_symptoms for k in export) == [-1, 0, 1]


# --- chaff, padding, embargo, fake keys, CWA layout, persistence -------------------------


async def test_chaff_is_answered_like_real_requests_and_changes_nothing(
    server: LocalKeyServer, http: aiohttp.ClientSession
) -> None:
    code = server.issue_code()
    sizes = set()
    for path in ("/api/verify", "/api/certificate", "/v1/publish"):
        async with http.post(
            f"{server.url}{path}",
            data=b'{"code": "%s"}' % code.encode(),
            headers={"X-API-Key": API_KEY, "X-Chaff": "1"},
        ) as response:
            assert response.status == 200
            sizes.add(len(await response.read()))
    async with http.post(
        f"{server.url}/api/verify",
        data=b'{"code": "%s"}' % code.encode(),
        headers={"X-API-Key": API_KEY, "Content-Type": "application/json"},
    ) as response:
        assert response.status == 200  # the decoy did not use the code up
        sizes.add(len(await response.read()))
    assert len(sizes) == 1  # every answer is padded to one size
    assert [r.chaff for r in server.requests] == [True, True, True, False]


async def test_still_valid_keys_wait_for_the_embargo(
    clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    async with LocalKeyServer(clock=clock, api_key=API_KEY, embargo=True) as server:
        current = TemporaryExposureKey(b"\x42" * 16, TODAY, 144)  # still valid until midnight
        keys = [*day_keys(2, last_start=TODAY - 144), current]
        secret = secrets.token_bytes(32)
        certificate = await certificate_for(http, server, keys, secret)
        status, _ = await post(http, server.publish_url, publish_body(keys, secret, certificate))
        assert status == 200
        exports = await served_exports(http, server)
        assert [key_set(e) for e in exports] == [key_set(keys[:2])]
        clock.advance(11 * 3600 + 2 * 3600 - 1)  # 01:59 the next day
        assert len(await served_exports(http, server)) == 1
        clock.advance(2)
        exports = await served_exports(http, server)
        assert [key_set(e) for e in exports] == [key_set(keys[:2]), key_set([current])]


async def test_fake_key_padding_hides_the_real_keys_among_random_ones(
    clock: FakeClock, http: aiohttp.ClientSession
) -> None:
    async with LocalKeyServer(
        clock=clock, api_key=API_KEY, embargo=False, fake_keys_per_key=4
    ) as server:
        keys = day_keys(3)
        secret = secrets.token_bytes(32)
        certificate = await certificate_for(http, server, keys, secret)
        await post(http, server.publish_url, publish_body(keys, secret, certificate))
        [export] = await served_exports(http, server)
        assert len(export) == 15
        assert key_set(keys) <= key_set(export)
        assert len({k.key_data for k in export}) == 15
        # the fakes copy the validity of a real key, so they cannot be told apart by it
        assert {k.rolling_start_interval_number for k in export} == {
            k.rolling_start_interval_number for k in keys
        }
        # sorted by key bytes in the file: upload order is gone
        assert [k.key_data for k in export] == sorted(k.key_data for k in export)


async def test_cwa_layout_lists_days_and_hours_with_signed_files(
    server: LocalKeyServer, http: aiohttp.ClientSession
) -> None:
    keys = day_keys(2)
    secret = secrets.token_bytes(32)
    certificate = await certificate_for(http, server, keys, secret)
    await post(http, server.publish_url, publish_body(keys, secret, certificate))
    root = f"{server.url}/version/v1/diagnosis-keys/country/ZZ/date"
    ring = PublicKeyRing.from_pem(server.public_key_pem, server.key_id, server.key_version)
    async with http.get(root) as response:
        assert await response.json() == ["2020-09-13"]
    async with http.get(f"{root}/2020-09-13") as response:
        export = read_verified_export(await response.read(), ring)
    assert key_set(list(export.keys)) == key_set(keys)
    async with http.get(f"{root}/2020-09-13/hour") as response:
        assert await response.json() == [13]
    async with http.get(f"{root}/2020-09-13/hour/13") as response:
        assert key_set(list(read_verified_export(await response.read(), ring).keys)) == key_set(
            keys
        )
    async with http.get(f"{root}/2020-09-14") as response:
        assert response.status == 404


async def test_a_server_with_a_data_dir_keeps_its_key_and_exports(
    clock: FakeClock, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    keys = day_keys(2)
    secret = secrets.token_bytes(32)
    async with LocalKeyServer(
        clock=clock, embargo=False, data_dir=tmp_path, api_key=API_KEY
    ) as first:
        certificate = await certificate_for(http, first, keys, secret)
        await post(http, first.publish_url, publish_body(keys, secret, certificate))
        pem = first.public_key_pem
        before = await served_exports(http, first)
    assert (tmp_path / "export-signing-key.pem").stat().st_mode & 0o777 == 0o600
    async with LocalKeyServer(
        clock=clock, embargo=False, data_dir=tmp_path, api_key=API_KEY
    ) as second:
        assert second.public_key_pem == pem
        assert await served_exports(http, second) == before
        assert [key_set(e) for e in before] == [key_set(keys)]


async def test_public_key_is_served_and_written(
    server: LocalKeyServer, http: aiohttp.ClientSession, tmp_path: Path
) -> None:
    async with http.get(f"{server.url}/public-key.pem") as response:
        assert await response.read() == server.public_key_pem
    path = server.write_public_key(tmp_path / "pk.pem")
    assert PublicKeyRing.from_pem(path.read_bytes())
    assert f'pem_file = "{path}"' in server.config_toml(path)


@pytest.mark.parametrize(
    ("test_type", "accept", "status"),
    [
        ("likely", None, 200),  # accept missing: every type (verification-server api.go)
        ("negative", [], 200),  # accept empty: the same
        ("user-report", None, 200),
        ("user-report", ["negative"], 412),  # user-report must be named
        ("user-report", ["confirmed", "user-report"], 200),
        ("negative", ["likely"], 412),
    ],
)
async def test_accept_follows_the_verification_servers_rules(
    server: LocalKeyServer,
    http: aiohttp.ClientSession,
    test_type: str,
    accept: list[str] | None,
    status: int,
) -> None:
    body: dict[str, object] = {"code": server.issue_code(test_type)}
    if accept is not None:
        body["accept"] = accept
    got, answer = await post(http, f"{server.url}/api/verify", body)
    assert got == status, answer
    if status == 200:
        assert answer["testtype"] == test_type
    else:
        assert answer["errorCode"] == "unsupported_test_type"


async def test_user_reports_are_exported_as_self_reports(
    server: LocalKeyServer, http: aiohttp.ClientSession
) -> None:
    keys = day_keys(2)
    secret = secrets.token_bytes(32)
    code = server.issue_code("user-report")
    certificate = await certificate_for(http, server, keys, secret, code=code, accept=None)
    status, _ = await post(http, server.publish_url, publish_body(keys, secret, certificate))
    assert status == 200
    [export] = await served_exports(http, server)
    assert {k.report_type for k in export} == {ReportType.SELF_REPORT}
