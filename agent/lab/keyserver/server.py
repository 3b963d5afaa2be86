"""The local test key server: verification server + key server + export hosting, in aiohttp.

For tests, the demo and field kits: binds 127.0.0.1 by default, signs exports with its
own P-256 key and records the last requests it got (``requests``, bounded) so that tests
can assert what was - and was not - sent. ``fail_next`` injects faults (HTTP errors, or
a dropped connection after the request was processed) into the next request of one path.

It answers as the real servers do (shapes, status and error codes from
google/exposure-notifications-server ``pkg/api/v1/exposure_types.go``,
``internal/publish/publish.go``, ``internal/jsonutil/unmarshal.go`` and
google/exposure-notifications-verification-server ``pkg/api/api.go``; see
:mod:`agent.lab.keyserver.publish`): a publish retried after its answer was lost gets
``missing_revision_token`` as from the real server, since the keys are already there.
Verification attempts are throttled per client and in total (HTTP 429 with
``Retry-After``), and a client's valid code is burnt after a few wrong guesses.

Routes (``docs/report.md``):
    POST /api/verify, /api/certificate   device API (X-API-Key), Google verification protocol
    POST /api/issue                      admin API (X-API-Key = the admin key): new code
    POST /v1/publish                     Google key-server publish, HMAC checked
    GET  /exports/index.txt, /exports/{name}.zip   Google export layout
    GET  /version/v1/diagnosis-keys/country/{cc}/date[/{day}[/hour[/{h}]]]   CWA layout
    GET  /public-key.pem                 the export-signing public key
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.utils import formatdate
from pathlib import Path

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import ec

from agent.clock import Clock, SystemClock, en_interval_number
from agent.export import generate_signing_key, load_signing_key, private_key_pem, public_key_pem
from agent.lab.keyserver.exports import ExportPublisher
from agent.lab.keyserver.publish import (
    BAD_REQUEST,
    INVALID_REVISION_TOKEN,
    MISSING_REVISION_TOKEN,
    PARTIAL_FAILURE,
    UNKNOWN_HEALTH_AUTHORITY,
    apply_certificate,
    check_hmac,
    onset_interval,
    parse_publish,
    transform_keys,
)
from agent.lab.keyserver.refusal import ApiRefusal
from agent.lab.keyserver.throttle import TokenBuckets, WrongGuesses, retry_after
from agent.lab.keyserver.verification import (
    CODE_TTL_SECONDS,
    VerificationAuthority,
    symptom_onset_interval,
)
from agent.report.padding import padded_json

_LOGGER = logging.getLogger(__name__)

RESPONSE_BYTES = 2048
"""Every JSON answer is padded to this size, real or chaff, success or refusal (traffic
analysis)."""
MAX_BODY_BYTES = 64 * 1024
DEFAULT_HEALTH_AUTHORITY_ID = "contact-agent-test"
DEFAULT_REGION = "ZZ"
DEFAULT_KEY_ID = "test"
DEFAULT_KEY_VERSION = "v1"
SIGNING_KEY_FILE = "export-signing-key.pem"
VERIFICATION_KEY_FILE = "verification-key.pem"
PUBLIC_KEY_FILE = "export-public-key.pem"
API_KEY_FILE = "device-api-key"
"""The generated device API key, 0600 in the data directory."""

REQUEST_LOG_LIMIT = 256
"""Requests kept in ``requests`` (the oldest are dropped)."""
REQUEST_LOG_BODY_BYTES = 16 * 1024
"""Bytes of each body kept in the log."""

CLIENT_ATTEMPTS = 10
"""Verification attempts (``/api/verify`` and ``/api/certificate``) a client may make at
once; then one more every ``CLIENT_REFILL_SECONDS``."""
CLIENT_REFILL_SECONDS = 6.0
SERVER_ATTEMPTS = 100
"""Verification attempts of all clients together at once; then ``SERVER_RATE`` a second."""
SERVER_RATE = 5.0
WRONG_GUESSES_BEFORE_BURN = 3
"""After this many wrong codes from a client (within an hour), a valid code it presents
is used up without a token."""
WRONG_GUESS_WINDOW_SECONDS = 3600.0

VERIFY_FIELDS = frozenset({"code", "accept", "nonce", "padding"})
CERTIFICATE_FIELDS = frozenset({"token", "ekeyhmac", "padding"})
ISSUE_FIELDS = frozenset(
    {"testType", "symptomDate", "testDate", "tzOffset", "phone", "uuid", "padding"}
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the server received it."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes
    chaff: bool

    def json(self) -> dict[str, object]:
        value = json.loads(self.body)
        return value if isinstance(value, dict) else {}


@dataclass
class _Fault:
    status: int
    """HTTP status to answer with; 0 drops the connection without an answer."""
    after_processing: bool
    retry_after: str = ""
    """``Retry-After`` header of the answer (none when empty)."""


def _json_response(body: Mapping[str, object], status: int = 200) -> web.Response:
    return web.Response(
        body=padded_json(body, RESPONSE_BYTES), status=status, content_type="application/json"
    )


def _refusal_response(refusal: ApiRefusal, *, key_server: bool) -> web.Response:
    """The key server names the error ``code``, the verification server ``errorCode``."""
    name = "code" if key_server else "errorCode"
    response = _json_response({"error": refusal.message, name: refusal.code}, refusal.status)
    if refusal.retry_after:
        response.headers["Retry-After"] = refusal.retry_after
    return response


def _load_or_create_api_key(path: Path | None) -> tuple[str, bool]:
    """The device API key stored at ``path`` (0600), or a new one; True when new."""
    if path is not None and path.exists():
        return path.read_text(encoding="ascii").strip(), False
    key = secrets.token_urlsafe(24)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as stream:
            stream.write(key + "\n")
    return key, True


def _load_or_create_key(path: Path | None) -> ec.EllipticCurvePrivateKey:
    """The key stored at ``path`` (0600), or a fresh one (written there when given)."""
    if path is not None and path.exists():
        return load_signing_key(path.read_bytes())
    key = generate_signing_key()
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as stream:
            stream.write(private_key_pem(key))
    return key


class LocalKeyServer:
    """Verification server, key server and export host in one aiohttp app.

    Use ``url = await server.start()`` ... ``await server.stop()``, or the CLI
    ``contact-agent keyserver``.
    """

    __test__ = False  # not a pytest test class despite living next to tests

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        clock: Clock | None = None,
        api_key: str | None = None,
        admin_key: str | None = None,
        health_authority_id: str = DEFAULT_HEALTH_AUTHORITY_ID,
        region: str = DEFAULT_REGION,
        key_id: str = DEFAULT_KEY_ID,
        key_version: str = DEFAULT_KEY_VERSION,
        embargo: bool = True,
        fake_keys_per_key: int = 0,
        data_dir: Path | None = None,
        code_ttl: float | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.clock: Clock = clock or SystemClock()
        self.api_key_created = False
        """True when the device API key was generated by this start (print it once)."""
        self.api_key_kept_in: Path | None = None
        """The file the key was read from when an earlier start generated it (not shown)."""
        if api_key is None:
            path = data_dir / API_KEY_FILE if data_dir else None
            api_key, self.api_key_created = _load_or_create_api_key(path)
            self.api_key_kept_in = None if self.api_key_created else path
        self.api_key = api_key
        """The device ``X-API-Key``; given "" the server checks none (tests)."""
        self.admin_key = admin_key or secrets.token_urlsafe(18)
        self.health_authority_id = health_authority_id
        self.data_dir = data_dir
        signing_key = _load_or_create_key(data_dir / SIGNING_KEY_FILE if data_dir else None)
        verification_key = _load_or_create_key(
            data_dir / VERIFICATION_KEY_FILE if data_dir else None
        )
        self.verification = VerificationAuthority(
            self.clock, key=verification_key, code_ttl=code_ttl or CODE_TTL_SECONDS
        )
        self.exports = ExportPublisher(
            signing_key,
            self.clock,
            key_id=key_id,
            key_version=key_version,
            region=region,
            embargo=embargo,
            fake_keys_per_key=fake_keys_per_key,
            directory=data_dir,
        )
        self.public_key_pem: bytes = public_key_pem(signing_key)
        self.requests: list[RecordedRequest] = []
        self._faults: dict[str, deque[_Fault]] = {}
        self._keys_published: set[bytes] = set()
        self._revisions: dict[str, frozenset[bytes]] = {}
        self._client_attempts = TokenBuckets(CLIENT_ATTEMPTS, 1.0 / CLIENT_REFILL_SECONDS)
        self._server_attempts = TokenBuckets(SERVER_ATTEMPTS, SERVER_RATE)
        self._wrong_guesses = WrongGuesses(WRONG_GUESS_WINDOW_SECONDS)
        self._runner: web.AppRunner | None = None
        self.url = ""

    # --- lifecycle ---------------------------------------------------------------------

    async def start(self) -> str:
        """Bind and serve; returns the base URL (``http://127.0.0.1:PORT``)."""
        app = web.Application(middlewares=[self._middleware], client_max_size=MAX_BODY_BYTES)
        app.on_response_prepare.append(self._date_header)
        app.router.add_post("/api/verify", self._verify)
        app.router.add_post("/api/certificate", self._certificate)
        app.router.add_post("/api/issue", self._issue)
        app.router.add_post("/v1/publish", self._publish)
        app.router.add_get("/exports/index.txt", self._index)
        app.router.add_get("/exports/{name}", self._export_file)
        cwa = "/version/v1/diagnosis-keys/country/{cc}/date"
        app.router.add_get(cwa, self._cwa_days)
        app.router.add_get(cwa + "/{day}", self._cwa_day)
        app.router.add_get(cwa + "/{day}/hour", self._cwa_hours)
        app.router.add_get(cwa + "/{day}/hour/{hour}", self._cwa_hour)
        app.router.add_get("/public-key.pem", self._public_key)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        port = self._runner.addresses[0][1]  # the real port when asked for port 0
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.url = f"http://{host}:{port}"
        return self.url

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> LocalKeyServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- what clients and tests need ---------------------------------------------------

    @property
    def verification_url(self) -> str:
        return self.url

    @property
    def publish_url(self) -> str:
        return f"{self.url}/v1/publish"

    @property
    def index_url(self) -> str:
        return f"{self.url}/exports/index.txt"

    @property
    def key_id(self) -> str:
        return self.exports.key_id

    @property
    def key_version(self) -> str:
        return self.exports.key_version

    def issue_code(self, test_type: str = "confirmed", *, symptom_date: str | None = None) -> str:
        """A fresh 10-digit single-use code."""
        onset = symptom_onset_interval(symptom_date) if symptom_date else None
        return self.verification.issue_code(test_type, symptom_onset_interval=onset).code

    def write_public_key(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.public_key_pem)
        return path

    def fail_next(
        self,
        path: str,
        status: int = 500,
        *,
        after_processing: bool = False,
        times: int = 1,
        retry_after: str = "",
    ) -> None:
        """Make the next ``times`` requests to ``path`` fail with ``status`` (0: drop the
        connection), with a ``Retry-After`` header if given.

        With ``after_processing`` the request takes effect first and only the answer is
        lost: the "outcome unknown" case.
        """
        for _ in range(times):
            fault = _Fault(status, after_processing, retry_after)
            self._faults.setdefault(path, deque()).append(fault)

    def requests_to(self, path: str, *, chaff: bool | None = None) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path and (chaff is None or r.chaff == chaff)]

    def config_toml(self, public_key_file: Path, *, show_api_key: bool = True) -> str:
        """A config snippet that points an agent at this server."""
        return (
            "[report]\n"
            f'verification_url = "{self.verification_url}"\n'
            f'publish_url = "{self.publish_url}"\n'
            f'api_key = "{self.api_key if show_api_key else ""}"\n'
            f'health_authority_id = "{self.health_authority_id}"\n'
            "[keys]\n"
            f'sources = [{{ kind = "index", url = "{self.index_url}" }}]\n'
            f'public_keys = [{{ id = "{self.key_id}", version = "{self.key_version}", '
            f'pem_file = "{public_key_file}" }}]\n'
        )

    # --- middleware: record, fault injection, refusals ----------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            body = await request.read() if request.can_read_body else b""
        except web.HTTPRequestEntityTooLarge:
            body = b""
        chaff = "X-Chaff" in request.headers
        self.requests.append(
            RecordedRequest(
                request.method,
                request.path,
                dict(request.headers),
                body[:REQUEST_LOG_BODY_BYTES],
                chaff,
            )
        )
        if len(self.requests) > REQUEST_LOG_LIMIT:
            del self.requests[: len(self.requests) - REQUEST_LOG_LIMIT]
        queue = self._faults.get(request.path)
        fault = queue.popleft() if queue else None
        if fault is not None and not fault.after_processing:
            return self._fault_response(request, fault)
        try:
            response = await handler(request)
        except ApiRefusal as refusal:
            response = _refusal_response(refusal, key_server=request.path == "/v1/publish")
        if fault is not None:
            return self._fault_response(request, fault)
        return response

    async def _date_header(self, request: web.Request, response: web.StreamResponse) -> None:
        """``Date`` from the server's clock: agents on the same (simulated) time line agree."""
        response.headers["Date"] = formatdate(self.clock.wall(), usegmt=True)

    def _fault_response(self, request: web.Request, fault: _Fault) -> web.Response:
        if fault.status == 0 and request.transport is not None:
            request.transport.close()
        response = _json_response({"error": "injected fault", "errorCode": ""}, fault.status or 500)
        if fault.retry_after:
            response.headers["Retry-After"] = fault.retry_after
        return response

    def _authorize(self, request: web.Request, key: str) -> None:
        if key and not secrets.compare_digest(request.headers.get("X-API-Key", ""), key):
            raise ApiRefusal(401, "unauthorized", "missing or wrong X-API-Key")

    @staticmethod
    async def _body(
        request: web.Request, fields: frozenset[str] | None = None, code: str = "unparsable_request"
    ) -> dict[str, object]:
        """The JSON object of a request, decoded as the real servers do: Content-Type
        ``application/json`` (else 415), one object, and no field outside ``fields``."""
        if not request.headers.get("Content-Type", "").startswith("application/json"):
            raise ApiRefusal(415, code, "content-type is not application/json")
        try:
            value = json.loads(await request.read())
        except (ValueError, UnicodeDecodeError, RecursionError):
            raise ApiRefusal(400, code, "malformed json") from None
        if not isinstance(value, dict):
            raise ApiRefusal(400, code, "body must be a JSON object")
        if fields is not None:
            unknown = sorted(set(value) - fields)
            if unknown:
                raise ApiRefusal(400, code, f'unknown field "{unknown[0][:40]}"')
        return value

    def _throttle(self, request: web.Request) -> None:
        """429 with ``Retry-After`` when this client, or all together, try too often."""
        now = self.clock.monotonic()
        client = request.remote or "?"
        wait = self._client_attempts.take(client, now) or self._server_attempts.take("*", now)
        if wait:
            raise ApiRefusal(
                429, "", "too many verification attempts; try again later", retry_after(wait)
            )

    # --- verification server -----------------------------------------------------------

    async def _verify(self, request: web.Request) -> web.Response:
        self._authorize(request, self.api_key)
        if "X-Chaff" in request.headers:
            return _json_response({})
        self._throttle(request)
        body = await self._body(request, VERIFY_FIELDS)
        client = request.remote or "?"
        now = self.clock.monotonic()
        burn = self._wrong_guesses.count(client, now) >= WRONG_GUESSES_BEFORE_BURN
        try:
            answer = self.verification.verify(body.get("code"), body.get("accept"), burn=burn)
        except ApiRefusal as refusal:
            if refusal.code in ("code_not_found", "code_invalid", "code_expired"):
                self._wrong_guesses.add(client, now)
            raise
        return _json_response(answer)

    async def _certificate(self, request: web.Request) -> web.Response:
        self._authorize(request, self.api_key)
        if "X-Chaff" in request.headers:
            return _json_response({})
        self._throttle(request)
        body = await self._body(request, CERTIFICATE_FIELDS)
        cert = self.verification.certificate(body.get("token"), body.get("ekeyhmac"))
        return _json_response({"certificate": cert})

    async def _issue(self, request: web.Request) -> web.Response:
        self._authorize(request, self.admin_key)
        body = await self._body(request, ISSUE_FIELDS)
        test_type = body.get("testType", "confirmed")
        day = body.get("symptomDate")
        onset = symptom_onset_interval(day) if isinstance(day, str) and day else None
        issued = self.verification.issue_code(str(test_type), symptom_onset_interval=onset)
        return _json_response({"code": issued.code, "expiresAtTimestamp": int(issued.expires_at)})

    # --- key server --------------------------------------------------------------------

    async def _publish(self, request: web.Request) -> web.Response:
        if "X-Chaff" in request.headers:
            return _json_response({})
        parsed = parse_publish(await self._body(request, code=BAD_REQUEST))
        if parsed.health_authority_id != self.health_authority_id:
            raise ApiRefusal(401, UNKNOWN_HEALTH_AUTHORITY, "healthAuthorityID is not known here")
        certificate = self.verification.check_certificate(parsed.certificate)
        check_hmac(parsed, certificate)
        now_interval = en_interval_number(self.clock.wall())
        transformed = transform_keys(parsed, now_interval)
        existing = {k.key_data for k in transformed.keys} & self._keys_published
        if existing:
            if not parsed.revision_token:
                raise ApiRefusal(
                    400, MISSING_REVISION_TOKEN, "no revision token, but sent existing keys"
                )
            if not existing <= self._revisions.get(parsed.revision_token, frozenset()):
                raise ApiRefusal(400, INVALID_REVISION_TOKEN, "revision token is invalid")
        onset = onset_interval(parsed, certificate, now_interval)
        new = [k for k in transformed.keys if k.key_data not in existing]
        keys = apply_certificate(new, certificate, onset)
        if keys:
            self.exports.add(keys)
            self.exports.release()
        self._keys_published |= {k.key_data for k in keys}
        token = base64.b64encode(secrets.token_bytes(32)).decode("ascii")
        self._revisions[token] = frozenset(
            self._revisions.get(parsed.revision_token, frozenset())
            | {k.key_data for k in transformed.keys}
        )
        answer: dict[str, object] = {"revisionToken": token, "insertedExposures": len(keys)}
        if transformed.errors:
            answer["code"] = PARTIAL_FAILURE
            answer["error"] = "; ".join(transformed.errors)
        return _json_response(answer)

    # --- downloads -----------------------------------------------------------------------

    async def _index(self, request: web.Request) -> web.Response:
        self.exports.release()  # keys whose embargo ended since the last publish
        return web.Response(text=self.exports.index_text(), content_type="text/plain")

    async def _export_file(self, request: web.Request) -> web.Response:
        data = self.exports.batch_file(request.match_info["name"])
        if data is None:
            raise web.HTTPNotFound()
        return web.Response(body=data, content_type="application/zip")

    async def _cwa_days(self, request: web.Request) -> web.Response:
        self.exports.release()
        return web.json_response(self.exports.cwa_days())

    async def _cwa_day(self, request: web.Request) -> web.Response:
        return self._zip_or_404(self.exports.cwa_file(request.match_info["day"]))

    async def _cwa_hours(self, request: web.Request) -> web.Response:
        return web.json_response(self.exports.cwa_hours(request.match_info["day"]))

    async def _cwa_hour(self, request: web.Request) -> web.Response:
        try:
            hour = int(request.match_info["hour"])
        except ValueError:
            raise web.HTTPNotFound() from None
        return self._zip_or_404(self.exports.cwa_file(request.match_info["day"], hour))

    @staticmethod
    def _zip_or_404(data: bytes | None) -> web.Response:
        if data is None:
            raise web.HTTPNotFound()
        return web.Response(body=data, content_type="application/zip")

    async def _public_key(self, request: web.Request) -> web.Response:
        return web.Response(body=self.public_key_pem, content_type="application/x-pem-file")
