"""The emulator's HTTP face: CCC's RPC gateway on `/`, fault injection and the inspection API.

The gateway does what Alibaba's POP gateway does before a request reaches CCC (routing on
(Version, Action), signature V1 or bearer authentication, parameter checks, throttling) and
answers with its error bodies; the contact centre itself is the Simulation behind it.

Under /_emulator/, unsigned, beside the listings of PRODUCT.md section 6:
- `GET|POST|DELETE /_emulator/faults`: list, set (one rule per action, "*" for the rest;
  a new rule for an action replaces its old one) or clear fault rules;
- `POST /_emulator/clock` `{"advance_s": N}`: jump the simulation clock forward, answering
  `{"now", "now_ms"}`, so tests in other processes can skip simulated time.
"""

from __future__ import annotations

import asyncio
import hmac
import random
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from email.utils import formatdate
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qsl

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from service.ccc.catalog import API_VERSION, ActionSpec, WireError, load_catalog
from service.ccc.signing import BEARER_SIGNATURE_TYPE, SIGNATURE_METHOD, sign, string_to_sign
from service.emulator.config import EmulatorConfig, SimClock
from service.emulator.model import rfc3339
from service.emulator.sim import BusinessError
from service.validation import field_errors

TIMESTAMP_WINDOW_S = 15 * 60  # FACTS.md section 3
NONCE_WINDOW_S = 31 * 60  # FACTS.md section 3: the gateway's nonce-dedupe window
# Bounds memory under a benchmark; past it the oldest nonces are forgotten early.
NONCE_STORE_MAX = 1_000_000
# The requests log keeps the most recent requests only, so a long run cannot exhaust memory.
REQUESTS_LOG_MAX = 100_000
RETRY_AFTER_MS = 200  # hint sent with Throttling.User; the Tea SDK honours it
SECRET_PARAMS = frozenset({"Signature", "BearerToken", "SecurityToken"})
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
JSON_BODY_ERROR = "the body must be a JSON object"

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


async def read_params(request: web.Request) -> dict[str, str]:
    """Query string merged with a form body (the body wins), as the signature covers both."""
    params = dict(request.query)
    if request.content_type == FORM_CONTENT_TYPE and request.body_exists:
        body = (await request.read()).decode("utf-8", errors="replace")
        params.update(parse_qsl(body, keep_blank_values=True, errors="replace"))
    return params


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
        self._faults: dict[str, FaultRule] = {}
        self._rng = random.Random(config.seed)  # noqa: S311 - fault dice, not cryptography
        self._requests: deque[dict[str, Any]] = deque(maxlen=REQUESTS_LOG_MAX)

    def routes(self) -> list[web.RouteDef]:
        listings: dict[str, Callable[[], list[dict[str, Any]]]] = {
            "/_emulator/requests": lambda: list(self._requests),
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
        ]

    # --- RPC ---------------------------------------------------------------------------

    async def rpc(self, request: web.Request) -> web.StreamResponse:
        at = rfc3339(self._clock.now_ms())  # simulation time, like every inspection record
        params = await read_params(request)
        request_id = new_request_id()
        code = "OK"
        try:
            body, drop = await self._execute(request, params, request_id)
        except GatewayError as error:
            code = error.code
            response = self._gateway_error(error, request_id)
        except BusinessError as error:
            code = error.code
            response = _business_error(error, request_id)
        else:
            response = web.json_response(body)
            if drop and request.transport is not None:
                # The action ran; losing the answer models a response lost on the way back.
                request.transport.abort()
        self._log(at, params, code)
        # The simulated contact centre's own time, as a real server's Date header gives its
        # own: clients that read it follow the simulation at any speed.
        response.headers["Date"] = formatdate(self._clock.now_ms() / 1000, usegmt=True)
        return response

    async def _execute(
        self, request: web.Request, params: dict[str, str], request_id: str
    ) -> tuple[dict[str, Any], bool]:
        """The success body, and whether to drop it; raises GatewayError or BusinessError."""
        spec = self._route(params)
        self._authenticate(request, params)
        api_params = parse_api_params(spec, params)
        fault = self._faults.get(spec.name) or self._faults.get("*")
        drop = False if fault is None else await self._inject(fault)
        result = self._sim.handle(spec.name, api_params)
        return _success_body(spec, result, request_id), drop

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
        if secret is None:
            raise GatewayError(
                400, "InvalidAccessKeyId.NotFound", f"Specified access key {key_id!r} is not found."
            )
        return key_id, secret

    def _check_security_token(self, key_id: str, params: Mapping[str, str]) -> None:
        expected = self._config.sts_tokens.get(key_id)
        if expected is None:
            return
        received = params.get("SecurityToken", "")
        if not hmac.compare_digest(expected.encode(), received.encode()):
            raise GatewayError(
                400,
                "InvalidSecurityToken.MismatchWithAccessKey",
                "Specified SecurityToken mismatch with the AccessKey.",
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

    # --- responses and log -------------------------------------------------------------

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

    def _log(self, at: str, params: Mapping[str, str], code: str) -> None:
        self._requests.append(
            {
                "at": at,
                "action": params.get("Action"),
                "version": params.get("Version"),
                "params": {k: v for k, v in params.items() if k not in SECRET_PARAMS},
                "code": code,
            }
        )


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
    app = web.Application()
    app.add_routes(Gateway(config, sim, clock).routes())
    return app
