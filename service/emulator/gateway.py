"""The emulator's HTTP face: CCC's RPC gateway on `/`, fault injection and the inspection API.

The gateway does what Alibaba's POP gateway does before a request reaches CCC (routing on
(Version, Action), signature V1 or bearer authentication, parameter checks, throttling) and
answers with its error bodies; the contact centre itself is the Simulation behind it.

Under /_emulator/, unsigned, beside the listings of PRODUCT.md section 6:
- `GET|POST|DELETE /_emulator/faults`: list, set (one rule per action, "*" for the rest;
  a new rule for an action replaces its old one) or clear fault rules;
- `POST /_emulator/clock` `{"advance_s": N}`: jump the simulation clock forward, answering
  `{"now", "now_ms"}`, so tests in other processes can skip simulated time;
- `GET|DELETE /_emulator/stats`: per-action counters of every RPC request since the start or
  the last reset (the requests log keeps only the latest, so a long benchmark counts here);
- `POST /_emulator/quiesce`: wind the centre down, answering `{"quiesced_at"}`.

Beside CCC, `/` answers STS 2015-04-01's AssumeRole and AssumeRoleWithOIDC
(service/emulator/sts.py), so credential providers can take short-lived keys from here.
"""

from __future__ import annotations

import asyncio
import hmac
import random
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from email.utils import formatdate
from functools import cache
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qsl

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from service.ccc.catalog import API_VERSION, ActionSpec, WireError, load_catalog
from service.ccc.signing import BEARER_SIGNATURE_TYPE, SIGNATURE_METHOD, sign, string_to_sign
from service.emulator.config import EmulatorConfig, SimClock
from service.emulator.model import rfc3339
from service.emulator.sim import BusinessError
from service.emulator.sts import STS_ACTIONS, STS_VERSION, SecurityTokenService
from service.validation import field_errors

TIMESTAMP_WINDOW_S = 15 * 60  # FACTS.md section 3
NONCE_WINDOW_S = 31 * 60  # FACTS.md section 3: the gateway's nonce-dedupe window
# Bounds memory under a benchmark; past it the oldest nonces are forgotten early.
NONCE_STORE_MAX = 1_000_000
# The requests log keeps the latest requests only, at most this many and this many characters
# of their wire text, so neither a long run nor large requests can exhaust memory.
REQUESTS_LOG_MAX = 100_000
REQUESTS_LOG_MAX_CHARS = 64 * 1024 * 1024
# The largest request body accepted (aiohttp's default, made explicit): a larger one gets
# aiohttp's own 413. With 16-digit RamIds it holds some 36,000 `RamId.N` (docs/emulator.md).
CLIENT_MAX_SIZE = 1024**2
RETRY_AFTER_MS = 200  # hint sent with Throttling.User; the Tea SDK honours it
SECRET_PARAMS = frozenset({"Signature", "BearerToken", "SecurityToken", "OIDCToken"})
STS_MIN_DURATION_S = 900  # AssumeRole's and AssumeRoleWithOIDC's DurationSeconds
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
JSON_BODY_ERROR = "the body must be a JSON object"
# What the requests log and the stats record for a body over aiohttp's client_max_size: the
# HTTP server's own refusal (a plain-text 413), met before any CCC rule.
BODY_TOO_LARGE = "RequestEntityTooLarge"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Model = TypeVar("Model", bound=BaseModel)


class SimulationPort(Protocol):
    """What the gateway needs from the simulated contact centre."""

    def handle(self, action: str, params: dict[str, Any]) -> dict[str, Any]: ...
    def calls(self) -> list[dict[str, Any]]: ...
    def sms(self) -> list[dict[str, Any]]: ...
    def appraisals(self) -> list[dict[str, Any]]: ...
    def agents(self) -> list[dict[str, Any]]: ...
    def agent_state_history(self) -> list[dict[str, Any]]: ...
    def call_history(self) -> list[dict[str, Any]]: ...
    def quiesce(self) -> int: ...


