"""Every route, declared once (`ROUTES`): its method, path, the handler that answers it and what the OpenAPI
document says of it. The Lambda handler registers exactly these, the 405 answers and the OpenAPI document
follow them, and the tests check template.yaml's routes against them.

Each handler answers one `Call` and is small enough to test alone."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2
from pydantic import BaseModel

from carryover.config import Settings
from carryover.core.service import PredictionService
from carryover.errors import Forbidden, InvalidJson, InvalidRequest
from carryover.http.errors import HttpRefusal
from carryover.http.schemas import HealthResponse, ModelResponse, prediction_body, state_body
from carryover.requests import IDEMPOTENCY_KEY, PredictRequest, parse_user_id


@dataclass(frozen=True)
class Call:
    """What a route handler reads of one HTTP request: the event, the path's parameters, and the time by which
    the service must stop retrying."""

    event: APIGatewayProxyEventV2
    params: Mapping[str, str]
    deadline: float = float("inf")

    def header(self, name: str) -> str | None:
        found: str | None = (self.event.headers or {}).get(name)
        return found

    def body(self) -> str | None:
        try:
            return self.event.decoded_body
        except ValueError:  # base64 that does not decode, or bytes that are not UTF-8
            raise InvalidJson("request body: expected UTF-8 JSON (base64-encoded when isBase64Encoded)") from None

    @property
    def subject(self) -> str | None:
        """The JWT's subject, as API Gateway's JWT authorizer passes it."""
        claims = self.event.request_context.authorizer.jwt_claim or {}
        subject = claims.get("sub")
        return subject if isinstance(subject, str) else None


def json_response(status: int, body: BaseModel | str, headers: dict[str, str] | None = None) -> Response[str]:
    payload = body.model_dump_json() if isinstance(body, BaseModel) else body
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=payload, headers=headers)


def parse_idempotency_key(raw: str | None) -> str | None:
    if raw is None:
        return None
    if not IDEMPOTENCY_KEY.fullmatch(raw):
        raise InvalidRequest("Idempotency-Key header: expected 1-128 printable ASCII characters")
    return raw


class Handlers:
    """One method per route, each answering a `Call` through the service."""

    def __init__(self, service: PredictionService, settings: Settings, engine: str) -> None:
        self._service, self._settings = service, settings
        self._manifest = service.manifest
        self._model = ModelResponse.of(service.bundle, engine)
        self._health = HealthResponse.of(service.manifest, engine)

    def _caller(self, call: Call) -> str:
        """The path's user, who must be the token's subject when API Gateway checks JWTs."""
        user_id = parse_user_id(unquote(call.params["user_id"]))
        if self._settings.auth_mode == "JWT" and call.subject != user_id:
            raise Forbidden(f"user {user_id!r}: the token's subject may only use its own state")
        return user_id

    def predict(self, call: Call) -> Response[str]:
        user = self._caller(call)
        key = parse_idempotency_key(call.header("idempotency-key"))
        body = call.body()
        if body and len(body.encode()) > self._settings.max_body_bytes:
            size, most = len(body.encode()), self._settings.max_body_bytes
            raise HttpRefusal("payload_too_large", f"request body: {size} bytes, at most {most} accepted")
        request = PredictRequest.parse(body, self._manifest, self._settings.max_timesteps)
        prediction = self._service.predict(user, request, key, call.deadline)
        replayed = {"Idempotent-Replayed": "true"} if prediction.replayed else None
        return json_response(200, prediction_body(prediction, self._manifest), replayed)

    def get_state(self, call: Call) -> Response[str]:
        return json_response(200, state_body(self._service.state(self._caller(call)), self._manifest))

    def delete_state(self, call: Call) -> Response[str]:
        self._service.delete(self._caller(call))
        return Response(status_code=204)

    def get_model(self, call: Call) -> Response[str]:
        return json_response(200, self._model)

    def get_health(self, call: Call) -> Response[str]:
        self._service.health()
        return json_response(200, self._health)


@dataclass(frozen=True)
class Answer:
    """The success answer as the OpenAPI document describes it."""

    status: int
    description: str
    schema: str | None = None  # a component schema of the body
    headers: dict[str, Any] = field(default_factory=dict)
    links_to_state: bool = False


@dataclass(frozen=True)
class Route:
    method: str
    path: str  # as OpenAPI writes it
    operation_id: str
    handler: Callable[[Handlers, Call], Response[str]]
    summary: str
    answer: Answer
    errors: tuple[int, ...]
    parameters: tuple[str, ...] = ()  # "user_id" (path), "Idempotency-Key" (header)
    request_body: str | None = None  # a component schema

    @property
    def rule(self) -> str:
        """The path as Powertools' resolver writes it: /users/<user_id>/predict."""
        return re.sub(r"\{(\w+)\}", r"<\1>", self.path)


_REPLAYED = {"Idempotent-Replayed": {"schema": {"type": "string", "enum": ["true"]}}}
ROUTES = (
    Route(
        "POST", "/users/{user_id}/predict", "predict", Handlers.predict,
        "Apply timesteps on top of the user's saved state, once, and save the new state.",
        Answer(200, "The outputs for every timestep (or the last), and where the state started.", "PredictResponse",
               _REPLAYED, links_to_state=True),
        (400, 403, 405, 409, 413, 422, 500, 503), ("user_id", "Idempotency-Key"), "PredictRequest",
    ),
    Route(
        "GET", "/users/{user_id}/state", "getState", Handlers.get_state, "Where the user's saved state stands.",
        Answer(200, "The saved state's model, steps and times.", "StateResponse"),
        (400, 403, 404, 405, 409, 500, 503), ("user_id",),
    ),
    Route(
        "DELETE", "/users/{user_id}/state", "deleteState", Handlers.delete_state,
        "Erase the user's state (their idempotency keys are kept for their window).",
        Answer(204, "Erased, or there was none.", links_to_state=True), (400, 403, 405, 409, 500, 503), ("user_id",),
    ),
    Route(
        "GET", "/model", "getModel", Handlers.get_model,
        "The served model: name, version, engine, input, outputs, states.",
        Answer(200, "The model.", "ModelResponse"), (405, 500),
    ),
    Route(
        "GET", "/health", "getHealth", Handlers.get_health, "The model is loaded and the state store answers.",
        Answer(200, "Ready.", "HealthResponse"), (405, 500, 503),
    ),
)  # fmt: skip
_PATTERNS = [(re.compile("^" + re.sub(r"\{\w+\}", "[^/]+", route.path) + "$"), route.method) for route in ROUTES]


def allowed_methods(path: str) -> tuple[str, ...]:
    """The methods a path takes; none for a path that is no route."""
    return tuple(method for pattern, method in _PATTERNS if pattern.match(path))