class GatewayError(Exception):
    """A refusal by the POP gateway: the request never reached CCC."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


class FaultRule(BaseModel):
    """Faults for one action, or for every action without its own rule ("*")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: str = "*"
    latency_ms: float = Field(0, ge=0, le=600_000)
    throttle_rate: float = Field(0, ge=0, le=1)
    error_rate: float = Field(0, ge=0, le=1)
    drop_rate: float = Field(0, ge=0, le=1)

    @field_validator("action")
    @classmethod
    def _known_action(cls, action: str) -> str:
        if action != "*" and action not in load_catalog():
            raise ValueError(f"{action!r} is not a CCC {API_VERSION} action")
        return action


class ClockAdvance(BaseModel):
    model_config = ConfigDict(extra="forbid")

    advance_s: float = Field(ge=0)


@dataclass
class ActionStats:
    """One action's counters. `items` and `empty` count successful answers only; `bytes`
    counts every answer body, errors included."""

    calls: int = 0
    ok: int = 0
    empty: int = 0
    items: int = 0
    bytes: int = 0
    errors: dict[str, int] = field(default_factory=dict)  # by error code


class NonceStore:
    """SignatureNonces seen within the dedupe window, oldest first, pruned as time passes."""

    def __init__(
        self,
        window_s: float = NONCE_WINDOW_S,
        max_size: int = NONCE_STORE_MAX,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._window_s = window_s
        self._max_size = max_size
        self._monotonic = monotonic
        self._seen: OrderedDict[tuple[str, str], float] = OrderedDict()

    def use(self, key_id: str, nonce: str) -> bool:
        """Record the nonce; False if it was already used within the window."""
        now = self._monotonic()
        seen = self._seen
        while seen and next(iter(seen.values())) <= now - self._window_s:
            seen.popitem(last=False)
        if (key_id, nonce) in seen:
            return False
        if len(seen) >= self._max_size:
            seen.popitem(last=False)
        seen[key_id, nonce] = now
        return True


def new_request_id() -> str:
    return str(uuid.uuid4()).upper()


async def read_wire(request: web.Request) -> tuple[str, str]:
    """The raw query string and the form body's text ("" if none): what the signature covers."""
    form = ""
    if request.content_type == FORM_CONTENT_TYPE and request.body_exists:
        form = (await request.read()).decode("utf-8", errors="replace")
    return request.rel_url.raw_query_string, form


def wire_params(query: str, form: str) -> dict[str, str]:
    """Query string merged with a form body (the body wins), as the signature covers both."""
    params = dict(parse_qsl(query, keep_blank_values=True, errors="replace"))
    params.update(parse_qsl(form, keep_blank_values=True, errors="replace"))
    return params


LogEntry = tuple[str, str, str, str, int, int]  # at, query, form, code, items, bytes


class RequestsLog:
    """The latest RPC requests, oldest dropped first past either bound. Each is kept as its wire
    text in a plain tuple and parsed only when listed: a parsed ListAgentEvents of 100 RamIds
    took 17 KB, its text takes 3, and the collector does not track plain tuples."""

    def __init__(
        self, max_entries: int = REQUESTS_LOG_MAX, max_chars: int = REQUESTS_LOG_MAX_CHARS
    ) -> None:
        self._max_entries = max_entries
        self._max_chars = max_chars
        self._entries: deque[LogEntry] = deque()
        self._chars = 0

    def add(self, entry: LogEntry) -> None:
        self._entries.append(entry)
        self._chars += len(entry[1]) + len(entry[2])
        while len(self._entries) > self._max_entries or self._chars > self._max_chars:
            _, query, form, *_ = self._entries.popleft()
            self._chars -= len(query) + len(form)

    def listing(self) -> list[dict[str, Any]]:
        return [_logged(entry) for entry in self._entries]


def _logged(entry: LogEntry) -> dict[str, Any]:
    at, query, form, code, items, size = entry
    params = wire_params(query, form)
    return {
        "at": at,
        "action": params.get("Action"),
        "version": params.get("Version"),
        "params": {k: v for k, v in params.items() if k not in SECRET_PARAMS},
        "code": code,
        "items": items,
        "bytes": size,
    }


def _missing(name: str) -> GatewayError:
    return GatewayError(400, f"Missing{name}", f"{name} is mandatory for this action.")


def _parse_timestamp(raw: str | None) -> float:
    malformed = GatewayError(
        400,
        "InvalidTimeStamp.Format",
        f"Specified time stamp or date value is not well formatted: {raw!r}, "
        "expected YYYY-MM-DDThh:mm:ssZ (UTC).",
    )
    if raw is None:
        raise malformed
    try:
        moment = datetime.fromisoformat(raw)
    except ValueError:
        raise malformed from None
    if moment.tzinfo is None:
        raise malformed
    return moment.timestamp()


def parse_api_params(spec: ActionSpec, params: Mapping[str, str]) -> dict[str, Any]:
    try:
        return spec.from_wire(params)
    except WireError as error:
        if error.missing:
            raise _missing(error.param.partition(".")[0]) from None
        raise GatewayError(
            400,
            "InvalidParameter",
            f"Specified parameter {error.param} is not valid: {error.reason}.",
        ) from None


class Gateway:
    def __init__(self, config: EmulatorConfig, sim: SimulationPort, clock: SimClock) -> None:
        self._config = config
        self._sim = sim
        self._clock = clock
        self._catalog = load_catalog()
        self._host_id = f"ccc.{config.region}.aliyuncs.com"
        self._nonces = NonceStore()
        self._sts = SecurityTokenService(config.sts_duration_s)
        self._faults: dict[str, FaultRule] = {}
        self._rng = random.Random(config.seed)  # noqa: S311 - fault dice, not cryptography
        self._requests = RequestsLog()
        self._stats: dict[str, ActionStats] = {}
        self._stats_since = clock.now_ms()

    def routes(self) -> list[web.RouteDef]:
        listings: dict[str, Callable[[], list[dict[str, Any]]]] = {
            "/_emulator/requests": self._requests.listing,
            "/_emulator/calls": self._sim.calls,
            "/_emulator/sms": self._sim.sms,
            "/_emulator/appraisals": self._sim.appraisals,
            "/_emulator/agents": self._sim.agents,
            "/_emulator/history/agent-states": self._sim.agent_state_history,
            "/_emulator/history/calls": self._sim.call_history,
        }
        return [
            web.get("/", self.rpc, allow_head=False),
            web.post("/", self.rpc),
            *(web.get(path, _listing(source)) for path, source in listings.items()),
            web.get("/_emulator/faults", self.list_faults),
            web.post("/_emulator/faults", self.set_faults),
            web.delete("/_emulator/faults", self.clear_faults),
            web.post("/_emulator/clock", self.advance_clock),
            web.get("/_emulator/stats", self.get_stats),
            web.delete("/_emulator/stats", self.reset_stats),
            web.post("/_emulator/quiesce", self.quiesce),
        ]

    # --- RPC ---------------------------------------------------------------------------

    async def rpc(self, request: web.Request) -> web.StreamResponse:
        at = rfc3339(self._clock.now_ms())  # simulation time, like every inspection record
        try:
            query, form = await read_wire(request)
        except web.HTTPRequestEntityTooLarge as refused:
            query = request.rel_url.raw_query_string
            action = wire_params(query, "").get("Action")
            self._log((at, query, "", BODY_TOO_LARGE, 0, _body_size(refused)), action)
            raise
        params = wire_params(query, form)
        request_id = new_request_id()
        code, items = "OK", 0
        try:
            action, body, drop = await self._execute(request, params, request_id)
        except GatewayError as error:
            code = error.code
            response = self._gateway_error(error, request_id)
        except BusinessError as error:
            code = error.code
            response = _business_error(error, request_id)
        else:
            items = _item_count(action, body)
            response = web.json_response(body)
            if drop and request.transport is not None:
                # The action ran; losing the answer models a response lost on the way back.
                request.transport.abort()
        self._log((at, query, form, code, items, _body_size(response)), params.get("Action"))
        # The simulated contact centre's own time, as a real server's Date header gives its
        # own: clients that read it follow the simulation at any speed.
        response.headers["Date"] = formatdate(self._clock.now_ms() / 1000, usegmt=True)
        return response

    async def _execute(
        self, request: web.Request, params: dict[str, str], request_id: str
    ) -> tuple[str, dict[str, Any], bool]:
        """The action, its success body, and whether to drop it; raises GatewayError or
        BusinessError."""
        if params.get("Version") == STS_VERSION:
            return self._assume_role(request, params, request_id)
        spec = self._route(params)
        self._authenticate(request, params)
        api_params = parse_api_params(spec, params)
        fault = self._faults.get(spec.name) or self._faults.get("*")
        drop = False if fault is None else await self._inject(fault)
        result = self._sim.handle(spec.name, api_params)
        return spec.name, _success_body(spec, result, request_id), drop

    def _assume_role(
        self, request: web.Request, params: Mapping[str, str], request_id: str
    ) -> tuple[str, dict[str, Any], bool]:
        """STS: AssumeRole is signed like any RPC call; AssumeRoleWithOIDC is anonymous, its
        OIDC token the credential. Any well-formed role is granted."""
        action = params.get("Action")
        if action is None:
            raise _missing("Action")
        if action not in STS_ACTIONS:
            raise GatewayError(
                404,
                "InvalidAction.NotFound",
                f"Specified api {action!r} is not found in STS {STS_VERSION}.",
            )
        if action == "AssumeRole":
            self._authenticate(request, params)
        elif params.get("OIDCToken") not in self._config.oidc_tokens:
            raise GatewayError(
                401, "AuthenticationFail.OIDCToken.Invalid", "The OIDCToken is invalid."
            )
        role_arn = params.get("RoleArn") or ""
        if not role_arn:
            raise _missing("RoleArn")
        session = params.get("RoleSessionName") or ""
        if not session:
            raise _missing("RoleSessionName")
        duration = params.get("DurationSeconds", "3600")
        if not duration.isdigit() or int(duration) < STS_MIN_DURATION_S:
            raise GatewayError(
                400,
                "InvalidParameter.DurationSeconds",
                f"DurationSeconds must be at least {STS_MIN_DURATION_S}: {duration!r}.",
            )
        return (
            action,
            {"RequestId": request_id} | self._sts.issue(role_arn, session, int(duration)),
            False,
        )

    def _route(self, params: Mapping[str, str]) -> ActionSpec:
        version = params.get("Version")
        if version is None:
            raise _missing("Version")
        if version != API_VERSION:
            raise GatewayError(
                400,
                "InvalidVersion",
                f"Specified parameter Version {version!r} is not valid: "
                f"this endpoint serves CCC {API_VERSION}.",
            )
        action = params.get("Action")
        if action is None:
            raise _missing("Action")
        spec = self._catalog.actions.get(action)
        if spec is None:
            raise GatewayError(
                404,
                "InvalidAction.NotFound",
                f"Specified api {action!r} is not found in CCC {API_VERSION}, "
                "please check your url and method.",
            )
        return spec

    # --- authentication ----------------------------------------------------------------

    def _authenticate(self, request: web.Request, params: Mapping[str, str]) -> None:
        if params.get("SignatureType") == BEARER_SIGNATURE_TYPE:
            self._check_bearer(request, params)
            return
        self._check_timestamp(params)
        key_id, secret = self._check_key(params)
        if not params.get("Signature"):
            raise GatewayError(
                400,
                "IncompleteSignature",
                "The request signature does not conform to Aliyun standards.",
            )
        text = string_to_sign(request.method, dict(params))
        if not hmac.compare_digest(sign(text, secret).encode(), params["Signature"].encode()):
            raise GatewayError(
                400,
                "SignatureDoesNotMatch",
                "Specified signature is not matched with our calculation. "
                f"server string to sign is:{text}",
            )
        self._check_security_token(key_id, params)
        self._check_nonce(key_id, params)

    def _check_bearer(self, request: web.Request, params: Mapping[str, str]) -> None:
        token = params.get("BearerToken") or request.headers.get("x-acs-bearer-token")
        if token not in self._config.bearer_tokens:
            # Alibaba does not document the code for a bad CCC bearer token; this one follows
            # the gateway's Invalid<Credential> pattern.
            raise GatewayError(400, "InvalidBearerToken", "Specified bearer token is not valid.")

    def _check_timestamp(self, params: Mapping[str, str]) -> None:
        # Real wall time, not the simulation clock: clients sign with their own clocks.
        skew = abs(time.time() - _parse_timestamp(params.get("Timestamp")))
        if skew > TIMESTAMP_WINDOW_S:
            raise GatewayError(
                400,
                "InvalidTimeStamp.Expired",
                f"Specified time stamp or date value is expired: {params['Timestamp']} is "
                f"{skew:.0f} s away from the server time, more than {TIMESTAMP_WINDOW_S} s.",
            )

    def _check_key(self, params: Mapping[str, str]) -> tuple[str, str]:
        """(AccessKeyId, secret) once the signature method and the key are acceptable."""
        if params.get("SignatureMethod") != SIGNATURE_METHOD:
            raise GatewayError(
                400,
                "InvalidSignatureMethod",
                f"Specified signature method is not valid: use {SIGNATURE_METHOD}.",
            )
        key_id = params.get("AccessKeyId", "")
        secret = self._config.access_keys.get(key_id)
        if secret is None and (issued := self._sts.key(key_id)) is not None:
            secret = issued.secret
        if secret is None:
            raise GatewayError(
                400, "InvalidAccessKeyId.NotFound", f"Specified access key {key_id!r} is not found."
            )
        return key_id, secret

    def _check_security_token(self, key_id: str, params: Mapping[str, str]) -> None:
        issued = self._sts.key(key_id)
        expected = self._config.sts_tokens.get(key_id) if issued is None else issued.token
        if expected is None:
            return
        received = params.get("SecurityToken", "")
        if not hmac.compare_digest(expected.encode(), received.encode()):
            raise GatewayError(
                400,
                "InvalidSecurityToken.MismatchWithAccessKey",
                "Specified SecurityToken mismatch with the AccessKey.",
            )
        if issued is not None and self._sts.expired(issued):
            raise GatewayError(
                400, "InvalidSecurityToken.Expired", "Specified SecurityToken is expired."
            )

    def _check_nonce(self, key_id: str, params: Mapping[str, str]) -> None:
        nonce = params.get("SignatureNonce")
        if not nonce:
            raise _missing("SignatureNonce")
        if not self._nonces.use(key_id, nonce):
            raise GatewayError(
                400, "SignatureNonceUsed", f"Specified signature nonce {nonce!r} was used already."
            )

    # --- faults ------------------------------------------------------------------------

    async def _inject(self, fault: FaultRule) -> bool:
        """Apply latency, then refuse (throttle or 5xx) before acting; True means drop."""
        if fault.latency_ms > 0:
            await asyncio.sleep(fault.latency_ms / 1000)
        if self._roll(fault.throttle_rate):
            raise GatewayError(
                400,
                "Throttling.User",
                "Request was denied due to user flow control.",
                {"x-acs-retry-after": str(RETRY_AFTER_MS)},
            )
        if self._roll(fault.error_rate):
            if self._roll(0.5):
                raise GatewayError(
                    503,
                    "ServiceUnavailable",
                    "The request has failed due to a temporary failure of the server.",
                )
            raise GatewayError(
                500,
                "InternalError",
                "The request processing has failed due to some unknown error.",
            )
        return self._roll(fault.drop_rate)

    def _roll(self, rate: float) -> bool:
        return rate > 0 and self._rng.random() < rate

    async def list_faults(self, _request: web.Request) -> web.Response:
        return web.json_response([rule.model_dump() for rule in self._faults.values()])

    async def set_faults(self, request: web.Request) -> web.Response:
        rule = await _parse_body(request, FaultRule)
        if isinstance(rule, web.Response):
            return rule
        self._faults[rule.action] = rule
        return web.json_response(rule.model_dump())

    async def clear_faults(self, _request: web.Request) -> web.Response:
        self._faults.clear()
        return web.json_response([])

    # --- clock -------------------------------------------------------------------------

    async def advance_clock(self, request: web.Request) -> web.Response:
        """Move the simulation clock forward, so tests in other processes can skip time."""
        body = await _parse_body(request, ClockAdvance)
        if isinstance(body, web.Response):
            return body
        self._clock.advance(body.advance_s)
        now_ms = self._clock.now_ms()
        return web.json_response({"now": rfc3339(now_ms), "now_ms": now_ms})

    # --- quiesce and stats -------------------------------------------------------------

    async def quiesce(self, _request: web.Request) -> web.Response:
        return web.json_response({"quiesced_at": self._sim.quiesce()})

    async def get_stats(self, _request: web.Request) -> web.Response:
        actions = {name: asdict(stats) for name, stats in sorted(self._stats.items())}
        return web.json_response({"since": self._stats_since, "actions": actions})

    async def reset_stats(self, request: web.Request) -> web.Response:
        self._stats.clear()
        self._stats_since = self._clock.now_ms()
        return await self.get_stats(request)

    # --- responses, log and stats ------------------------------------------------------

    def _gateway_error(self, error: GatewayError, request_id: str) -> web.Response:
        body = {
            "RequestId": request_id,
            "HostId": self._host_id,
            "Code": error.code,
            "Message": error.message,
            "Recommend": (
                f"https://api.aliyun.com/troubleshoot?q={error.code}"
                f"&product=CCC&requestId={request_id}"
            ),
        }
        return web.json_response(body, status=error.status, headers=error.headers)

    def _log(self, entry: LogEntry, action: str | None) -> None:
        """Log the request and count it against its action: "" if it names no CCC action, so
        made-up names cannot grow the counters without bound."""
        self._requests.add(entry)
        *_, code, items, size = entry
        known = action in self._catalog.actions or action in STS_ACTIONS
        name = action if action is not None and known else ""
        stats = self._stats.get(name)
        if stats is None:
            stats = self._stats[name] = ActionStats()
        stats.calls += 1
        stats.bytes += size
        if code == "OK":
            stats.ok += 1
            stats.items += items
            if items == 0:
                stats.empty += 1
        else:
            stats.errors[code] = stats.errors.get(code, 0) + 1


def _success_body(spec: ActionSpec, result: Mapping[str, Any], request_id: str) -> dict[str, Any]:
    common = {
        "RequestId": request_id,
        "Success": True,
        "Code": "OK",
        "Message": "",
        "HttpStatusCode": 200,
    }
    # Only the common fields the action's response has: a few (GetNumberRegionInfo,
    # PickLocalNumber) answer without HttpStatusCode.
    return {k: v for k, v in common.items() if k in spec.response} | dict(result)


@cache
def _list_path(action: str) -> tuple[str, ...] | None:
    """Where a List… or Find… answer keeps its items: the first list reached through objects
    alone, shallowest first (Data.List.RealTimeAgentState); None for the other actions."""
    if not action.startswith(("List", "Find")):
        return None
    level: list[tuple[tuple[str, ...], Mapping[str, Any]]] = [((), load_catalog()[action].response)]
    while level:
        deeper: list[tuple[tuple[str, ...], Mapping[str, Any]]] = []
        for path, shape in level:
            for key, value in shape.items():
                if isinstance(value, list):
                    return (*path, key)
                if isinstance(value, dict):
                    deeper.append(((*path, key), value))
        level = deeper
    return None


def _item_count(action: str, body: Mapping[str, Any]) -> int:
    """The items of a list answer, else 1: what tells an empty poll from a full one."""
    path = _list_path(action)
    if path is None:
        return 1
    value: Any = body
    for key in path:
        value = value[key]
    return len(value)


def _body_size(response: web.Response) -> int:
    body = response.body
    return len(body) if isinstance(body, (bytes, bytearray)) else 0


def _business_error(error: BusinessError, request_id: str) -> web.Response:
    body = {
        "RequestId": request_id,
        "Success": False,
        "Code": error.code,
        "Message": error.message,
        "HttpStatusCode": error.status,
    }
    return web.json_response(body, status=error.status)


def _listing(source: Callable[[], list[dict[str, Any]]]) -> Handler:
    async def handler(_request: web.Request) -> web.Response:
        return web.json_response(source())

    return handler


async def _parse_body(request: web.Request, model: type[Model]) -> Model | web.Response:
    """The JSON body as `model`, or a 400 answer naming the offending fields."""
    try:
        raw = await request.json()
    except ValueError:
        return web.json_response({"error": JSON_BODY_ERROR}, status=400)
    if not isinstance(raw, dict):
        return web.json_response({"error": JSON_BODY_ERROR}, status=400)
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        return web.json_response({"error": field_errors(error)}, status=400)


def create_app(config: EmulatorConfig, sim: SimulationPort, clock: SimClock) -> web.Application:
    app = web.Application(client_max_size=CLIENT_MAX_SIZE)
    app.add_routes(Gateway(config, sim, clock).routes())
    return app
